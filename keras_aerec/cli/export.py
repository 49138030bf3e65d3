"""`keras-aerec export`: a fitted `.keras` model as a TF Serving SavedModel.

    keras-aerec export runs/multvae.keras --directory saved_models --k 100 --models-config

writes `saved_models/<name>/<version>/` (with the item vocabulary and TF Serving warm-up
requests) and, with `--models-config`, `saved_models/models.config` listing every model
of the folder, for `tensorflow_model_server --model_config_file=...`.
"""

import os

import numpy as np
import pandas as pd
import scipy.sparse as sp

# `keras_aerec.export.saved_model`'s DEFAULT_DIRECTORY and MODELS_CONFIG: importing that
# module here would load a backend for every `keras-aerec --help` (tests check they agree).
DEFAULT_DIRECTORY = "saved_models"
MODELS_CONFIG = "models.config"

_RATINGS_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def add_parser(subparsers):
    """Registers the `export` subcommand on `subparsers` (from `add_subparsers`)."""
    parser = subparsers.add_parser(
        "export",
        help="write a fitted .keras model as a TF Serving SavedModel "
        "(<directory>/<name>/<version>/, signatures serving_default and recommend)",
    )
    parser.add_argument("model", help="path of the fitted model, saved as a .keras file")
    parser.add_argument(
        "--directory",
        default=DEFAULT_DIRECTORY,
        help=f"folder of model roots served by TF Serving (default: {DEFAULT_DIRECTORY})",
    )
    parser.add_argument(
        "--version", type=int, default=None, help="version number (default: the next free one)"
    )
    parser.add_argument(
        "--k", type=int, default=100, help="items returned by `recommend` (default: 100)"
    )
    parser.add_argument("--name", default=None, help="model folder name (default: the model's)")
    parser.add_argument(
        "--ratings",
        default=None,
        help="item-based rating models (I-AutoRec) only: the training ratings, as a .npz "
        "users x items matrix (scipy.sparse.save_npz, the model's id order) or a ratings "
        "file of user_id, item_id, rating[, timestamp] lines in original ids",
    )
    parser.add_argument("--sep", default="::", help="field separator of --ratings (default: ::)")
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="do not write assets.extra/tf_serving_warmup_requests (written by default; "
        "needs `pip install --no-deps tensorflow-serving-api`)",
    )
    parser.add_argument(
        "--models-config",
        action="store_true",
        help=f"write or update <directory>/{MODELS_CONFIG}, one TF Serving entry per model "
        "folder (start the server with --model_config_file=<that file>)",
    )
    parser.add_argument(
        "--base-path",
        default=None,
        help=f"the directory as TF Serving sees it, for the base paths in {MODELS_CONFIG} "
        "(e.g. /models in a container; default: the directory's absolute path)",
    )
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    return parser


def run(args) -> None:
    """Loads `args.model`, exports it and prints the written version folder."""
    from keras_aerec.cli._saved_run import load_model
    from keras_aerec.export._plan import import_custom_objects
    from keras_aerec.export.saved_model import export_saved_model, write_models_config

    if args.base_path is not None and not args.models_config:
        raise ValueError("`--base-path` is only used with `--models-config`")
    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"model file {args.model!r} not found")
    import_custom_objects()
    model = load_model(args.model)  # a damaged file is one line, as for evaluate
    item_based = getattr(model, "variant", None) == "item"
    if item_based and args.ratings is None:
        raise ValueError(
            "`--ratings` should be the training ratings file of this item-based rating "
            "model: its SavedModel embeds them. Received: none"
        )
    if not item_based and args.ratings is not None:
        raise ValueError(
            "`--ratings` is only used by item-based rating models (I-AutoRec, DeepRec "
            f'variant="item"), whose SavedModel embeds them. Received: --ratings for '
            f"{type(model).__name__} {model.name!r}"
        )
    ratings = _read_ratings(args.ratings, args.sep, model) if args.ratings else None
    path = export_saved_model(
        model,
        args.directory,
        version=args.version,
        k=args.k,
        name=args.name,
        ratings=ratings,
        warmup=args.warmup,
    )
    print(f"wrote {path}")
    if args.models_config:
        print(f"wrote {write_models_config(args.directory, args.base_path)}")


def _read_ratings(path, sep, model):
    """The users x items training ratings in the model's user and item order."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ratings file {path!r} not found")
    if path.endswith(".npz"):
        return sp.load_npz(path).tocsr()
    from keras_aerec.data.io import read_ratings

    with open(path) as file:
        num_fields = len(file.readline().rstrip("\n").split(sep))
    interactions = read_ratings(path, sep=sep, columns=_RATINGS_COLUMNS[:num_fields], id_dtype=str)
    users = _positions(interactions.user_ids, model.user_ids, "user")
    items = _positions(interactions.item_ids, model.item_ids, "item")
    entries = interactions.matrix.tocoo()
    return sp.csr_matrix(
        (entries.data, (users[entries.row], items[entries.col])),
        shape=(len(model.user_ids), len(model.item_ids)),
        dtype="float32",
    )


def _positions(file_ids, model_ids, side):
    """Positions of the file's ids among the model's ids (a ValueError for unknown ids)."""
    if model_ids is None:
        raise ValueError(
            f"`--ratings` should be a .npz matrix for a model built without `{side}_ids` "
            "(a ratings file holds original ids). Received: a ratings file"
        )
    model_ids = np.asarray(model_ids)
    if model_ids.dtype.kind in "iu":
        try:
            file_ids = np.asarray(file_ids).astype("int64")
        except ValueError:
            raise ValueError(
                f"`--ratings` should hold integer {side} ids, as the model does. "
                f"Received: e.g. {file_ids[0]!r}"
            ) from None
    else:
        model_ids = model_ids.astype(str)
    positions = pd.Index(model_ids).get_indexer(file_ids)
    if (positions < 0).any():
        unknown = np.asarray(file_ids)[positions < 0]
        raise ValueError(
            f"`--ratings` should only hold {side} ids the model knows. Received "
            f"{unknown.size} unknown, e.g. {unknown[:3].tolist()}"
        )
    return positions
