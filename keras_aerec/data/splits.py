"""Evaluation protocols: rating holdout, weak / strong generalization and temporal splits.

All splits are seeded, deterministic and vectorised (no Python loop over users).

Rounding rule shared by every protocol: a fraction `f` of `n` interactions is
`floor(f * n + 0.5)` interactions (rounded half up), then clipped so that every user keeps
at least one training (or fold-in) interaction.
"""

import dataclasses
import logging
import numbers

import numpy as np
import scipy.sparse as sp

from keras_aerec.data.interactions import Interactions
from keras_aerec.validation import (
    check_finite_float,
    check_non_negative_int,
    check_positive_int,
)

logger = logging.getLogger("keras_aerec")

_TRAIN, _VALIDATION, _TEST = 0, 1, 2
_PART_NAMES = {_VALIDATION: "validation", _TEST: "test"}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RatingSplit:
    """A random split of individual ratings (rating-prediction protocol).

    Attributes:
        train: CSR (users x items, float32 ratings) of the training ratings.
        validation: CSR of the same shape (empty when `validation=0`).
        test: CSR of the same shape.
        user_ids: original user id of each row.
        item_ids: original item id of each column.
        stats: sizes, and for `test` / `validation`: `<part>_unseen_users` (ratings whose
            user has no training rating), `<part>_unseen_items` (ratings whose item has no
            training rating), `<part>_num_unseen_users` / `<part>_num_unseen_items`
            (distinct such users / items).
    """

    train: sp.csr_matrix
    validation: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    stats: dict

    def __repr__(self) -> str:
        return f"RatingSplit({self.summary()})"

    def summary(self) -> str:
        """One line with the sizes of the three parts and the unseen counts of the test part."""
        stats = self.stats
        return (
            f"{self.train.shape[0]} users x {self.train.shape[1]} items: "
            f"train {stats['num_train']}, validation {stats['num_validation']}, "
            f"test {stats['num_test']} ratings ({stats['test_unseen_users']} of an unseen "
            f"user, {stats['test_unseen_items']} of an unseen item)"
        )


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class HeldOutPart:
    """The validation or test users of a ranking protocol.

    Attributes:
        fold_in: CSR (part users x training items): what the model sees, and what is
            excluded from the ranking.
        holdout: CSR of the same rows: what must be predicted.
        user_ids: original user id of each row.
        train_rows: row of each user in `RankingSplit.train` (weak generalization), or
            None (strong generalization / temporal: users unseen in training).
        fold_in_timestamps: CSR with the fold-in timestamps as data (temporal protocol),
            or None.
    """

    fold_in: sp.csr_matrix
    holdout: sp.csr_matrix
    user_ids: np.ndarray
    train_rows: np.ndarray | None = None
    fold_in_timestamps: sp.csr_matrix | None = None

    @property
    def num_users(self) -> int:
        """Number of users (rows) in the part."""
        return self.fold_in.shape[0]

    def __repr__(self) -> str:
        return f"HeldOutPart({self.summary()})"

    def summary(self) -> str:
        """One line: users, fold-in and holdout interactions."""
        return (
            f"{self.num_users} users, {self.fold_in.nnz} fold-in and "
            f"{self.holdout.nnz} holdout interactions"
        )


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RankingSplit:
    """A top-N ranking protocol: training matrix plus held-out validation / test users.

    Attributes:
        train: CSR (training users x training items). Training items are the items with at
            least one training interaction; held-out interactions on other items are
            dropped and counted in `stats`.
        item_ids: original item id of each training item (column).
        train_user_ids: original user id of each row of `train`.
        validation: `HeldOutPart`, or None when the protocol has no validation users.
        test: `HeldOutPart`.
        train_timestamps: CSR like `train` with timestamps as data, or None when the
            input had no timestamps.
        stats: sizes and drop counts (see `_part_stats`), written into BENCHMARKS.md.
    """

    train: sp.csr_matrix
    item_ids: np.ndarray
    train_user_ids: np.ndarray
    validation: HeldOutPart | None
    test: HeldOutPart
    train_timestamps: sp.csr_matrix | None
    stats: dict

    @property
    def num_items(self) -> int:
        """Number of training items (columns of every matrix of the split)."""
        return self.train.shape[1]

    def __repr__(self) -> str:
        return "RankingSplit(" + "; ".join(self.summary().splitlines()) + ")"

    def summary(self) -> str:
        """A few lines: training matrix, each part and the dropped interactions."""
        lines = [
            f"train: {self.train.shape[0]} users x {self.num_items} items, "
            f"{self.train.nnz} interactions ({self.stats['num_dropped_items']} items "
            "without training interactions dropped)"
        ]
        for name, part in (("validation", self.validation), ("test", self.test)):
            if part is not None:
                lines.append(
                    f"{name}: {part.summary()} ({self.stats[f'{name}_dropped_interactions']} "
                    f"dropped, {self.stats[f'{name}_excluded_users']} users excluded)"
                )
        return "\n".join(lines)


