"""`export_saved_model`: a TF Serving SavedModel of a fitted model, from any backend.

The SavedModel's signatures (documented in docs/serving.md), all computed in the graph:
`serving_default` returns scores (predicted ratings for AutoRec/DeepRec, item scores for
the others); `recommend` the top-k items, in original ids, with the user's seen items
excluded; `recommend_ids` and `recommend_ids_excluding` the same from lists of item ids
(the id-list request form), the second also leaving out the ids a request names;
`item_vocabulary` the item id of each column (also in `assets/item_ids.txt`). TF
Serving warm-up requests go to `assets.extra/`. It is written as
`<directory>/<name>/<version>/`, the layout TF Serving watches, atomically: built in a
hidden staging folder of `<directory>/<name>/` and renamed to `<version>` only when
complete.

Under the TensorFlow backend the graph is built in-process. Under JAX and PyTorch the
model goes through a temporary `.keras` file, reloaded under TensorFlow in a
subprocess, which builds and writes the same graph.
"""

import errno
import importlib.util
import json
import logging
import numbers
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_aerec.export import _plan

logger = logging.getLogger("keras_aerec.export")

DEFAULT_DIRECTORY = "saved_models"
SIGNATURES = (
    "serving_default",
    "recommend",
    "recommend_ids",
    "recommend_ids_excluding",
    "item_vocabulary",
)
MODELS_CONFIG = "models.config"

