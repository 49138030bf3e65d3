"""What `train` stores with a `.keras` model, and how `evaluate` / `recommend` read it back.

`train` writes one file, `NAME.keras`: Keras' own archive with one more member,
`keras_aerec_run.json`, the run record: model name, data source (dataset and folder, or
the user's own file and how to read it), protocol, seed, hyperparameters, metrics, and
what identifies the data and the split (fingerprints). Model and record live in one file
published with one atomic rename, so after a kill at any instant the file on disk is the
previous run or the new one, whole. `NAME.json` beside it is a readable copy of the record
(with the model file's SHA-256); the record inside the model is the one that counts.

`evaluate` / `recommend` reload the data the record names, rebuild the split, and refuse
when the data or the split is not the one the model was trained on, naming what differs.
"""

import dataclasses
import glob
import hashlib
import json
import os
import zipfile

import numpy as np
import scipy.sparse as sp

from keras_aerec.cli.common import (
    OWN_DATA,
    CommandError,
    load_interactions,
    positives_threshold,
)

RECORD_VERSION = 2
RECORD_MEMBER = "keras_aerec_run.json"
# What the own-data options of `evaluate` / `recommend` may replace in the record.
_SOURCE_OPTIONS = ("data_file", "sep", "columns", "header", "implicit", "threshold")


def sidecar_path(model_path: str) -> str:
    """`run/model.keras` -> `run/model.json`."""
    return os.path.splitext(model_path)[0] + ".json"


def _temporary_path(path: str, pid: int | None = None) -> str:
    """`.NAME.PID.tmp.EXT` beside `path` (same file system: `os.replace` is atomic)."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, extension = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.{pid or os.getpid()}.tmp{extension}")


def write_atomically(path: str, write) -> None:
    """Calls `write(temporary_path)`, then renames the file over `path`.

    The temporary file keeps `path`'s extension (Keras checks that a model file ends in
    `.keras`). A reader sees the old file or the new one, whole, never a partial one.
    """
    temporary = _temporary_path(path)
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def remove_leftovers(path: str) -> list:
    """Deletes `.NAME.PID.tmp.*` files a killed `train` left beside `path`.

    Only hidden temporary names of processes that no longer run are touched; the
    published `NAME.keras` / `NAME.json` never are.
    """
    folder, name = os.path.split(os.path.abspath(path))
    stem = os.path.splitext(name)[0]
    removed = []
    for leftover in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(stem)}.*.tmp*")):
        pid = os.path.basename(leftover)[len(stem) + 2 :].split(".")[0]
        if pid.isdigit() and not _running(int(pid)):
            os.remove(leftover)
            removed.append(leftover)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def publish_run(model, path: str, record: dict) -> str:
    """Saves `model` with `record` inside as `path` (atomic), then the readable sidecar.

    Returns:
        The sidecar's path.
    """
    record = {"version": RECORD_VERSION, **record}
    text = json.dumps(record, indent=2) + "\n"

    def save(temporary):
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(RECORD_MEMBER, text)

    write_atomically(path, save)
    sidecar = sidecar_path(path)
    from keras_aerec.data.io import file_digest  # loads a backend: not at --help

    copy = {**record, "model_sha256": file_digest(path)}

    def dump(temporary):
        with open(temporary, "w") as file:
            json.dump(copy, file, indent=2)
            file.write("\n")

    write_atomically(sidecar, dump)
    return sidecar


# ------------------------------------------------------------------ reading


def check_model_file(path: str) -> None:
    """One-line errors for a missing, truncated or corrupted `.keras` file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} not found")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CommandError(
            f"model file {path!r} is damaged or not a .keras file ({error}): retrain it "
            "or restore a copy"
        ) from None
    if bad is not None:
        raise CommandError(
            f"model file {path!r} is damaged (bad checksum in {bad}): retrain it or restore a copy"
        )