# --------------------------------------------------------------------------- protocols


def rating_holdout(
    interactions: Interactions,
    test: float = 0.1,
    validation: float = 0.1,
    seed: int = 0,
) -> RatingSplit:
    """Random split of individual ratings into train / validation / test.

    `round(test * n)` ratings drawn at random go to test and `round(validation * n)` to
    validation, both fractions of all `n` ratings; the rest is training. Users or items
    may end up without training ratings; they are counted in `stats` (AutoRec predicts
    the default rating 3 for them).

    Args:
        interactions: `Interactions` (or a users x items scipy sparse matrix) of ratings.
        test: fraction of the ratings held out for testing, in (0, 1).
        validation: fraction of the ratings held out for validation, in [0, 1);
            `test + validation` must be below 1. `0` gives an empty validation matrix.
        seed: integer seed.

    Returns:
        A `RatingSplit`.

    Example:

    >>> from keras_aerec.data.synthetic import synthetic
    >>> split = rating_holdout(synthetic(100, 50, 0.1, seed=0), test=0.1, validation=0.1)
    >>> split.train.shape == split.test.shape
    True

    Reference:
        Sedhain et al., "AutoRec: Autoencoders Meet Collaborative Filtering", WWW 2015
        (ML-1M: random 90/10 split of the ratings, 10% of the training ratings for tuning).
    """
    interactions = _as_interactions(interactions)
    _check_fraction("test", test, allow_zero=False)
    _check_fraction("validation", validation, allow_zero=True)
    _check_sum(test, validation)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    matrix = interactions.matrix
    rows = _row_of_entries(matrix)
    cols = matrix.indices
    num_test = _round_half_up(test * matrix.nnz)
    num_validation = _round_half_up(validation * matrix.nnz)
    permutation = rng.permutation(matrix.nnz)
    role = np.zeros(matrix.nnz, dtype=np.int8)
    role[permutation[:num_test]] = _TEST
    role[permutation[num_test : num_test + num_validation]] = _VALIDATION

    parts = {}
    for code in (_TRAIN, _VALIDATION, _TEST):
        mask = role == code
        parts[code] = _csr(rows[mask], cols[mask], matrix.data[mask], matrix.shape)
    train_users = np.diff(parts[_TRAIN].indptr) > 0
    train_items = np.bincount(parts[_TRAIN].indices, minlength=matrix.shape[1]) > 0
    stats = {
        "num_users": matrix.shape[0],
        "num_items": matrix.shape[1],
        "num_ratings": matrix.nnz,
        "num_train": parts[_TRAIN].nnz,
        "num_validation": parts[_VALIDATION].nnz,
        "num_test": parts[_TEST].nnz,
    }
    for code, name in _PART_NAMES.items():
        mask = role == code
        unseen_user = ~train_users[rows[mask]]
        unseen_item = ~train_items[cols[mask]]
        stats[f"{name}_unseen_users"] = int(unseen_user.sum())
        stats[f"{name}_unseen_items"] = int(unseen_item.sum())
        stats[f"{name}_num_unseen_users"] = np.unique(rows[mask][unseen_user]).size
        stats[f"{name}_num_unseen_items"] = np.unique(cols[mask][unseen_item]).size
    split = RatingSplit(
        train=parts[_TRAIN],
        validation=parts[_VALIDATION],
        test=parts[_TEST],
        user_ids=interactions.user_ids,
        item_ids=interactions.item_ids,
        stats=stats,
    )
    logger.info("rating_holdout(%s, seed=%d): %s", _name(interactions), seed, split.summary())
    return split


