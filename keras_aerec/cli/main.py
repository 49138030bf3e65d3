"""The `keras-aerec` command line: the only place in the package that prints.

Building the parser imports no backend (`--help` answers at once); each command imports
what it needs when it runs. Errors are reported by what they mean, as one line
`keras-aerec COMMAND: error: ...` and exit code 2; `--debug` shows the traceback.
"""

import argparse
import errno
import os
import shutil
import sys
import time

from keras_aerec.cli import common
from keras_aerec.cli.common import CommandError

# Commands that live in their own module, `keras_aerec.cli.<command>`, with
# `add_parser(subparsers)` and `run(args)`.
_MODULE_COMMANDS = ("train", "evaluate", "recommend", "export", "tune")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras-aerec")
    except PackageNotFoundError:  # pragma: no cover - a checkout that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="keras-aerec", description="Autoencoder recommenders on Keras 3."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="short end-to-end run on embedded synthetic data")
    _add_report_arguments(demo, "demo")
    common.add_common(demo)

    bench = commands.add_parser(
        "benchmark", help="train and evaluate models under a protocol; write the report"
    )
    common.add_data_arguments(bench)
    common.add_protocol_argument(bench)
    bench.add_argument(
        "--models",
        nargs="+",
        choices=common.MODEL_NAMES,
        metavar="MODEL",
        help=f"subset of {', '.join(common.MODEL_NAMES)} (default: all the protocol supports)",
    )
    common.add_seed_argument(bench)
    bench.add_argument(
        "--seeds",
        type=common.non_negative_int,
        nargs="+",
        default=None,
        help="several seeds (split, initialisation, batch order): mean ± sd per model; "
        "overrides --seed",
    )
    bench.add_argument(
        "--epochs",
        type=common.positive_int,
        default=None,
        help="override every model's epoch budget (default: each recipe's)",
    )
    common.add_dtype_policy_argument(bench)
    _add_report_arguments(bench, "DATASET-PROTOCOL")
    common.add_common(bench)

    for name in _MODULE_COMMANDS:
        importlib.import_module(f"keras_aerec.cli.{name}").add_parser(commands)
    return parser


def _add_report_arguments(parser, label: str) -> None:
    parser.add_argument(
        "--output-dir",
        default=None,
        help=f"report folder (default: a new reports/{label}-DATE-TIME/; a folder holding "
        "a report is refused unless --overwrite)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the report in --output-dir"
    )


def _print_report(results, paths) -> None:
    from keras_aerec.experiments.report import markdown_table

    print(markdown_table(results))
    print()
    for path in paths:
        print(f"wrote {path}")


def _run_demo(args) -> None:
    from keras_aerec.data.synthetic import synthetic
    from keras_aerec.experiments import run_benchmark
    from keras_aerec.experiments.report import write_report

    output_dir = common.report_directory(args.output_dir, "demo", args.overwrite)
    start = time.perf_counter()
    interactions = synthetic(num_users=1500, num_items=600, seed=0)
    common.logger.info("demo data: %s", interactions)
    results = run_benchmark(
        interactions, protocol="article", quick=True, seed=0, verbose=common.verbosity(args)
    )
    paths = write_report(
        results, common.writable_directory(output_dir), title="keras-aerec demo (synthetic data)"
    )
    _print_report(results, paths)
    print(f"demo finished in {time.perf_counter() - start:.0f} s; report in {output_dir}/")


