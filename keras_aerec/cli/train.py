"""`keras-aerec train MODEL`: fit one model under a protocol and save it as a `.keras` file.

    keras-aerec train multvae --dataset 1m --data-dir ../shared/data --protocol liang \\
        --epochs 50 --output runs/multvae.keras

The model is built and trained as the benchmark does (its recipe; epoch picked on the
protocol's validation metric when there is a validation part) and saved with its run
record inside (`_saved_run`), in one atomic rename; `runs/multvae.json` is a readable
copy of the record. The test metrics are printed at the end.

A killed run resumes: rerunning the same command continues from the last completed epoch
(the backup lives in `.NAME.keras.backup/` beside the output and is removed once the model
is saved). A diverging loss stops the run with an error, and nothing is saved.
"""

import argparse
import contextlib
import dataclasses
import hashlib
import inspect
import json
import math
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
    if isinstance(parsed, float) and not math.isfinite(parsed):
        raise argparse.ArgumentTypeError(f"should be a finite value, got {value!r}")
    return name, parsed


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the `train` subcommand on the `keras-aerec` subparsers."""
    from keras_aerec.cli.common import (
        add_common,
        add_data_arguments,
        add_dtype_policy_argument,
        add_model_argument,
        add_protocol_argument,
        add_seed_argument,
        positive_int,
    )

    parser = subparsers.add_parser(
        "train",
        help="train one model under a protocol; save it as .keras (run record inside)",
        description="Builds MODEL with its benchmark recipe, trains it with model.fit on the "
        "protocol's training part (early stopping on the validation metric when the protocol "
        "has one), saves it atomically to --output with its run record (and a readable copy, "
        "NAME.json), and prints the test metrics. Rerunning a killed command resumes it from "
        "its last completed epoch.",
    )
    add_model_argument(parser)
    add_data_arguments(parser)
    add_protocol_argument(parser)
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epoch budget (default: the recipe's; early stopping may end sooner)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="default: the recipe's"
    )
    add_seed_argument(parser)
    add_dtype_policy_argument(parser)
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
        "--set hidden_dims=[300] --set learning_rate=0.001; repeatable",
    )
    parser.add_argument(
        "--distribute",
        choices=DISTRIBUTE_STRATEGIES,
        default=None,
        help="train data-parallel over the local accelerators (default: off)",
    )
    parser.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="write TensorBoard logs (learning curves) to DIR (default: none)",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="path of the .keras file to write (copy of the record: NAME.json)",
    )
    add_common(parser)
    return parser


def run(args) -> None:
    """Trains, saves and prints the test metrics of the model the parsed `args` describe."""
    import keras

    from keras_aerec.cli import _saved_run as saved
    from keras_aerec.cli.common import (
        CommandError,
        apply_dtype_policy,
        data_source,
        logger,
        resolve_data_arguments,
        verbosity,
        writable_directory,
    )
    from keras_aerec.experiments import MODELS
    from keras_aerec.experiments.runner import train_and_evaluate
    from keras_aerec.experiments.training import TrainingBackup, TrainingDivergedError

    if not args.output.endswith(".keras"):
        raise ValueError(f"`--output` should be a path ending in .keras. Received: {args.output!r}")
    resolve_data_arguments(args)
    apply_dtype_policy(args)
    writable_directory(os.path.dirname(os.path.abspath(args.output)))
    for leftover in saved.remove_leftovers(args.output):
        logger.info("removed %s, left by an interrupted train", leftover)
    recipe = _recipe(MODELS[args.model], args)
    _check_overrides(MODELS[args.model], dict(args.overrides))
    source = data_source(args)
    spec = saved.protocol_for(args.protocol, source)
    parallel = _distribution(args.distribute)  # a missing module fails before the data loads

    interactions = saved.load_data(source, recipe, spec, args.seed)
    logger.info("data: %s", interactions)
    start = time.perf_counter()
    split = spec.split(recipe.kind, interactions, args.seed)
    logger.info("%s split in %.2f s", spec.split_source(recipe.kind), time.perf_counter() - start)
    fingerprint = saved.data_fingerprint(interactions)

    recipe = dataclasses.replace(recipe, factory=_checked(recipe.factory, dict(args.overrides)))
    backup = TrainingBackup(_backup_directory(args.output), identity=_identity(args, fingerprint))
    callbacks = [backup]
    if args.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=args.tensorboard))
    keras.utils.set_random_seed(args.seed)
    try:
        with parallel:
            model, result = train_and_evaluate(
                recipe, split, spec, args.epochs, args.quick, verbosity(args), callbacks=callbacks
            )
    except TrainingDivergedError as error:
        backup.remove()
        raise CommandError(f"{error} Nothing was saved.") from None

    epochs_run = len(result.history.get("loss", []))
    validation = {
        key: values[result.epochs - 1]
        for key, values in result.history.items()
        if key.startswith("val_") and len(values) >= result.epochs > 0
    }
    sidecar = saved.publish_run(
        model,
        args.output,
        {
            "model": args.model,
            "kind": recipe.kind,
            **source,
            "protocol": args.protocol,
            "seed": args.seed,
            "quick": args.quick,
            "hyperparameters": result.hyperparameters,
            "batch_size": recipe.training_batch_size(args.quick),
            "epochs_run": epochs_run,
            "best_epoch": result.epochs,
            "validation_metrics": validation,
            "test_metrics": result.metrics,
            "seconds": round(result.seconds, 3),
            "backend": keras.backend.backend(),
            "distribute": args.distribute,
            "data_fingerprint": fingerprint,
            "split_fingerprint": saved.split_fingerprint(split),
        },
    )
    backup.remove()
    if epochs_run:
        print(_epochs_line(recipe, spec, args, split, epochs_run, result.epochs))
    if validation:
        saved.print_metrics(f"validation metrics (epoch {result.epochs}):", validation)
    saved.print_metrics(saved.metrics_title(recipe, spec), result.metrics)
    print(f"wrote {args.output}")
    print(f"wrote {sidecar}")


def _epochs_line(recipe, spec, args, split, epochs_run, best_epoch) -> str:
    """Whether early stopping ended the run, and which epoch's weights were kept."""
    budget = args.epochs or recipe.epoch_budget(args.quick, split.validation is not None)
    if split.validation is None:
        return f"trained {epochs_run} epochs (no validation part: the last epoch is kept)"
    monitor = "val_rmse" if recipe.kind == "rating" else spec.select_on
    if epochs_run < budget:
        return (
            f"early stopping ended training after epoch {epochs_run} of {budget} "
            f"({monitor} did not improve for {recipe.patience} epochs); kept epoch {best_epoch}"
        )
    return f"trained {epochs_run} of {budget} epochs; kept epoch {best_epoch} (best {monitor})"


