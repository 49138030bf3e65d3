"""`keras-aerec evaluate MODEL.keras`: the test metrics of a model written by `train`.

    keras-aerec evaluate runs/multvae.keras

The run record inside the model file names the data, protocol and seed, so the same split
is rebuilt (and checked against the record's fingerprints): the numbers are those `train`
printed.
"""

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the `evaluate` subcommand on the `keras-aerec` subparsers."""
    from keras_aerec.cli.common import add_common, add_data_arguments

    parser = subparsers.add_parser(
        "evaluate",
        help="test metrics of a model written by `train` (same data, protocol and split)",
        description="Reloads a model written by `keras-aerec train`, rebuilds its split from "
        "the data its run record names (or the data options given here), refuses data or a "
        "split that is not the model's own, and prints the protocol's test metrics.",
    )
    parser.add_argument("model", help="the .keras file written by `keras-aerec train`")
    add_data_arguments(parser, overrides=True)
    add_common(parser)
    return parser


def run(args) -> None:
    """Reloads the model, rebuilds its split and prints the protocol's test metrics."""
    from keras_aerec.cli._saved_run import load_run, metrics_title, print_metrics

    model, record, recipe, spec, _, split = load_run(args)
    # The protocol's own evaluation, as `train` printed it (RecBole's reads training rows).
    print_metrics(metrics_title(recipe, spec), spec.evaluate(model, split, recipe.kind))