def weak_generalization(
    interactions: Interactions,
    test: float = 0.2,
    validation: float = 0.0,
    seed: int = 0,
    *,
    positive_threshold: float | None = None,
) -> RankingSplit:
    """Per-user random holdout (weak generalization): the same users train and are tested.

    Each user's `n` interactions are shuffled; `n_test = round(test * n)` go to test and
    `n_validation = round(validation * n)` to validation (rounded half up), reduced so that
    the user keeps at least one training interaction (test first, then validation; a user
    with a single interaction keeps it in training). The training item space is the items
    with at least one training interaction; held-out interactions on other items are
    dropped and counted in `stats`. A part holds the users with at least one held-out
    interaction left; its fold-in is the user's training row (validation) or training plus
    validation rows (test), and `train_rows` maps each part row to its row in `train`
    (which holds every user).

    Args:
        interactions: implicit `Interactions` (or a users x items scipy sparse matrix).
        test: fraction of each user's interactions held out for testing, in (0, 1).
        validation: fraction held out for validation, in [0, 1); `test + validation`
            must be below 1. `0` means no validation part (`validation` is None).
        seed: integer seed.
        positive_threshold: for explicit ratings, the rating above which an interaction
            is a positive (`interactions.to_implicit(positive_threshold)` is split).
            Required unless every value is 1.0: ranking protocols never treat low
            ratings as positives silently.

    Returns:
        A `RankingSplit` with `train_rows` set on its parts.

    Example:

    >>> from keras_aerec.data.synthetic import synthetic
    >>> split = weak_generalization(synthetic(100, 50, 0.2, seed=0), test=0.2)
    >>> split.test.train_rows.shape == (split.test.num_users,)
    True

    Reference:
        Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018
        (section 4.1 contrasts weak and strong generalization); the RecBole ML-1M benchmark
        uses this protocol with an 8:1:1 ratio (`test=0.1, validation=0.1`).
    """
    interactions = _positives(interactions, positive_threshold, "weak_generalization")
    _check_fraction("test", test, allow_zero=False)
    _check_fraction("validation", validation, allow_zero=True)
    _check_sum(test, validation)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    matrix = interactions.matrix
    rows = _row_of_entries(matrix)
    cols = matrix.indices
    counts = np.diff(matrix.indptr)
    num_test = np.clip(np.minimum(_round_half_up(test * counts), counts - 1), 0, None)
    num_validation = np.clip(
        np.minimum(_round_half_up(validation * counts), counts - 1 - num_test), 0, None
    )
    ranks = _ranks_within_rows(rows, rng=rng)
    role = np.full(matrix.nnz, _TRAIN, dtype=np.int8)
    role[ranks < num_test[rows] + num_validation[rows]] = _VALIDATION
    role[ranks < num_test[rows]] = _TEST

    train_mask = role == _TRAIN
    keep_items, new_cols = _training_items(cols[train_mask], matrix.shape[1])
    num_train_items = int(keep_items.sum())
    train = _csr(
        rows[train_mask],
        new_cols[cols[train_mask]],
        matrix.data[train_mask],
        (matrix.shape[0], num_train_items),
    )
    in_space = keep_items[cols]
    stats = _base_stats(interactions, train, keep_items)
    parts = {}
    for code in (_VALIDATION, _TEST) if validation > 0 else (_TEST,):
        name = _PART_NAMES[code]
        fold_in_mask = (role == _TRAIN) | ((role == _VALIDATION) & (code == _TEST))
        holdout_mask = role == code
        selected = np.bincount(rows[holdout_mask], minlength=matrix.shape[0]) > 0
        part_users = np.flatnonzero(
            np.bincount(rows[holdout_mask & in_space], minlength=matrix.shape[0]) > 0
        )
        parts[code] = _held_out_part(
            interactions,
            rows,
            new_cols,
            part_users,
            fold_in_mask & in_space,
            holdout_mask & in_space,
            num_train_items,
            train_rows=part_users,
        )
        stats.update(
            _part_stats(
                name,
                parts[code],
                dropped=int((holdout_mask & ~in_space).sum()),
                excluded=int(selected.sum()) - part_users.size,
            )
        )
    split = RankingSplit(
        train=train,
        item_ids=interactions.item_ids[keep_items],
        train_user_ids=interactions.user_ids,
        validation=parts.get(_VALIDATION),
        test=parts[_TEST],
        train_timestamps=_timestamps_csr(interactions, rows, new_cols, train_mask, train.shape),
        stats=stats,
    )
    logger.info("weak_generalization(%s, seed=%d):\n%s", _name(interactions), seed, split.summary())
    return split


