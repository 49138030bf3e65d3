"""What `train` writes next to a `.keras` model, and how `evaluate` / `recommend` read it.

`train` saves the fitted model as `NAME.keras` and a sidecar `NAME.json` recording the
model name, dataset, protocol, seed and hyperparameters, so the same split can be rebuilt
from the same data without retraining.
"""

import argparse
import json
import os

SIDECAR_VERSION = 1


def sidecar_path(model_path: str) -> str:
    """`run/model.keras` -> `run/model.json`."""
    return os.path.splitext(model_path)[0] + ".json"


def write_atomically(path: str, write) -> None:
    """Calls `write(temporary_path)`, then renames the file over `path`.

    The temporary file lives in the same folder (same file system, so `os.replace` is
    atomic) and keeps `path`'s extension (Keras checks that a model file ends in
    `.keras`). A reader sees the old file or the new one, whole, never a partial one.
    """
    folder, name = os.path.split(os.path.abspath(path))
    stem, extension = os.path.splitext(name)
    temporary = os.path.join(folder, f".{stem}.{os.getpid()}.tmp{extension}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_sidecar(model_path: str, record: dict) -> str:
    path = sidecar_path(model_path)

    def dump(temporary):
        with open(temporary, "w") as file:
            json.dump({"version": SIDECAR_VERSION, **record}, file, indent=2)
            file.write("\n")

    write_atomically(path, dump)
    return path


def read_sidecar(model_path: str) -> dict:
    """The sidecar of `model_path`; one-line errors for a missing or foreign file."""
    from keras_aerec.cli.main import CommandError

    path = sidecar_path(model_path)
    if not os.path.isfile(path):
        raise CommandError(
            f"no sidecar {path!r} next to {model_path!r}: models for evaluate and "
            "recommend are written by `keras-aerec train`"
        )
    try:
        with open(path) as file:
            record = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise CommandError(f"cannot read sidecar {path!r}: {error}") from None
    missing = [key for key in ("model", "dataset", "protocol", "seed") if key not in record]
    if missing:
        raise CommandError(f"sidecar {path!r} lacks {', '.join(missing)}")
    return record


def load_run(args):
    """Loads `args.model` and its sidecar, the data, and rebuilds the training split.

    `args.dataset` / `args.data_dir`, when given, replace the sidecar's (the same release
    in another folder, say).

    Returns:
        `(model, record, recipe, spec, interactions, split)`.
    """
    import keras

    from keras_aerec.cli.main import CommandError
    from keras_aerec.experiments import MODELS, get_protocol
    from keras_aerec.export._plan import import_custom_objects

    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"model file {args.model!r} not found")
    record = read_sidecar(args.model)
    if record["model"] not in MODELS:
        raise CommandError(
            f"the sidecar names model {record['model']!r}, which this version does not "
            f"know (valid: {', '.join(sorted(MODELS))})"
        )
    recipe = MODELS[record["model"]]
    spec = get_protocol(record["protocol"])
    data_args = argparse.Namespace(
        dataset=args.dataset or record["dataset"],
        data_dir=args.data_dir or record.get("data_dir"),
        seed=record["seed"],
    )
    interactions = load_data(data_args, recipe, spec)
    split = spec.split(recipe.kind, interactions, record["seed"])
    import_custom_objects()
    model = keras.saving.load_model(args.model)
    return model, record, recipe, spec, interactions, split


def load_data(args, recipe, spec):
    """The dataset of `args`, with timestamps when the recipe's split is ordered by time."""
    from keras_aerec.cli.main import CommandError, _load
    from keras_aerec.experiments import PROTOCOLS, get_protocol

    if recipe.kind not in spec.kinds:
        valid = [name for name in PROTOCOLS if recipe.kind in get_protocol(name).kinds]
        raise CommandError(
            f"the {spec.name!r} protocol does not evaluate {recipe.name} ({recipe.kind} "
            f"model); valid protocols for it: {', '.join(valid)}"
        )
    return _load(args, require_timestamps=spec.split_source(recipe.kind) == "temporal")


def metrics_title(recipe, spec) -> str:
    """`test metrics (svae, article, temporal split protocol):`, labelled as the runner does."""
    from keras_aerec.experiments.runner import TEMPORAL_SPLIT_LABEL

    protocol = spec.name
    if spec.split_source(recipe.kind) == "temporal" and not spec.needs_timestamps:
        protocol += f", {TEMPORAL_SPLIT_LABEL}"
    return f"test metrics ({recipe.name}, {protocol} protocol):"


def print_metrics(title: str, metrics: dict) -> None:
    print(title)
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        print(f"  {name:<{width}}  {value:.4f}")
