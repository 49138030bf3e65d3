"""Shared top-N recommender contract: `score()`, `recommend()` and the reconstruction loss.

`TopNRecommender` gives every implicit-feedback model the same inference API on a batch
of users' interaction rows (CSR or dense; row i of every output belongs to row i of the
input). New users are "folded in": their interaction row is the model's input, so any row
over the training catalogue can be scored, whether or not the user was seen in training.

`ReconstructionObjective` lets an autoencoder train on its own objective without a `loss`
in `compile()`: `compute_loss` reconstructs the input row (or `y` when given) with the
model's per-user loss, plus the layers' losses (KL terms, weight regularisation).
"""

import keras
import numpy as np
import scipy.sparse as sp

from keras_aerec.distribute import predict_batch
from keras_aerec.metrics.ranking import top_k_indices

DEFAULT_SCORE_BATCH_SIZE = 1024


def check_item_ids(item_ids, num_items: int) -> np.ndarray:
    """Original item ids as a 1D numpy array of length `num_items` (default: positions)."""
    if item_ids is None:
        return np.arange(num_items)
    item_ids = np.asarray(item_ids)
    if item_ids.ndim != 1 or item_ids.shape[0] != num_items:
        raise ValueError(
            f"`item_ids` should be a 1D sequence of {num_items} ids (one per item). "
            f"Received: item_ids with shape {item_ids.shape}"
        )
    return item_ids


def item_ids_config(item_ids: np.ndarray, num_items: int):
    """`item_ids` for `get_config()`: None when they are the default positions."""
    if np.issubdtype(item_ids.dtype, np.integer) and np.array_equal(item_ids, np.arange(num_items)):
        return None
    return item_ids.tolist()


def check_positive_int(value, name: str) -> int:
    """`value` as an int, or a Keras-style ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` should be a positive integer. Received: {name}={value!r}")
    return int(value)


def check_rate(value, name: str) -> float:
    """`value` as a float in [0, 1), or a Keras-style ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"`{name}` should be a float in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_hidden_dims(hidden_dims) -> tuple[int, ...]:
    """`hidden_dims` as a tuple of positive ints (may be empty)."""
    try:
        dims = tuple(hidden_dims)
    except TypeError:
        dims = None
    if dims is None or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(
            "`hidden_dims` should be a sequence of positive integers. "
            f"Received: hidden_dims={hidden_dims!r}"
        )
    return dims


def check_l2(l2) -> float:
    """`l2` as a non-negative float, or a Keras-style ValueError."""
    if isinstance(l2, bool) or not isinstance(l2, int | float) or l2 < 0:
        raise ValueError(f"`l2` should be a non-negative float. Received: l2={l2!r}")
    return float(l2)