def strong_generalization(
    interactions: Interactions,
    num_heldout_users: int,
    fold_in: float = 0.8,
    seed: int = 0,
    num_validation_users: int | None = None,
    *,
    positive_threshold: float | None = None,
) -> RankingSplit:
    """Held-out users (strong generalization): test users are unseen in training.

    `num_heldout_users` test users and `num_validation_users` validation users (disjoint)
    are drawn at random among the users with at least two interactions; every other user
    is a training user with all their interactions in `train`. The training item space is
    the items with at least one training interaction; held-out users' interactions on
    other items are dropped (and counted in `stats`) before the rest of each held-out
    user's `n` interactions is split at random: `round((1 - fold_in) * n)` (rounded half
    up, clipped to [1, n - 1]) go to the holdout, the rest is the fold-in. A held-out user
    left with fewer than two interactions after the drop is excluded from the part.

    Args:
        interactions: implicit `Interactions` (or a users x items scipy sparse matrix).
        num_heldout_users: number of test users (positive integer).
        fold_in: fraction of each held-out user's interactions given to the model, in
            (0, 1).
        seed: integer seed.
        num_validation_users: number of validation users; defaults to
            `num_heldout_users`; `0` means no validation part.
        positive_threshold: for explicit ratings, the rating above which an interaction
            is a positive (`interactions.to_implicit(positive_threshold)` is split).
            Required unless every value is 1.0: ranking protocols never treat low
            ratings as positives silently.

    Returns:
        A `RankingSplit` whose parts have `train_rows=None`.

    Example:

    >>> from keras_aerec.data.synthetic import synthetic
    >>> split = strong_generalization(synthetic(100, 50, 0.2, seed=0), num_heldout_users=10)
    >>> split.test.num_users, split.train.shape[0]
    (10, 80)

    Reference:
        Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018
        (ML-20M: 10k validation and 10k test users, 80% fold-in / 20% evaluated).
    """
    return _held_out_users(
        "strong_generalization",
        _positives(interactions, positive_threshold, "strong_generalization"),
        num_heldout_users,
        fold_in,
        seed,
        num_validation_users,
        temporal=False,
    )