def _run_benchmark(args) -> None:
    from keras_aerec.cli._saved_run import protocol_for
    from keras_aerec.experiments import needs_timestamped_data, run_benchmark
    from keras_aerec.experiments.report import ARTICLE, write_report

    common.resolve_data_arguments(args)
    common.apply_dtype_policy(args)
    source = common.data_source(args)
    spec = protocol_for(args.protocol, source)
    models = _benchmark_models(args.models, spec, source)
    label = "file" if source["dataset"] == common.OWN_DATA else args.dataset
    output_dir = common.report_directory(
        args.output_dir, f"{label}-{args.protocol}", args.overwrite
    )
    interactions = common.load_interactions(
        source, args.seed, require_timestamps=spec.needs_timestamps
    )
    timestamped = None
    if interactions.timestamps is None and needs_timestamped_data(args.protocol, models):
        # SVAE under the article protocol: the temporal split of the timestamped users.
        try:
            timestamped = common.load_interactions(source, args.seed, require_timestamps=True)
        except (ValueError, CommandError) as error:  # run_benchmark skips SVAE or says why
            common.logger.warning("no timestamped copy of %s: %s", args.dataset, error)
    # Each model and seed is stored as it finishes, so that rerunning a killed command does
    # not retrain it: in --output-dir itself, or, when each run gets a new dated folder, in
    # one named after the dataset and protocol, removed once the report is written.
    resume_dir = args.output_dir or os.path.join("reports", f".unfinished-{label}-{args.protocol}")
    results = run_benchmark(
        interactions,
        protocol=spec,
        models=models,
        seed=args.seed,
        seeds=args.seeds,
        epochs=args.epochs,
        verbose=common.verbosity(args),
        timestamped=timestamped,
        resume_dir=resume_dir,
    )
    title = f"keras-aerec benchmark: {interactions.name or args.dataset}, {args.protocol} protocol"
    published = ARTICLE if (args.dataset, args.protocol) == ("1m", "article") else None
    paths = write_report(
        results,
        common.writable_directory(output_dir),
        title=title,
        published=published,
        dataset=args.dataset,
    )
    if args.output_dir is None:
        shutil.rmtree(resume_dir, ignore_errors=True)
    _print_report(results, paths)


def _benchmark_models(names, spec, source):
    """`--models`, checked against the data; without it, implicit own data skips rating models."""
    from keras_aerec.cli._saved_run import check_ratings
    from keras_aerec.experiments import MODELS

    if names:
        for name in names:
            check_ratings(MODELS[name], source)
        return names
    if source.get("implicit"):
        return [
            name
            for name, recipe in MODELS.items()
            if recipe.kind in spec.kinds and recipe.kind != "rating"
        ]
    return None


def _run_module(args) -> None:
    import importlib

    importlib.import_module(f"keras_aerec.cli.{args.command}").run(args)


_COMMANDS = {"demo": _run_demo, "benchmark": _run_benchmark}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    common.quiet_backends(debug)
    noise = common.BackendNoiseFilter()
    # Only for the real process stderr: an in-process caller (a test) captures its own.
    if not debug and sys.stderr is sys.__stderr__:
        noise.start()
    common.configure_logging(args.quiet)
    try:
        _COMMANDS.get(args.command, _run_module)(args)
    except KeyboardInterrupt:
        print(f"keras-aerec {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every error becomes one line (see _message)
        if debug:
            raise
        print(f"keras-aerec {args.command}: error: {_message(error)}", file=sys.stderr)
        return 2
    finally:
        noise.stop()
    return 0


def _message(error: BaseException) -> str:
    """One line saying what went wrong, by what the error means rather than its class.

    Errors of bad input (ours and the libraries' `ValueError`s, missing or unreadable
    files, a missing extra) are worded for the user already; a damaged archive, a full
    disk or exhausted memory are named; anything else is a bug or an environment problem,
    reported with its class and a pointer to `--debug`.
    """
    import zipfile

    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, CommandError | ValueError | ArithmeticError | ImportError):
        return first
    if isinstance(error, zipfile.BadZipFile | EOFError):
        return f"a file is damaged or truncated: {first}"
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            return f"no space left on the device: {error.filename or first}"
        if error.strerror and error.filename:
            return f"{error.strerror}: {error.filename!r}"
        return first
    if (
        isinstance(error, MemoryError)
        or "RESOURCE_EXHAUSTED" in text
        or (type(error).__name__ in ("ResourceExhaustedError", "OutOfMemoryError"))
    ):
        return f"out of memory or disk space: {first[:200]}"
    return f"{first[:300]} ({type(error).__name__}; rerun with --debug for the traceback)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