def read_record(model_path: str) -> dict:
    """The run record of `model_path` (inside the file; the sidecar for older models).

    Refuses a sidecar that is not a JSON object, or that disagrees with the record
    inside the model (an edited copy), naming the fields that differ. A sidecar left
    stale by an interrupted `train` (it names another model file) only warns.
    """
    from keras_aerec.cli.common import logger

    check_model_file(model_path)
    with zipfile.ZipFile(model_path) as archive:
        inside = (
            _parse_record(archive.read(RECORD_MEMBER), f"{model_path}:{RECORD_MEMBER}")
            if RECORD_MEMBER in archive.namelist()
            else None
        )
    path = sidecar_path(model_path)
    sidecar = None
    if os.path.isfile(path):
        try:
            with open(path, "rb") as file:
                sidecar = _parse_record(file.read(), path)
        except OSError as error:
            raise CommandError(f"cannot read sidecar {path!r}: {error.strerror}") from None
    if inside is None:
        if sidecar is None:
            raise CommandError(
                f"{model_path!r} holds no run record and has no sidecar {path!r}: models "
                "for evaluate and recommend are written by `keras-aerec train`"
            )
        inside = sidecar
    elif sidecar is not None:
        copy = {key: value for key, value in sidecar.items() if key != "model_sha256"}
        from keras_aerec.data.io import file_digest  # loads a backend: not at --help

        if sidecar.get("model_sha256") != file_digest(model_path):
            logger.warning(
                "%s describes another version of %s (left by an interrupted train?); "
                "using the record inside the model file",
                path,
                model_path,
            )
        elif copy != inside:
            differing = sorted(
                key for key in set(copy) | set(inside) if copy.get(key) != inside.get(key)
            )
            shown = ", ".join(
                f"{key}={copy.get(key)!r} (model: {inside.get(key)!r})"
                if not isinstance(inside.get(key), dict | list)
                else key
                for key in differing
            )
            raise CommandError(
                f"sidecar {path!r} disagrees with the run record inside {model_path!r}: "
                f"{shown}; restore or delete the sidecar"
            )
    missing = [key for key in ("model", "dataset", "protocol", "seed") if key not in inside]
    if missing:
        raise CommandError(f"the run record of {model_path!r} lacks {', '.join(missing)}")
    return inside


def _parse_record(raw: bytes, where: str) -> dict:
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CommandError(f"{where!r} is not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise CommandError(
            f"{where!r} should hold a JSON object (a run record). Received: "
            f"a JSON {type(record).__name__}"
        )
    return record


# ------------------------------------------------------------------ identity


