"""`keras-aerec evaluate MODEL.keras`: the test metrics of a model written by `train`.

    keras-aerec evaluate runs/multvae.keras

The sidecar (`runs/multvae.json`) names the dataset, protocol and seed, so the same split
is rebuilt and the numbers are those `train` printed.
"""

import argparse


def add_data_overrides(parser: argparse.ArgumentParser) -> None:
    """`--dataset` / `--data-dir` that replace the sidecar's when given."""
    from keras_aerec.cli.main import DATASETS, _dataset_name

    parser.add_argument(
        "--dataset",
        type=_dataset_name,
        default=None,
        help=f"one of {', '.join(DATASETS)} (default: the one the model was trained on)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="local MovieLens folder (default: the training one)"
    )


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the `evaluate` subcommand on the `keras-aerec` subparsers."""
    from keras_aerec.cli.main import _add_common

    parser = subparsers.add_parser(
        "evaluate",
        help="test metrics of a model written by `train` (same data, protocol and split)",
    )
    parser.add_argument("model", help="the .keras file written by `keras-aerec train`")
    add_data_overrides(parser)
    _add_common(parser)
    return parser


def run(args) -> None:
    """Reloads the model, rebuilds its split and prints the protocol's test metrics."""
    from keras_aerec.cli._saved_run import load_run, metrics_title, print_metrics
    from keras_aerec.experiments.training import evaluate_model

    model, record, recipe, spec, _, split = load_run(args)
    metrics = evaluate_model(
        model,
        split,
        recipe.kind,
        ks=spec.ranking_ks,
        recall_normalization=spec.recall_normalization,
    )
    print_metrics(metrics_title(recipe, spec), metrics)