def temporal(
    interactions: Interactions,
    num_heldout_users: int,
    fold_in: float = 0.8,
    seed: int = 0,
    num_validation_users: int | None = None,
    *,
    positive_threshold: float | None = None,
) -> RankingSplit:
    """Held-out users with a time-ordered split: predict each user's last interactions.

    As `strong_generalization`, but each held-out user's interactions (those on training
    items) are sorted by timestamp (ties broken by item position) and the first
    `n - round((1 - fold_in) * n)` are the fold-in, the last ones the holdout. Every
    holdout timestamp is at least every fold-in timestamp of the same user.
    `train_timestamps` and each part's `fold_in_timestamps` let sequence models (SVAE)
    rebuild time-ordered sequences.

    Args:
        interactions: implicit `Interactions` with timestamps.
        num_heldout_users: number of test users (positive integer).
        fold_in: fraction of each held-out user's (earliest) interactions given to the
            model, in (0, 1).
        seed: integer seed (draws the held-out users).
        num_validation_users: number of validation users; defaults to
            `num_heldout_users`; `0` means no validation part.
        positive_threshold: for explicit ratings, the rating above which an interaction
            is a positive (`interactions.to_implicit(positive_threshold)` is split).
            Required unless every value is 1.0: ranking protocols never treat low
            ratings as positives silently.

    Returns:
        A `RankingSplit` with `train_timestamps` and `fold_in_timestamps`.

    Example:

    >>> m = sp.random(50, 30, density=0.3, format="csr", random_state=0)
    >>> x = Interactions.from_csr(m, timestamps=np.arange(m.nnz))
    >>> temporal(x, num_heldout_users=5).test.fold_in_timestamps is not None
    True

    Reference:
        Sachdeva et al., "Sequential Variational Autoencoders for Collaborative
        Filtering", WSDM 2019 (ML-1M: held-out users, first 80% of each time-sorted
        sequence as input, last 20% evaluated).
    """
    interactions = _positives(interactions, positive_threshold, "temporal")
    if interactions.timestamps is None:
        raise ValueError(
            f"`temporal` needs timestamps; `interactions` ({_name(interactions)}) has none. "
            "Load data with timestamps, e.g. load_movielens(..., require_timestamps=True)."
        )
    return _held_out_users(
        "temporal",
        interactions,
        num_heldout_users,
        fold_in,
        seed,
        num_validation_users,
        temporal=True,
    )


# ------------------------------------------------------------------------ shared logic


def _held_out_users(
    protocol, interactions, num_heldout_users, fold_in, seed, num_validation_users, temporal
):
    interactions = _as_interactions(interactions)
    check_positive_int(num_heldout_users, "num_heldout_users")
    if num_validation_users is None:
        num_validation_users = num_heldout_users
    check_non_negative_int(num_validation_users, "num_validation_users")
    _check_fraction("fold_in", fold_in, allow_zero=False)
    _check_seed(seed)
    matrix = interactions.matrix
    counts = np.diff(matrix.indptr)
    eligible = np.flatnonzero(counts >= 2)
    if num_heldout_users + num_validation_users >= eligible.size:
        raise ValueError(
            "`num_heldout_users` + `num_validation_users` should be less than the number of "
            f"users with at least 2 interactions ({eligible.size}). Received: "
            f"num_heldout_users={num_heldout_users}, num_validation_users={num_validation_users}"
        )
    rng = np.random.default_rng(seed)
    drawn = rng.permutation(eligible)
    user_role = np.full(matrix.shape[0], _TRAIN, dtype=np.int8)
    user_role[drawn[:num_heldout_users]] = _TEST
    user_role[drawn[num_heldout_users : num_heldout_users + num_validation_users]] = _VALIDATION

    rows = _row_of_entries(matrix)
    cols = matrix.indices
    role = user_role[rows]
    train_mask = role == _TRAIN
    keep_items, new_cols = _training_items(cols[train_mask], matrix.shape[1])
    num_train_items = int(keep_items.sum())
    train_users = np.flatnonzero(user_role == _TRAIN)
    train_row_of_user = np.cumsum(user_role == _TRAIN) - 1
    train_rows = train_row_of_user[rows[train_mask]]
    train_shape = (train_users.size, num_train_items)
    train = _csr(train_rows, new_cols[cols[train_mask]], matrix.data[train_mask], train_shape)
    in_space = keep_items[cols]
    stats = _base_stats(interactions, train, keep_items)
    stats["num_eligible_users"] = eligible.size

    parts = {}
    for code in (_VALIDATION, _TEST) if num_validation_users > 0 else (_TEST,):
        name = _PART_NAMES[code]
        kept = (role == code) & in_space
        kept_positions = np.flatnonzero(kept)
        keys = interactions.timestamps[kept_positions] if temporal else None
        ranks = _ranks_within_rows(rows[kept_positions], keys, rng=rng)
        kept_counts = np.bincount(rows[kept_positions], minlength=matrix.shape[0])
        num_holdout = np.clip(_round_half_up((1.0 - fold_in) * kept_counts), 1, kept_counts - 1)
        is_holdout = np.zeros(matrix.nnz, dtype=bool)
        row_of_kept = rows[kept_positions]
        is_holdout[kept_positions] = ranks >= kept_counts[row_of_kept] - num_holdout[row_of_kept]
        part_users = np.flatnonzero((user_role == code) & (kept_counts >= 2))
        parts[code] = _held_out_part(
            interactions,
            rows,
            new_cols,
            part_users,
            kept & ~is_holdout,
            is_holdout,
            num_train_items,
            train_rows=None,
            with_timestamps=temporal,
        )
        stats.update(
            _part_stats(
                name,
                parts[code],
                dropped=int(((role == code) & ~in_space).sum()),
                excluded=int((user_role == code).sum()) - part_users.size,
            )
        )
    split = RankingSplit(
        train=train,
        item_ids=interactions.item_ids[keep_items],
        train_user_ids=interactions.user_ids[train_users],
        validation=parts.get(_VALIDATION),
        test=parts[_TEST],
        train_timestamps=_timestamps_csr(
            interactions, train_row_of_user[rows], new_cols, train_mask, train_shape
        ),
        stats=stats,
    )
    logger.info("%s(%s, seed=%d):\n%s", protocol, _name(interactions), seed, split.summary())
    return split


