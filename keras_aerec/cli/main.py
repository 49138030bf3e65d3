"""The `keras-aerec` command line: the only place in the package that prints."""

import argparse
import logging
import os
import sys
import time

logger = logging.getLogger("keras_aerec")

DATASETS = ("synthetic", "100k", "1m", "10m", "20m", "latest-small")


class CommandError(Exception):
    """An error the CLI reports as one line and a non-zero exit code."""


def _configure_logging(quiet: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _dataset_name(value: str) -> str:
    name = value.lower().removeprefix("ml-")
    if name not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {value!r}; valid: {', '.join(DATASETS)} (ml- prefix optional)"
        )
    return name


def _writable_directory(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot create output directory {path!r}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise CommandError(f"output directory {path!r} is not writable")
    return path


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"should be a positive integer, got {value!r}")
    return number


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """The positional MODEL argument, one of the benchmark recipes' names."""
    from keras_aerec.experiments import MODELS

    parser.add_argument(
        "model", choices=sorted(MODELS), metavar="MODEL", help=", ".join(sorted(MODELS))
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")


def _add_data_arguments(parser: argparse.ArgumentParser, default: str = "synthetic") -> None:
    parser.add_argument(
        "--dataset",
        type=_dataset_name,
        default=default,
        help=f"one of {', '.join(DATASETS)} (default: {default})",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="local MovieLens folder (the one holding ml-1m/, or ml-1m/ itself); "
        "downloaded from GroupLens when omitted",
    )


def build_parser() -> argparse.ArgumentParser:
    from keras_aerec.experiments import MODELS, PROTOCOLS

    parser = argparse.ArgumentParser(
        prog="keras-aerec", description="Autoencoder recommenders on Keras 3."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="short end-to-end run on embedded synthetic data")
    demo.add_argument("--output-dir", default="demo_report")
    _add_common(demo)

    bench = commands.add_parser(
        "benchmark", help="train and evaluate models under a protocol; write the report"
    )
    _add_data_arguments(bench, default="1m")
    bench.add_argument("--protocol", choices=PROTOCOLS, default="article")
    bench.add_argument(
        "--models",
        nargs="+",
        choices=sorted(MODELS),
        metavar="MODEL",
        help=f"subset of {', '.join(sorted(MODELS))} (default: all the protocol supports)",
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="several seeds (split, initialisation, batch order): mean ± sd per model; "
        "overrides --seed",
    )
    bench.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    bench.add_argument(
        "--output-dir",
        default="reports",
        help="report folder; finished models are kept there and a rerun does not retrain them",
    )
    _add_common(bench)

    from keras_aerec.cli import evaluate, export, recommend, train, tune

    train.add_parser(commands)
    evaluate.add_parser(commands)
    recommend.add_parser(commands)
    export.add_parser(commands)
    tune.add_parser(commands)
    return parser


def _load(args, require_timestamps: bool | None = None):
    """The dataset of `args`; with timestamps under the temporal protocol.

    On ML-1M copies with timestamps for part of the users (`load_movielens`),
    `require_timestamps=True` loads only the timestamped users.
    """
    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.data.synthetic import synthetic

    if require_timestamps is None:
        require_timestamps = getattr(args, "protocol", None) == "temporal"
    if args.dataset == "synthetic":
        return synthetic(seed=args.seed)
    return load_movielens(
        args.dataset, data_dir=args.data_dir, require_timestamps=require_timestamps
    )


def _verbosity(args):
    """Keras progress bars on a terminal, one line per epoch otherwise, none with --quiet."""
    if args.quiet:
        return 0
    return "auto" if sys.stdout.isatty() else 2


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

    output_dir = _writable_directory(args.output_dir)
    start = time.perf_counter()
    interactions = synthetic(num_users=1500, num_items=600, seed=0)
    logger.info("demo data: %s", interactions)
    results = run_benchmark(
        interactions, protocol="article", quick=True, seed=0, verbose=_verbosity(args)
    )
    paths = write_report(results, output_dir, title="keras-aerec demo (synthetic data)")
    _print_report(results, paths)
    print(f"demo finished in {time.perf_counter() - start:.0f} s; report in {output_dir}/")


def _run_benchmark(args) -> None:
    from keras_aerec.experiments import needs_timestamped_data, run_benchmark
    from keras_aerec.experiments.report import ARTICLE, write_report

    output_dir = _writable_directory(args.output_dir)
    interactions = _load(args)
    timestamped = None
    if interactions.timestamps is None and needs_timestamped_data(args.protocol, args.models):
        # SVAE under the article protocol: the temporal split of the timestamped users.
        try:
            timestamped = _load(args, require_timestamps=True)
        except ValueError as error:  # run_benchmark skips SVAE or names what is missing
            logger.warning("no timestamped copy of %s: %s", args.dataset, error)
    results = run_benchmark(
        interactions,
        protocol=args.protocol,
        models=args.models,
        seed=args.seed,
        seeds=args.seeds,
        epochs=args.epochs,
        verbose=_verbosity(args),
        timestamped=timestamped,
        resume_dir=output_dir,
    )
    title = f"keras-aerec benchmark: {interactions.name or args.dataset}, {args.protocol} protocol"
    published = ARTICLE if (args.dataset, args.protocol) == ("1m", "article") else None
    paths = write_report(
        results, output_dir, title=title, published=published, dataset=args.dataset
    )
    _print_report(results, paths)


def _run_module(args) -> None:
    """Commands that live in their own module, `keras_aerec.cli.<command>`, run by `run(args)`."""
    import importlib

    importlib.import_module(f"keras_aerec.cli.{args.command}").run(args)


_COMMANDS = {
    "demo": _run_demo,
    "benchmark": _run_benchmark,
    "train": _run_module,
    "evaluate": _run_module,
    "recommend": _run_module,
    "export": _run_module,
    "tune": _run_module,
}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.quiet)
    try:
        _COMMANDS[args.command](args)
    except (CommandError, ValueError, OSError, ImportError, RuntimeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"keras-aerec {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keras-aerec {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
