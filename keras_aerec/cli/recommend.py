"""`keras-aerec recommend MODEL.keras --user-id ID`: a user's top-k items, with titles.

    keras-aerec recommend runs/multvae.keras --user-id 42 --k 10

Ids are the dataset's original ones. Items the user has rated (any rating, in any part of
the split) are never recommended. Ranking models score the user's known positive
interactions (folded in); rating models (AutoRec, DeepRec) rank by predicted rating.
"""

import argparse
import os


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the `recommend` subcommand on the `keras-aerec` subparsers."""
    from keras_aerec.cli.common import add_common, add_data_arguments, positive_int

    parser = subparsers.add_parser(
        "recommend",
        help="top-k unseen items for a user id, with titles when the dataset has them",
    )
    parser.add_argument("model", help="the .keras file written by `keras-aerec train`")
    parser.add_argument("--user-id", required=True, help="original user id (as in the data)")
    parser.add_argument("--k", type=positive_int, default=10, help="items (default: 10)")
    add_data_arguments(parser, overrides=True)
    add_common(parser)
    return parser


def run(args) -> None:
    """Prints rank, item id, score, title and genres of the user's top-k items."""
    from keras_aerec.cli._saved_run import load_run, read_record
    from keras_aerec.cli.common import CommandError, logger
    from keras_aerec.experiments import MODELS

    name = read_record(args.model)["model"]
    if name in MODELS and MODELS[name].kind == "sequence":
        raise CommandError(
            f"recommend does not support {name}, which reads time-ordered sequences; "
            "use its Python API (`model.recommend`) with the user's ordered history"
        )
    model, record, recipe, _, interactions, split = load_run(args)
    user = _user_position(interactions, args.user_id)
    rated = interactions.matrix[user].indices  # positions in `interactions.item_ids`
    user_id = interactions.user_ids[user]
    if recipe.kind == "rating":
        item_ids, scores = _by_predicted_rating(model, split, user_id, args.k)
        score_name = "rating"
    else:
        item_ids, scores = _by_ranking_score(
            model, split, user_id, interactions.item_ids[rated], args.k
        )
        score_name = "score"
    if len(item_ids) < args.k:
        logger.warning(
            "user %s has only %d unrated items in the model's catalogue", user_id, len(item_ids)
        )
    print(f"top-{args.k} for user {user_id} ({record['model']}, {_data_label(record, args)}):")
    _print_table(item_ids, scores, score_name, interactions.items)


def _data_label(record, args) -> str:
    if args.data_file or record["dataset"] == "file":
        return os.path.basename(args.data_file or record["data_file"])
    return args.dataset or record["dataset"]


def _user_position(interactions, value: str) -> int:
    import numpy as np
    import pandas as pd

    from keras_aerec.cli.common import CommandError

    user_ids = np.asarray(interactions.user_ids)
    if user_ids.dtype.kind in "iu":
        try:
            key = int(value)
        except ValueError:
            key = None
    else:
        key, user_ids = value, user_ids.astype(str)
    position = pd.Index(user_ids).get_indexer([key])[0] if key is not None else -1
    if position < 0:
        raise CommandError(
            f"unknown user id {value!r}: no such user in {interactions.name or 'the data'} "
            f"({len(user_ids)} users, ids {user_ids.min()}..{user_ids.max()})"
        )
    return int(position)


def _by_predicted_rating(model, split, user_id, k):
    """The user's unrated items by predicted rating (ties: lower item position first)."""
    import numpy as np
    import pandas as pd

    known = (split.train + split.validation + split.test).tocsr()
    row = pd.Index(split.user_ids).get_indexer([user_id])[0]
    candidates = np.setdiff1d(np.arange(known.shape[1]), known[row].indices)
    ratings = model.predict_ratings(
        np.full(candidates.size, user_id), split.item_ids[candidates], known
    )
    order = np.argsort(-ratings, kind="stable")[:k]
    return split.item_ids[candidates[order]], ratings[order]


def _by_ranking_score(model, split, user_id, rated_item_ids, k):
    """The user's top-k items scored from every known positive interaction of the user."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from keras_aerec.metrics.ranking import top_k_indices

    num_items = split.train.shape[1]
    history = sp.csr_matrix((1, num_items), dtype="float32")
    train_row = pd.Index(split.train_user_ids).get_indexer([user_id])[0]
    if train_row >= 0:
        history = history + split.train[train_row]
    for part in (split.validation, split.test):
        if part is None:
            continue
        row = pd.Index(part.user_ids).get_indexer([user_id])[0]
        if row >= 0:
            history = history + part.fold_in[row] + part.holdout[row]
    history.data[:] = 1.0
    scores = model.score(history, users=np.array([train_row]))[0]
    rated = pd.Index(split.item_ids).get_indexer(rated_item_ids)
    scores[rated[rated >= 0]] = -np.inf
    scores[history.indices] = -np.inf
    available = int(np.isfinite(scores).sum())
    top = top_k_indices(scores[None, :], min(k, available))[0] if available else []
    return split.item_ids[top], scores[top]


def _print_table(item_ids, scores, score_name, items) -> None:
    import pandas as pd

    titles = genres = None
    if items is not None and "title" in items:
        found = items.reindex(pd.Index(item_ids))
        titles = found["title"].fillna("").tolist()
        if "genres" in found:
            genres = [
                "|".join(value) if isinstance(value, list | tuple) else ""
                for value in found["genres"]
            ]
    id_width = max([len("item_id"), *(len(str(item)) for item in item_ids)])
    header = f"{'rank':>4}  {'item_id':>{id_width}}  {score_name:>8}"
    title_width = max([len("title"), *(len(title) for title in titles or [])])
    if titles is not None:
        header += f"  {'title':<{title_width}}" + ("  genres" if genres is not None else "")
    print(header.rstrip())
    for rank, (item, score) in enumerate(zip(item_ids, scores, strict=True), start=1):
        line = f"{rank:>4}  {item!s:>{id_width}}  {score:>8.4f}"
        if titles is not None:
            line += f"  {titles[rank - 1]:<{title_width}}"
            if genres is not None:
                line += f"  {genres[rank - 1]}"
        print(line.rstrip())