def _digest(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        array = np.asarray(array)
        if array.dtype.kind in "OUS":
            array = np.asarray(array.astype(str), dtype="U")
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def data_fingerprint(interactions) -> dict:
    """What identifies the data: sizes and SHA-256 prefixes of ids, values and times."""
    matrix = interactions.matrix
    return {
        "users": int(interactions.num_users),
        "items": int(interactions.num_items),
        "interactions": int(interactions.num_interactions),
        "user_ids": _digest(interactions.user_ids),
        "item_ids": _digest(interactions.item_ids),
        "values": _digest(matrix.indptr, matrix.indices, matrix.data),
        "timestamps": _digest(interactions.timestamps),
    }


def split_fingerprint(split) -> str:
    """A SHA-256 prefix of every matrix and id array of a split."""
    parts = []

    def collect(value):
        if sp.issparse(value):
            csr = sp.csr_matrix(value)
            parts.extend([csr.indptr, csr.indices, csr.data])
        elif isinstance(value, np.ndarray):
            parts.append(value)
        elif dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                collect(getattr(value, field.name))

    collect(split)
    return _digest(*parts)


_DATA_WORDS = {
    "users": "users",
    "items": "items",
    "interactions": "interactions",
    "user_ids": "user ids",
    "item_ids": "item ids",
    "values": "ratings (or which user-item pairs are present)",
    "timestamps": "timestamps",
}


def check_data(record: dict, interactions, where: str) -> None:
    """Refuses data that is not the data the model was trained on, naming what differs."""
    from keras_aerec.cli.common import logger

    expected = record.get("data_fingerprint")
    if not expected:
        logger.warning(
            "the model was saved by an older keras-aerec without a data fingerprint: "
            "%s cannot be checked against its training data",
            where,
        )
        return
    found = data_fingerprint(interactions)
    counts = [
        f"{found[key]:,} {key} instead of {expected[key]:,}"
        for key in ("users", "items", "interactions")
        if found[key] != expected.get(key)
    ]
    if counts:
        difference = ", ".join(counts)
    else:
        other = [_DATA_WORDS[key] for key in _DATA_WORDS if found[key] != expected.get(key)]
        if not other:
            return
        difference = f"same sizes but other {' and '.join(other)}"
    raise CommandError(
        f"{where} is not the data the model was trained on: {difference}. Pass the "
        "training data (--dataset / --data-dir / --data-file) or retrain"
    )


def check_split(record: dict, split) -> None:
    expected = record.get("split_fingerprint")
    if expected and split_fingerprint(split) != expected:
        raise CommandError(
            f"the {record['protocol']} split rebuilt with seed {record['seed']} is not the one "
            "the model was trained on (another --threshold, an edited record, or a "
            "keras-aerec version that splits differently); retrain"
        )


# ------------------------------------------------------------------ loading a run


def data_options(args, record: dict) -> dict:
    """The record's data source, with what the command line replaces."""
    source = {key: record.get(key) for key in ("dataset", "data_dir", *_SOURCE_OPTIONS)}
    if getattr(args, "data_file", None) is not None:
        source = {**source, "dataset": OWN_DATA, "data_file": os.path.abspath(args.data_file)}
    dataset, data_dir = getattr(args, "dataset", None), getattr(args, "data_dir", None)
    if getattr(args, "data_file", None) is None and (dataset or data_dir):
        source["dataset"] = dataset or (
            record["dataset"] if record["dataset"] != OWN_DATA else "1m"
        )
        if data_dir is not None:
            source["data_dir"] = os.path.abspath(data_dir)
    for key in _SOURCE_OPTIONS[1:]:
        if getattr(args, key, None) is not None:
            source[key] = list(args.columns) if key == "columns" else getattr(args, key)
    if source["dataset"] == OWN_DATA:
        source["sep"] = source["sep"] or ","
        source["columns"] = source["columns"] or ["user_id", "item_id", "rating"]
        source["header"] = bool(source["header"])
        source["implicit"] = bool(source["implicit"])
    return source


def describe_source(source: dict) -> str:
    if source["dataset"] == OWN_DATA:
        return f"data file {source['data_file']!r}"
    if source["dataset"] == "synthetic":
        return "the synthetic data"
    folder = source.get("data_dir")
    return f"ml-{source['dataset']}" + (f" in {folder!r}" if folder else "")


def protocol_for(name: str, source: dict):
    """The protocol `name`, applying the own data's positive threshold."""
    from keras_aerec.experiments import get_protocol

    spec = get_protocol(name)
    threshold = positives_threshold(source)
    return spec if threshold is None else dataclasses.replace(spec, threshold=threshold)


def check_recipe_data(recipe, spec, source) -> None:
    """One-line errors for a model and protocol the data cannot serve."""
    from keras_aerec.experiments import PROTOCOLS, get_protocol

    if recipe.kind not in spec.kinds:
        valid = [name for name in PROTOCOLS if recipe.kind in get_protocol(name).kinds]
        raise CommandError(
            f"the {spec.name!r} protocol does not evaluate {recipe.name} ({recipe.kind} "
            f"model); valid protocols for it: {', '.join(valid)}"
        )
    check_ratings(recipe, source)


def check_ratings(recipe, source) -> None:
    """Rating models need ratings: implicit own data has none."""
    if recipe.kind == "rating" and source["dataset"] == OWN_DATA and source["implicit"]:
        raise CommandError(
            f"{recipe.name} predicts ratings, and --implicit data has none: pick a top-N "
            "model (multvae, multdae, cdae, ease, svae) or give a rating column"
        )


def load_data(source: dict, recipe, spec, seed: int):
    """The interactions of `source`, with timestamps when the recipe's split is ordered by time."""
    check_recipe_data(recipe, spec, source)
    return load_interactions(
        source, seed, require_timestamps=spec.split_source(recipe.kind) == "temporal"
    )


def load_run(args):
    """Loads `args.model` and its record, the data, and rebuilds the training split.

    The data options of `args`, when given, replace the record's (the same data in
    another folder, say); data or a split that is not the model's own is refused.

    Returns:
        `(model, record, recipe, spec, interactions, split)`.
    """
    from keras_aerec.export._plan import import_custom_objects

    record, recipe, spec, interactions, split = load_run_data(args)
    import_custom_objects()
    return load_model(args.model), record, recipe, spec, interactions, split


def load_run_data(args):
    """What `load_run` returns but the model: `(record, recipe, spec, interactions, split)`.

    For commands that need a saved run's training data without its model in memory
    (e.g. `export` of an item-based AutoRec, whose SavedModel embeds the training
    ratings: `split.train`). `args` needs `model` and the data options of
    `common.add_data_arguments(parser, overrides=True)` (None when absent).
    """
    from keras_aerec.experiments import MODELS

    record = read_record(args.model)
    if record["model"] not in MODELS:
        raise CommandError(
            f"the run record names model {record['model']!r}, which this version does not "
            f"know (valid: {', '.join(sorted(MODELS))})"
        )
    recipe = MODELS[record["model"]]
    source = data_options(args, record)
    spec = protocol_for(record["protocol"], source)
    interactions = load_data(source, recipe, spec, record["seed"])
    check_data(record, interactions, describe_source(source))
    split = spec.split(recipe.kind, interactions, record["seed"])
    check_split(record, split)
    return record, recipe, spec, interactions, split


def load_model(path: str):
    """`keras.saving.load_model` with one-line errors for a damaged file."""
    import keras

    check_model_file(path)
    try:
        return keras.saving.load_model(path)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise CommandError(f"model file {path!r} is damaged ({error}): retrain it") from None


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