def _held_out_part(
    interactions,
    rows,
    new_cols,
    part_users,
    fold_in_mask,
    holdout_mask,
    num_items,
    train_rows,
    with_timestamps=False,
):
    """Builds a `HeldOutPart` over `part_users` (sorted input rows) from entry masks."""
    num_users = interactions.num_users
    is_part_user = np.zeros(num_users, dtype=bool)
    is_part_user[part_users] = True
    part_row_of_user = np.cumsum(is_part_user) - 1
    shape = (part_users.size, num_items)
    matrices = []
    for mask in (fold_in_mask & is_part_user[rows], holdout_mask & is_part_user[rows]):
        matrices.append(
            _csr(
                part_row_of_user[rows[mask]],
                new_cols[interactions.matrix.indices[mask]],
                interactions.matrix.data[mask],
                shape,
            )
        )
    fold_in_timestamps = None
    if with_timestamps:
        fold_in_timestamps = _timestamps_csr(
            interactions, part_row_of_user[rows], new_cols, fold_in_mask & is_part_user[rows], shape
        )
    return HeldOutPart(
        fold_in=matrices[0],
        holdout=matrices[1],
        user_ids=interactions.user_ids[part_users],
        train_rows=None if train_rows is None else np.asarray(train_rows, dtype=np.int64),
        fold_in_timestamps=fold_in_timestamps,
    )


def _base_stats(interactions, train, keep_items):
    had_interactions = (
        np.bincount(interactions.matrix.indices, minlength=interactions.num_items) > 0
    )
    return {
        "num_users": interactions.num_users,
        "num_items": interactions.num_items,
        "num_interactions": interactions.num_interactions,
        "num_train_users": train.shape[0],
        "num_train_items": train.shape[1],
        "num_train_interactions": train.nnz,
        "num_dropped_items": int((had_interactions & ~keep_items).sum()),
    }


def _part_stats(name, part, dropped, excluded):
    """Stats of one part.

    `<part>_dropped_interactions` counts the interactions held out for the part that were
    on items outside the training item space (weak generalization: the holdout; held-out
    users: fold-in and holdout, dropped before the fold-in / holdout split).
    `<part>_excluded_users` counts users selected for the part who were left without any
    holdout interaction.
    """
    return {
        f"{name}_users": part.num_users,
        f"{name}_fold_in_interactions": part.fold_in.nnz,
        f"{name}_holdout_interactions": part.holdout.nnz,
        f"{name}_dropped_interactions": dropped,
        f"{name}_excluded_users": excluded,
    }


