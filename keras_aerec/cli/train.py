"""`keras-aerec train MODEL`: fit one model under a protocol and save it as a `.keras` file.

    keras-aerec train multvae --dataset 1m --data-dir ../shared/data --protocol liang \\
        --epochs 50 --output runs/multvae.keras

The model is built and trained as the benchmark does (its recipe; epoch picked on the
protocol's validation metric when there is a validation part), saved atomically, with a
JSON sidecar (`runs/multvae.json`) that `evaluate` and `recommend` read to rebuild the
split. The test metrics are printed at the end.
"""

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import time

DISTRIBUTE_STRATEGIES = ("auto", "mirrored", "multi-worker")


def _hyperparameter(value: str) -> tuple:
    name, separator, text = value.partition("=")
    if not separator or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"should be NAME=VALUE, got {value!r}")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = text  # a bare string, e.g. variant=item
    if isinstance(parsed, list):
        parsed = tuple(parsed)
    return name, parsed


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the `train` subcommand on the `keras-aerec` subparsers."""
    from keras_aerec.cli.main import (
        _add_common,
        _add_data_arguments,
        add_model_argument,
        positive_int,
    )
    from keras_aerec.experiments import PROTOCOLS

    parser = subparsers.add_parser(
        "train",
        help="train one model under a protocol; save it as .keras with a JSON sidecar",
        description="Builds MODEL with its benchmark recipe, trains it with model.fit on the "
        "protocol's training part (early stopping on the validation metric when the protocol "
        "has one), saves it atomically to --output with a sidecar NAME.json, and prints the "
        "test metrics.",
    )
    add_model_argument(parser)
    _add_data_arguments(parser, default="synthetic")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="article", help="(default: article)"
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epoch budget (default: the recipe's; early stopping may end sooner)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="default: the recipe's"
    )
    parser.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the demo's small layers and short schedule (a smoke test, not a result)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        type=_hyperparameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a recipe hyperparameter (JSON value), e.g. --set latent_dim=64 "
        "--set hidden_dims=[300]; repeatable",
    )
    parser.add_argument(
        "--distribute",
        choices=DISTRIBUTE_STRATEGIES,
        default=None,
        help="train data-parallel over the local accelerators (default: off)",
    )
    parser.add_argument(
        "--output", required=True, help="path of the .keras file to write (sidecar: NAME.json)"
    )
    _add_common(parser)
    return parser


def run(args) -> None:
    """Trains, saves and prints the test metrics of the model the parsed `args` describe."""
    import keras

    from keras_aerec.cli._saved_run import (
        load_data,
        metrics_title,
        print_metrics,
        write_atomically,
        write_sidecar,
    )
    from keras_aerec.cli.main import _verbosity, _writable_directory, logger
    from keras_aerec.experiments import MODELS, get_protocol
    from keras_aerec.experiments.runner import train_and_evaluate

    if not args.output.endswith(".keras"):
        raise ValueError(f"`--output` should be a path ending in .keras. Received: {args.output!r}")
    _writable_directory(os.path.dirname(os.path.abspath(args.output)))
    recipe = _recipe(MODELS[args.model], args)
    spec = get_protocol(args.protocol)
    parallel = _distribution(args.distribute)  # a missing module fails before the data loads

    interactions = load_data(args, recipe, spec)
    logger.info("data: %s", interactions)
    start = time.perf_counter()
    split = spec.split(recipe.kind, interactions, args.seed)
    logger.info("%s split in %.2f s", spec.split_source(recipe.kind), time.perf_counter() - start)

    recipe = dataclasses.replace(recipe, factory=_checked(recipe.factory, dict(args.overrides)))
    keras.utils.set_random_seed(args.seed)
    with parallel:
        model, result = train_and_evaluate(
            recipe, split, spec, args.epochs, args.quick, _verbosity(args)
        )

    write_atomically(args.output, model.save)
    validation = {
        key: values[result.epochs - 1]
        for key, values in result.history.items()
        if key.startswith("val_") and len(values) >= result.epochs > 0
    }
    sidecar = write_sidecar(
        args.output,
        {
            "model": args.model,
            "kind": recipe.kind,
            "dataset": args.dataset,
            "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
            "protocol": args.protocol,
            "seed": args.seed,
            "quick": args.quick,
            "hyperparameters": result.hyperparameters,
            "batch_size": recipe.training_batch_size(args.quick),
            "epochs": len(result.history.get("loss", [])),
            "best_epoch": result.epochs,
            "validation_metrics": validation,
            "test_metrics": result.metrics,
            "seconds": round(result.seconds, 3),
            "backend": keras.backend.backend(),
            "distribute": args.distribute,
        },
    )
    if validation:
        print_metrics(f"validation metrics (epoch {result.epochs}):", validation)
    print_metrics(metrics_title(recipe, spec), result.metrics)
    print(f"wrote {args.output}")
    print(f"wrote {sidecar}")


def _recipe(recipe, args):
    """The recipe with the command line's batch size and hyperparameter overrides."""
    changes = {}
    if args.batch_size is not None:
        changes["batch_size"] = changes["quick_batch_size"] = args.batch_size
    if args.overrides:
        overrides = dict(args.overrides)
        changes["defaults"] = {**recipe.defaults, **overrides}
        changes["quick"] = {k: v for k, v in recipe.quick.items() if k not in overrides}
    return dataclasses.replace(recipe, **changes) if changes else recipe


def _distribution(strategy):
    """`data_parallel(strategy)` from `keras_aerec.distribute`, or a no-op without the flag."""
    if strategy is None:
        return contextlib.nullcontext()
    from keras_aerec.distribute import data_parallel

    return data_parallel(strategy)


def _checked(factory, overrides=()):
    """`factory` that checks the `--set` names against the model it builds.

    Functional Keras models accept (and ignore) unknown keyword arguments, so the names
    set with `--set` are checked against the model's constructor and the optimiser's
    learning rate.
    """

    def build(split, **hyperparameters):
        try:
            model = factory(split, **hyperparameters)
        except TypeError as error:
            raise ValueError(
                f"`--set` should name hyperparameters the model accepts. Received: {error}"
            ) from None
        accepted = set(inspect.signature(type(model).__init__).parameters) - {"self", "kwargs"}
        accepted |= {"learning_rate"} & set(hyperparameters)
        unknown = sorted(set(overrides) - accepted)
        if unknown:
            raise ValueError(
                f"`--set` should name hyperparameters of {type(model).__name__} "
                f"({', '.join(sorted(accepted))}). Received: {', '.join(unknown)}"
            )
        return model

    return build