_VERSION_NAME = re.compile(r"[0-9]+")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_STAGING_PREFIX = ".tmp-"
# Leftovers of killed exports: `<root>/.tmp-<version|next>-<pid>-*` staging folders and,
# off TensorFlow, `<tmp>/keras_aerec_export_<pid>_*` work folders.
_STAGING_NAME = re.compile(r"\.tmp-(?:next|[0-9]+)-([0-9]+)-.+")
_WORK_PREFIX = "keras_aerec_export_"
_WORK_NAME = re.compile(_WORK_PREFIX + r"([0-9]+)_.+")
_SERVING_API_MISSING = (
    "Writing TF Serving warm-up requests needs the `tensorflow-serving-api` protos: "
    "`pip install --no-deps tensorflow-serving-api` (its requirements pin the full "
    "`tensorflow` package, which would replace `tensorflow-cpu`), or export with "
    "`warmup=False` (`--no-warmup`)."
)
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_saved_model(
    model,
    directory: str | os.PathLike = DEFAULT_DIRECTORY,
    version: int | None = None,
    k: int = 100,
    *,
    name: str | None = None,
    ratings=None,
    side_information=None,
    warmup: bool = True,
) -> str:
    """Exports a fitted model as a TF Serving SavedModel with score and top-k signatures.

    Signatures (inputs -> outputs; details and a REST example in docs/serving.md):

    - MultVAE, MultDAE, EASE: `user_items` (batch x items, float32) -> `scores`;
      `recommend` -> `item_ids`, `scores` (batch x k).
    - CDAE: `user_index` (training-user position, -1 for a new user) and `user_items`.
    - SVAE: `sequences` (batch x length original item ids, oldest first, padded at the
      end with -1, or "" for string ids).
    - U-AutoRec, DeepRec (`variant="user"`): `ratings` (batch x items, 0 = not rated)
      -> `predicted_ratings` (clipped to the rating range); `recommend` -> `item_ids`,
      `scores` (unclipped reconstruction, the ranking key), `predicted_ratings`.
    - I-AutoRec (`variant="item"`): the training `ratings` are embedded; `user_id` and
      `item_id` (original ids) -> `predicted_ratings`, as `predict_ratings`;
      `recommend`: `user_id` -> the user's top-k unrated items.

    Every family also has `recommend_ids` (the same inputs with lists of original item
    ids in place of dense rows, padded with -1 or "", unknown ids skipped and counted in
    `unknown_item_count`; I-AutoRec: `user_id`) and `recommend_ids_excluding` (one more
    input, `exclude_item_ids`), and `item_vocabulary` (`positions` -> `item_ids`; past
    the end: the missing id).

    Items are in the model's `item_ids` order; outputs carry original ids, with -1 (or
    "") and a score of `-inf` where a row has fewer than `k` eligible items.

    Args:
        model: a fitted keras_aerec model (any backend).
        directory: folder of model roots that TF Serving reads (`--model_base_path` is
            `<directory>/<name>`). Defaults to `"saved_models"`.
        version: integer version folder to write; defaults to one more than the highest
            existing version (1 for a new model). An existing version is never
            overwritten.
        k: number of items `recommend` returns, between 1 and the number of items.
        name: model root folder name; defaults to `model.name`.
        ratings: users x items training ratings (CSR or `Interactions`), required for an
            item-based rating model (I-AutoRec) and rejected otherwise.
        side_information: item side information for an item-based rating model built
            with `side_information_size > 0`.
        warmup: write `assets.extra/tf_serving_warmup_requests`, one request per
            signature, which TF Serving replays at load. Needs `tensorflow-serving-api`.

    Returns:
        The path of the written version folder, `<directory>/<name>/<version>`.

    Raises:
        ValueError: for an unsupported or unfitted model, `k` outside the catalogue, a
            bad `version` or `name`, an existing version, or a target folder that is not
            a model root. Nothing is written or overwritten then.
        ImportError: when TensorFlow (or, with `warmup`, tensorflow-serving-api) is not
            installed.
        OSError: when the disk fills up during the export (nothing is published).

    Example:

    >>> path = export_saved_model(model, "saved_models", k=50)  # doctest: +SKIP
    >>> path  # doctest: +SKIP
    'saved_models/mult_vae/1'
    """
    plan, arrays = _plan.serving_plan(model, k, ratings, side_information)
    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(
            "Exporting a SavedModel needs TensorFlow, whichever backend trained the model: "
            "`pip install 'keras-aerec[tensorflow]'`."
        )
    if warmup and importlib.util.find_spec("tensorflow_serving") is None:
        raise ImportError(_SERVING_API_MISSING)
    name = _check_name(model.name if name is None else name)
    plan["model_name"], plan["warmup"] = name, bool(warmup)
    if version is not None:
        version = _check_version(version)
    directory = os.fspath(directory)
    root = os.path.join(directory, name)
    _check_directory(directory)
    versions = _existing_versions(root)
    if version is not None and (version in versions or os.path.lexists(_join(root, version))):
        raise ValueError(
            f"`version` {version} already exists in {root!r}; nothing was overwritten. "
            f"Received: version={version}"
        )
    created = _make_directories(root)
    _remove_leftovers(root)
    staging = tempfile.mkdtemp(
        prefix=f"{_STAGING_PREFIX}{'next' if version is None else version}-{os.getpid()}-",
        dir=root,
    )
    try:
        # mkdtemp makes it private (0700): give the version the model root's permissions.
        os.chmod(staging, stat.S_IMODE(os.stat(root).st_mode))
        _write_saved_model(model, plan, arrays, staging)
        path = _publish(staging, root, version)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            _remove_if_empty(folder)
        if _is_disk_full(error):
            raise OSError(
                errno.ENOSPC,
                f"No space left on the device while writing the SavedModel into {root!r}; "
                "nothing was published",
            ) from None
        raise
    logger.info("exported %s (%s) to %s", model.name, plan["kind"], path)
    return path


# === Layout ===


def _check_name(name):
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise ValueError(
            "`name` should be a folder name of letters, digits, '_', '.' and '-' not "
            f"starting with '.' or '-'. Received: name={name!r}"
        )
    return name


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 1:
        raise ValueError(f"`version` should be a positive integer. Received: version={version!r}")
    return int(version)


def _check_directory(directory):
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise ValueError(
            f"`directory` should be a folder of model roots. Received: {directory!r}, "
            "which exists and is not a folder"
        )
    if os.path.exists(os.path.join(directory, "saved_model.pb")):
        raise ValueError(
            f"`directory` should be a folder of model roots. Received: {directory!r}, "
            "which is itself a SavedModel"
        )