def _timestamps_csr(interactions, new_rows, new_cols, mask, shape):
    if interactions.timestamps is None:
        return None
    return _csr(
        new_rows[mask],
        new_cols[interactions.matrix.indices[mask]],
        interactions.timestamps[mask],
        shape,
    )


def _training_items(train_cols, num_items):
    """Mask of the items with a training interaction, and old -> new column positions."""
    keep_items = np.bincount(train_cols, minlength=num_items) > 0
    return keep_items, np.cumsum(keep_items) - 1


def _ranks_within_rows(rows, keys=None, rng=None):
    """Rank of each entry among the entries of its row, ordered by `keys` or at random.

    `rows` must be sorted (CSR order). With `keys`, ties keep the given order; without,
    `rng` draws a uniformly random order within each row.
    """
    if keys is None:
        # One float sort is 10x faster than `np.lexsort` on ML-1M; the fractional part is
        # the random key within the (integer) row.
        order = np.argsort(rows + rng.random(rows.size))
    else:
        order = np.lexsort((keys, rows))
    counts = np.bincount(rows)
    row_starts = (np.cumsum(counts) - counts)[rows]
    ranks = np.empty(rows.size, dtype=np.int64)
    # `rows[order] == rows` because `rows` is sorted and is the primary sort key.
    ranks[order] = np.arange(rows.size) - row_starts
    return ranks


def _row_of_entries(matrix):
    return np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))


def _csr(rows, cols, data, shape):
    """CSR from entries sorted by (row, column); explicit zeros (timestamp 0) are kept."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    index_dtype = np.int32 if max(shape[1], len(cols)) < 2**31 else np.int64
    matrix = sp.csr_matrix(
        (np.asarray(data), np.asarray(cols, dtype=index_dtype), indptr.astype(index_dtype)),
        shape=shape,
    )
    matrix.has_sorted_indices = True
    return matrix


def _round_half_up(values):
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


def _as_interactions(interactions):
    if isinstance(interactions, Interactions):
        return interactions
    if sp.issparse(interactions):
        return Interactions.from_csr(interactions)
    raise ValueError(
        "`interactions` should be an `Interactions` object or a users x items scipy sparse "
        f"matrix. Received: type={type(interactions).__name__}"
    )


def _positives(interactions, positive_threshold, protocol):
    """Implicit `Interactions` for a ranking protocol; explicit ratings need a threshold."""
    interactions = _as_interactions(interactions)
    if positive_threshold is not None:
        check_finite_float(positive_threshold, "positive_threshold")
        return interactions.to_implicit(positive_threshold)
    if not interactions.is_implicit:
        values = interactions.matrix.data
        raise ValueError(
            f"`{protocol}` ranks implicit feedback, but `interactions` holds values in "
            f"[{values.min():g}, {values.max():g}]: low ratings would count as positives. "
            "Call `interactions.to_implicit(threshold)` first or pass `positive_threshold=` "
            "(e.g. 3.0 keeps ratings above 3; 0.0 keeps every interaction)."
        )
    return interactions


def _name(interactions):
    return interactions.name or "unnamed"


def _check_fraction(argument, value, allow_zero):
    low = "[0" if allow_zero else "(0"
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or not (0 <= value < 1)
        or (value == 0 and not allow_zero)
    ):
        raise ValueError(
            f"`{argument}` should be a float in {low}, 1). Received: {argument}={value!r}"
        )


def _check_sum(test, validation):
    if test + validation >= 1:
        raise ValueError(
            "`test` + `validation` should be less than 1. "
            f"Received: test={test!r}, validation={validation!r}"
        )


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` should be an integer. Received: seed={seed!r}")