def _backup_directory(output: str) -> str:
    folder, name = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{name}.backup")


def _identity(args, fingerprint) -> str:
    """What makes a backup resumable: the same model, data, split and schedule."""
    import keras

    settings = {
        "model": args.model,
        "data": fingerprint,
        "protocol": args.protocol,
        "seed": args.seed,
        "quick": args.quick,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "overrides": sorted([name, repr(value)] for name, value in args.overrides),
        "backend": keras.backend.backend(),
        "distribute": args.distribute,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _check_overrides(recipe, overrides: dict) -> None:
    """`--set` values of the type the recipe uses, and a positive learning rate."""
    for name, value in overrides.items():
        default = {**recipe.defaults, **recipe.quick}.get(name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if name == "learning_rate" and not (number and value > 0):
            raise ValueError(f"`--set learning_rate` should be a number > 0. Received: {value!r}")
        if default is None or isinstance(default, bool):
            continue
        if isinstance(default, int | float) and not number:
            raise ValueError(f"`--set {name}` should be a number. Received: {value!r}")
        if isinstance(default, int) and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"`--set {name}` should be a positive integer. Received: {value!r}")
        if isinstance(default, float) and value < 0:
            raise ValueError(f"`--set {name}` should be >= 0. Received: {value!r}")
        if isinstance(default, tuple | list) and not isinstance(value, tuple | list):
            raise ValueError(
                f"`--set {name}` should be a list such as {json.dumps(list(default))}. "
                f"Received: {value!r}"
            )


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