def _existing_versions(root):
    """Versions in the model root `root` (none if absent); a ValueError if not a root."""
    if not os.path.lexists(root):
        return []
    if not os.path.isdir(root):
        raise ValueError(
            f"The export target {root!r} exists and is not a model root (a folder of "
            "numbered versions): it is a file. Nothing was written."
        )
    versions = []
    for entry in os.scandir(root):
        if entry.name.startswith("."):  # staging folders of exports in progress
            continue
        if _VERSION_NAME.fullmatch(entry.name) and entry.is_dir():
            versions.append(int(entry.name))
            continue
        raise ValueError(
            f"The export target {root!r} exists and is not a model root (a folder of "
            f"numbered versions only): it holds {entry.name!r}. Nothing was written."
        )
    return versions


def _make_directories(root):
    """Creates `root` and its missing parents; returns the folders created."""
    missing = []
    folder = os.path.abspath(root)
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(root, exist_ok=True)
    return missing[::-1]


def _remove_if_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _join(root, version):
    return os.path.join(root, str(version))


def _remove_leftovers(root):
    """Removes staging and work folders left by killed exports (their process is gone).

    Only names this module creates are touched, and only when the process id they carry
    is not running: published versions and running exports are never affected.
    """
    for folder, pattern in ((root, _STAGING_NAME), (tempfile.gettempdir(), _WORK_NAME)):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _running(int(match[1])):
                logger.info("removing %s, left by an interrupted export", entry.path)
                shutil.rmtree(entry.path, ignore_errors=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to tell: keep its folder
        return True
    return True


def _is_disk_full(error):
    """ENOSPC from Python, or TensorFlow's error for it (in-process or in the subprocess)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(error)


def _publish(staging, root, version):
    """Renames the complete SavedModel to its version folder (the next free one if None)."""
    while True:
        target = version if version is not None else max(_existing_versions(root), default=0) + 1
        path = _join(root, target)
        if not os.path.lexists(path):
            try:
                os.rename(staging, path)
                return path
            except OSError:
                if not os.path.lexists(path):
                    raise
        if version is not None:  # taken since the check at the start
            raise ValueError(
                f"`version` {version} already exists in {root!r}; nothing was overwritten. "
                f"Received: version={version}"
            )


# === Building ===


def _write_saved_model(model, plan, arrays, path):
    """Builds the graph under TensorFlow: in-process, or in a subprocess from a `.keras` file."""
    if keras.backend.backend() == "tensorflow":
        from keras_aerec.export._tf_builder import write_saved_model

        write_saved_model(model, plan, arrays, path)
    else:
        _write_in_tensorflow_subprocess(model, plan, arrays, path)


def _write_in_tensorflow_subprocess(model, plan, arrays, output_dir):
    """Saves the model as `.keras`, rebuilds it under TensorFlow in a subprocess."""
    with tempfile.TemporaryDirectory(prefix=f"{_WORK_PREFIX}{os.getpid()}_") as work_dir:
        if plan["needs_model"]:
            model.save(os.path.join(work_dir, "model.keras"))
        np.savez(os.path.join(work_dir, "arrays.npz"), **arrays)
        with open(os.path.join(work_dir, "plan.json"), "w") as file:
            json.dump(plan, file)
        environment = dict(os.environ)
        environment["KERAS_BACKEND"] = "tensorflow"
        environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        environment["PYTHONPATH"] = os.pathsep.join(
            [_PACKAGE_PARENT, *filter(None, [environment.get("PYTHONPATH")])]
        )
        logger.info("building the SavedModel under TensorFlow in a subprocess")
        result = subprocess.run(
            [sys.executable, "-m", "keras_aerec.export._tf_builder", work_dir, output_dir],
            env=environment,
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            return
        error_path = os.path.join(work_dir, "error.json")
        if os.path.exists(error_path):
            with open(error_path) as file:
                error = json.load(file)
            logger.debug("export subprocess traceback:\n%s", error["traceback"])
            if error["type"] == "ValueError":
                raise ValueError(error["message"])
            raise RuntimeError(
                f"The TensorFlow export subprocess failed: {error['type']}: {error['message']}"
            )
        tail = "\n".join(result.stderr.strip().splitlines()[-20:])
        raise RuntimeError(
            f"The TensorFlow export subprocess exited with code {result.returncode}:\n{tail}"
        )


# === TF Serving model config ===


def write_models_config(
    directory: str | os.PathLike = DEFAULT_DIRECTORY, base_path: str | None = None
) -> str:
    """Writes or updates `<directory>/models.config`: one entry per model root.

    TF Serving started with `--model_config_file=<directory>/models.config` then serves
    every model of the folder, each under its folder name. Entries of the existing file
    are kept (with their version policies and labels); those of the folder's models get
    their `base_path` updated, and models without one get a new entry.

    Args:
        directory: the folder of model roots written by `export_saved_model`.
        base_path: the folder as TF Serving sees it (`/models` when it is mounted there
            in a container); defaults to the absolute path of `directory`.

    Returns:
        The path of the written file.

    Example:

    >>> write_models_config("saved_models", base_path="/models")  # doctest: +SKIP
    'saved_models/models.config'
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(
            f"`directory` should be a folder of model roots. Received: {directory!r}, "
            "which is not a folder"
        )
    base_path = os.path.abspath(directory) if base_path is None else base_path
    names = sorted(
        entry.name
        for entry in os.scandir(directory)
        if entry.is_dir() and _MODEL_NAME.fullmatch(entry.name) and _has_version(entry.path)
    )
    path = os.path.join(directory, MODELS_CONFIG)
    blocks = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as file:
            blocks = _config_blocks(file.read(), path)
    entries, listed = [], set()
    for block in blocks:
        name = re.search(r'\bname\s*:\s*"([^"]*)"', block)
        name = name[1] if name else None
        if name in names:
            listed.add(name)
            block = re.sub(
                r'\bbase_path\s*:\s*"(?:[^"\\]|\\.)*"',
                lambda _, name=name: f"base_path: {_quoted(base_path, name)}",
                block,
            )
        entries.append(block)
    entries += [
        f'config {{\n    name: "{name}"\n    base_path: {_quoted(base_path, name)}\n'
        '    model_platform: "tensorflow"\n  }'
        for name in names
        if name not in listed
    ]
    text = "model_config_list {\n" + "".join(f"  {entry}\n" for entry in entries) + "}\n"
    temporary = os.path.join(directory, f".{MODELS_CONFIG}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _has_version(root):
    return any(_VERSION_NAME.fullmatch(entry.name) and entry.is_dir() for entry in os.scandir(root))


def _quoted(base_path, name):
    return json.dumps(f"{base_path.rstrip('/')}/{name}")


def _config_blocks(text, path):
    """The `config { ... }` entries of a `model_config_list`, verbatim, in file order."""
    body = re.fullmatch(r"\s*model_config_list\s*:?\s*\{(.*)\}\s*", text, re.DOTALL)
    if body is None:
        raise ValueError(
            f"{path!r} should be a TF Serving model config (`model_config_list {{ ... }}`); "
            "it was left as it is"
        )
    body = body[1]
    blocks, depth, start, in_string, escaped = [], 0, None, False, False
    for index, character in enumerate(body):
        if in_string:
            in_string = escaped or character != '"'
            escaped = not escaped and character == "\\"
            continue
        if character == '"':
            in_string = True
        elif character == "{":
            if depth == 0:
                start = body.rfind("config", 0, index)
            depth += 1
        elif character == "}":
            depth -= 1
            if depth == 0:
                blocks.append(body[start : index + 1])
    if depth != 0 or start is None and body.strip():
        raise ValueError(
            f"{path!r} should be a TF Serving model config with balanced braces; "
            "it was left as it is"
        )
    return blocks
