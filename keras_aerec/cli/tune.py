"""`keras-aerec tune`: a resumable KerasTuner search of one model (needs the tuning extra).

Wired into `keras_aerec.cli.main` with `add_parser(subparsers)` and `run(args)`:

    keras-aerec tune multvae --dataset 1m --data-dir ../shared/data --protocol liang \\
        --tuner random --max-trials 8 --epochs 30 --directory tuning/runs/multvae

Run the same command again after an interruption to resume the search; `--overwrite`
starts afresh.
"""

import argparse
import os

TUNER_NAMES = ("random", "bayesian", "hyperband")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the `tune` subcommand on the `keras-aerec` subparsers."""
    from keras_aerec.cli.common import (
        add_common,
        add_data_arguments,
        add_model_argument,
        add_protocol_argument,
        add_seed_argument,
        positive_int,
    )

    parser = subparsers.add_parser(
        "tune",
        help="KerasTuner search of one model's hyperparameters; writes summary.json/.md",
        description="Searches a model's hyperparameters on a protocol's validation part, "
        "compares the best configuration with the paper's defaults on the test part, and "
        "writes summary.json and summary.md into --directory. Rerun to resume.",
    )
    add_model_argument(parser)
    add_data_arguments(parser)
    add_protocol_argument(parser, "liang", "evaluation protocol with a validation part")
    parser.add_argument(
        "--tuner", choices=TUNER_NAMES, default="random", help="search strategy (default: random)"
    )
    parser.add_argument(
        "--max-trials", type=positive_int, default=10, help="trials to run (default: 10)"
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epoch budget of a trial (early stopping)",
    )
    parser.add_argument(
        "--objective",
        default=None,
        help="validation metric, e.g. val_ndcg@100, val_recall@20, val_rmse "
        "(default: the protocol's selection metric, val_rmse for rating models)",
    )
    parser.add_argument(
        "--direction", choices=("min", "max"), default=None, help="default: from the metric"
    )
    parser.add_argument(
        "--directory", default=None, help="search state and summaries (default: tuning_runs/MODEL)"
    )
    add_seed_argument(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="discard the directory's search instead of resuming",
    )
    add_common(parser)
    return parser


def run(args) -> None:
    """Runs the search the parsed `args` describe and prints its summary."""
    from keras_aerec.cli._saved_run import protocol_for
    from keras_aerec.cli.common import (
        CommandError,
        data_source,
        load_interactions,
        resolve_data_arguments,
        writable_directory,
    )

    try:
        from keras_aerec.hypermodels.search import (
            SUMMARY_JSON,
            SUMMARY_MARKDOWN,
            check_search,
            run_search,
            summary_markdown,
        )

        # Bad arguments fail here, before the data is loaded or any trial runs.
        check_search(
            args.model, args.tuner, args.max_trials, args.objective, args.direction, args.protocol
        )
    except ImportError as error:
        raise CommandError(str(error)) from None
    resolve_data_arguments(args)
    source = data_source(args)
    spec = protocol_for(args.protocol, source)
    directory = writable_directory(args.directory or os.path.join("tuning_runs", args.model))
    interactions = load_interactions(source, args.seed, require_timestamps=spec.needs_timestamps)
    summary = run_search(
        args.model,
        interactions,
        protocol=spec,
        tuner=args.tuner,
        max_trials=args.max_trials,
        directory=directory,
        objective=args.objective,
        direction=args.direction,
        seed=args.seed,
        overwrite=args.overwrite,
        epochs=args.epochs,
        verbose=0 if args.quiet else 2,
    )
    print(summary_markdown(summary))
    for name in (SUMMARY_JSON, SUMMARY_MARKDOWN):
        print(f"wrote {os.path.join(directory, name)}")