class TopNRecommender:
    """Mixin giving a Keras model `score()` and `recommend()` over interaction rows.

    The host model defines `num_items` and `item_ids` (original id of each item position)
    and may override `_score_batch(x, users)` (default: `predict_on_batch(x)`) and
    `_check_users(users, num_rows)`.
    """

    def score(self, user_items, users=None, batch_size: int = DEFAULT_SCORE_BATCH_SIZE):
        """Scores every item for each row of `user_items`.

        Args:
            user_items: CSR matrix (other scipy sparse formats are converted) or dense
                array (num_rows x num_items) of interactions; nonzero entries are
                interactions. A 1D array is one row.
            users: optional int array (num_rows,) of training-user positions, used by
                models with per-user parameters (CDAE) and ignored by the others.
            batch_size: rows scored at once (memory: batch_size x num_items floats).

        Returns:
            float32 array (num_rows x num_items); higher is better. Row i scores row i.
        """
        rows = self._check_user_items(user_items)
        users = self._check_users(users, rows.shape[0])
        batch_size = check_positive_int(batch_size, "batch_size")
        scores = np.empty(rows.shape, dtype="float32")
        for start in range(0, rows.shape[0], batch_size):
            stop = start + batch_size
            scores[start:stop] = self._score_batch(
                _densify(rows[start:stop]), None if users is None else users[start:stop]
            )
        return scores

    def recommend(
        self,
        user_items,
        k: int = 10,
        exclude_seen: bool = True,
        users=None,
        batch_size: int = DEFAULT_SCORE_BATCH_SIZE,
    ):
        """Top-`k` items for each row of `user_items`, best first.

        Ties are broken by the lower item position. With `exclude_seen`, the row's own
        interactions are scored `-inf` and never recommended; a row with fewer than `k`
        unseen items gets `-inf` scores and a missing id (-1 for integer ids, NaN for float
        ids, None otherwise) in its trailing positions.

        Args:
            user_items: CSR or dense interaction rows, as in `score()`.
            k: number of items to return, 1 <= k <= num_items.
            exclude_seen: whether to exclude each row's interacted items.
            users: optional training-user positions, as in `score()`.
            batch_size: rows scored at once.

        Returns:
            `(item_ids, scores)`: two arrays (num_rows x k), the original item ids (the
            model's `item_ids`) and their scores.
        """
        rows = self._check_user_items(user_items)
        if (
            isinstance(k, bool)
            or not isinstance(k, int | np.integer)
            or not (1 <= k <= self.num_items)
        ):
            raise ValueError(
                f"`k` should be an integer between 1 and the number of items "
                f"({self.num_items}). Received: k={k!r}"
            )
        users = self._check_users(users, rows.shape[0])
        batch_size = check_positive_int(batch_size, "batch_size")
        positions = np.empty((rows.shape[0], k), dtype="int64")
        top_scores = np.empty((rows.shape[0], k), dtype="float32")
        for start in range(0, rows.shape[0], batch_size):
            stop = start + batch_size
            dense = _densify(rows[start:stop])
            scores = self._score_batch(dense, None if users is None else users[start:stop])
            if exclude_seen:
                scores = np.array(scores, copy=not scores.flags.writeable)
                scores[dense != 0] = -np.inf
            top = top_k_indices(scores, int(k))
            positions[start:stop] = top
            top_scores[start:stop] = np.take_along_axis(scores, np.maximum(top, 0), axis=1)
        missing = positions < 0
        top_scores[missing] = -np.inf
        ids = self.item_ids[np.maximum(positions, 0)]
        if missing.any():
            if ids.dtype.kind in "iu":
                ids[missing] = -1
            elif ids.dtype.kind == "f":
                ids[missing] = np.nan
            else:
                ids = ids.astype(object)
                ids[missing] = None
        return ids, top_scores

    def _base_config(self) -> dict:
        """The `keras.Model` part of `get_config()` (name, trainable, dtype policy)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    def _score_batch(self, x, users):
        """Scores of one dense float32 batch (numpy in, numpy float32 out)."""
        del users
        return np.asarray(predict_batch(self, x), dtype="float32")

    def _check_user_items(self, user_items):
        """`user_items` as a float32 CSR matrix or dense 2D array, validated."""
        if sp.issparse(user_items):
            if user_items.ndim != 2:
                raise ValueError(
                    "`user_items` should be a 2D matrix (users x items). "
                    f"Received: user_items.shape={user_items.shape}"
                )
            rows = sp.csr_matrix(user_items, dtype="float32")
            values = rows.data
        else:
            rows = np.asarray(user_items, dtype="float32")
            if rows.ndim == 1:
                rows = rows[None, :]
            if rows.ndim != 2:
                raise ValueError(
                    "`user_items` should be a 2D matrix (users x items). "
                    f"Received: user_items.shape={rows.shape}"
                )
            values = rows
        if rows.shape[1] != self.num_items:
            raise ValueError(
                f"`user_items` should have {self.num_items} columns (one per item). "
                f"Received: user_items.shape={rows.shape}"
            )
        finite = np.isfinite(values)
        if not finite.all():
            raise ValueError(
                "`user_items` should not contain NaN or infinite values. "
                f"Received: {finite.size - np.count_nonzero(finite)} such values"
            )
        return rows

    def _check_users(self, users, num_rows: int):
        """`users` as an int64 array of length `num_rows`, or None."""
        if users is None:
            return None
        users = np.asarray(users)
        if users.shape != (num_rows,) or not np.issubdtype(users.dtype, np.integer):
            raise ValueError(
                f"`users` should be a 1D integer array with one entry per row ({num_rows}). "
                f"Received: users with dtype {users.dtype} and shape {users.shape}"
            )
        return users.astype("int64")


def _densify(rows) -> np.ndarray:
    dense = rows.toarray() if sp.issparse(rows) else rows
    return np.array(dense, dtype="float32")


class _PerUserMean(keras.losses.Loss):
    """Reduces precomputed per-user losses like any Keras loss (sample weights, replicas)."""

    def call(self, y_true, y_pred):
        return y_pred


class ReconstructionObjective:
    """Mixin: an autoencoder's own training objective, so `compile()` needs no `loss`.

    The host model defines `per_user_loss(target, y_pred, training)` returning one loss
    per row; the target is `y` when the data provides it, else the input row
    (`_reconstruction_target(x)`). The mean over users is taken by a Keras `Loss`, which
    applies `sample_weight` and the `tf.distribute` replica scaling. Layer losses (KL,
    weight regularisation) and a `loss` given to `compile()` are added on top.
    """

    def _reconstruction_target(self, x):
        return x

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        target = self._reconstruction_target(x) if y is None else y
        per_user = self.per_user_loss(target, y_pred, training=training)
        loss = _PER_USER_MEAN(per_user, per_user, sample_weight)
        if self._compile_loss is not None or self.losses:
            loss = loss + super().compute_loss(
                x=x, y=target, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        return loss


_PER_USER_MEAN = _PerUserMean(name="reconstruction_loss")
