"""`EASE`: embarrassingly shallow autoencoder, a closed-form item-item model (Steck 2019)."""

import logging
import math
import os

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops
from scipy.linalg import lapack

from keras_aerec.api_export import keras_aerec_export
from keras_aerec.models.recommender import (
    TopNRecommender,
    check_item_ids,
    check_positive_int,
    item_ids_config,
)

logger = logging.getLogger("keras_aerec.models.ease")

_GIB = 2.0**30


def available_memory_bytes() -> int | None:
    """Memory the process can still allocate (Linux `MemAvailable`), or None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def ease_memory_bytes(num_items: int) -> int:
    """Peak memory of `EASE.fit` on `num_items` items: float64 Gram/precision + float32 B."""
    return num_items**2 * (8 + 4)


def check_gram_fits_in_memory(num_items: int, max_items_hint: bool = True) -> None:
    """Refuses catalogues whose item-item matrices (`ease_memory_bytes`) won't fit."""
    needed = ease_memory_bytes(num_items)
    available = available_memory_bytes()
    if available is not None and needed > available:
        hint = (
            " Pass `max_items` to keep only the most popular items "
            f"(about {math.isqrt(available // 24):,} fit in half the available memory)."
            if max_items_hint
            else ""
        )
        raise ValueError(
            f"EASE needs {needed / _GIB:.1f} GiB ({needed:,} bytes) for its {num_items} x "
            f"{num_items} item-item matrices (float64 while solving, float32 weights), "
            f"more than the {available / _GIB:.1f} GiB of available memory.{hint} "
            f"Received: num_items={num_items}"
        )


@keras_aerec_export
class KeptItemScores(keras.layers.Layer):
    """Item-item scores restricted to `num_kept` items; the others score `-inf`.

    Reads the kept columns of a (batch, num_items) row, multiplies them by a
    (num_kept, num_kept) weight matrix and writes the scores back to the kept positions.

    Args:
        num_items: number of items of the input rows.
        num_kept: number of items with weights.
        **kwargs: forwarded to `keras.layers.Layer`.
    """

    def __init__(self, num_items, num_kept, **kwargs):
        super().__init__(**kwargs)
        self.num_items = num_items
        self.num_kept = num_kept

    def build(self, input_shape):
        self.kept_items = self.add_weight(
            shape=(self.num_kept,),
            initializer=keras.initializers.Constant(np.arange(self.num_kept)),
            dtype="int32",
            trainable=False,
            name="kept_items",
        )
        self.kernel = self.add_weight(
            shape=(self.num_kept, self.num_kept),
            initializer="zeros",
            trainable=False,
            name="kernel",
        )
        self.unkept_offset = self.add_weight(
            shape=(self.num_items,), initializer="zeros", trainable=False, name="unkept_offset"
        )

    def call(self, inputs):
        kept_scores = ops.matmul(ops.take(inputs, self.kept_items, axis=-1), self.kernel)
        # Scattered along the item axis (rows of the transpose): no per-row indices needed.
        scores = ops.scatter(
            ops.expand_dims(self.kept_items, -1),
            ops.transpose(kept_scores),
            (self.num_items, ops.shape(inputs)[0]),
        )
        return ops.transpose(scores) + self.unkept_offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items, "num_kept": self.num_kept}


@keras_aerec_export
class EmptyRowFallback(keras.layers.Layer):
    """Adds `fallback_scores` to the scores of rows without any interaction.

    Call arguments:
        inputs: a list `[user_items, scores]` of two (batch, num_items) tensors.

    Args:
        num_items: number of items.
        **kwargs: forwarded to `keras.layers.Layer`.
    """

    def __init__(self, num_items, **kwargs):
        super().__init__(**kwargs)
        self.num_items = num_items

    def build(self, input_shape):
        self.fallback_scores = self.add_weight(
            shape=(self.num_items,), initializer="zeros", trainable=False, name="fallback_scores"
        )

    def call(self, inputs):
        user_items, scores = inputs
        empty = ops.all(ops.equal(user_items, 0), axis=-1, keepdims=True)
        return scores + ops.cast(empty, scores.dtype) * self.fallback_scores

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items}


@keras_aerec_export
class EASE(TopNRecommender, keras.Model):
    """Embarrassingly shallow autoencoder: item-item weights in closed form.

    Scores are `x @ B`, with B the ridge regression of every item on all the others
    (zero diagonal): with `P = (X^T X + l2 * I)^-1`, `B = -P / diag(P)` column-wise and
    `diag(B) = 0`. `fit(user_items)` computes B once, in float64 with a Cholesky
    factorisation (LAPACK `potrf` + `potri`), and assigns it to a non-trainable weight,
    so the model saves, loads and exports like the others.

    `fit` is not Keras' gradient training: there are no epochs, batches, optimizer or
    `compile()`; extra keyword arguments (`epochs=...`) are ignored with a warning and it
    returns the model itself, not a `History`. Calling it again refits from scratch.

    A row without interactions scores 0 everywhere under `x @ B`; it gets the items'
    training popularity (share of training users with the item) instead, so it is ranked
    by popularity. Every other row's scores are exactly `x @ B`.

    Memory: fitting takes `num_items**2 * 12` bytes (the float64 item-item matrix and the
    float32 weights); the constructor and `fit` refuse catalogues for which that exceeds
    the available memory, naming the amount (100,000 items: 112 GiB). With `max_items=N`
    the model keeps only the `N` items with the most training users (`N**2 * 12` bytes);
    the other items score `-inf`, so they are never recommended before a kept one.

    Args:
        num_items: number of items.
        l2: the L2 penalty lambda, a positive float. Defaults to `500.0` (the paper's value
            on ML-20M and Netflix).
        item_ids: original id of each item position (default: the positions).
        max_items: optional positive integer: fit the weights of only this many most
            popular items (see Memory above). `None` keeps every item.
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, `trainable`).

    Example:

    >>> import numpy as np, scipy.sparse as sp
    >>> x = sp.random(64, 30, density=0.2, format="csr", dtype="float32", random_state=0)
    >>> x.data[:] = 1.0
    >>> model = EASE(num_items=30, l2=10.0).fit(x)
    >>> item_ids, scores = model.recommend(x[:2], k=5)

    Reference:
        Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.
    """

    def __init__(self, num_items, l2=500.0, item_ids=None, max_items=None, **kwargs):
        num_items = check_positive_int(num_items, "num_items")
        if isinstance(l2, bool) or not isinstance(l2, int | float) or l2 <= 0:
            raise ValueError(f"`l2` should be a positive float. Received: l2={l2!r}")
        item_id_array = check_item_ids(item_ids, num_items)
        if max_items is not None:
            max_items = check_positive_int(max_items, "max_items")
            if max_items >= num_items:
                max_items = None
        check_gram_fits_in_memory(num_items if max_items is None else max_items)

        # === Layers ===
        if max_items is None:
            item_weights = keras.layers.Dense(
                num_items,
                use_bias=False,
                kernel_initializer="zeros",
                trainable=False,
                name="item_weights",
            )
        else:
            item_weights = KeptItemScores(num_items, max_items, name="item_weights")
        empty_row_fallback = EmptyRowFallback(num_items, name="empty_row_fallback")

        # === Functional Model ===
        inputs = keras.Input(shape=(num_items,), name="user_items")
        outputs = empty_row_fallback([inputs, item_weights(inputs)])
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_items = num_items
        self.l2 = float(l2)
        self.item_ids = item_id_array
        self.max_items = max_items

    def fit(self, user_items, y=None, **kwargs):
        """Computes B in closed form from the training interactions (no epochs).

        Args:
            user_items: CSR or dense (num_users x num_items) training interactions.
            y: ignored (EASE reconstructs its input).
            **kwargs: Keras `fit` arguments such as `epochs`; ignored with a warning.

        Returns:
            The model.
        """
        if y is not None or kwargs:
            logger.warning(
                "EASE.fit computes a closed form; ignoring %s",
                sorted(kwargs) + (["y"] if y is not None else []),
            )
        rows = self._check_user_items(user_items)
        check_gram_fits_in_memory(self.num_items if self.max_items is None else self.max_items)
        rows = sp.csr_matrix(rows, dtype="float64")
        users_per_item = np.bincount(rows.indices[rows.data != 0], minlength=self.num_items)
        item_weights = self.get_layer("item_weights")
        if self.max_items is not None:
            kept = np.sort(np.argsort(-users_per_item, kind="stable")[: self.max_items])
            item_weights.kept_items.assign(kept.astype("int32"))
            offset = np.full(self.num_items, -np.inf, dtype="float32")
            offset[kept] = 0.0
            item_weights.unkept_offset.assign(offset)
            rows = rows[:, kept]
        item_weights.kernel.assign(closed_form_weights(rows, self.l2).astype("float32"))
        self.get_layer("empty_row_fallback").fallback_scores.assign(
            (users_per_item / max(rows.shape[0], 1)).astype("float32")
        )
        return self

    def get_config(self):
        return {
            **self._base_config(),
            "num_items": self.num_items,
            "l2": self.l2,
            "item_ids": item_ids_config(self.item_ids, self.num_items),
            "max_items": self.max_items,
        }


def closed_form_weights(user_items: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's B (float64, num_items x num_items) for a users x items CSR matrix."""
    gram = (user_items.T @ user_items).toarray()
    gram[np.diag_indices_from(gram)] += l2
    factor, info = lapack.dpotrf(gram, lower=False, overwrite_a=True)
    if info == 0:
        precision, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(
            "`l2` is too small: X^T X + l2 * I is not positive definite "
            f"(LAPACK info={info}). Received: l2={l2}"
        )
    # potri fills the upper triangle; dpotrf(clean=1) left zeros below it.
    upper = np.triu(precision, 1)
    precision += upper.T
    del upper
    precision /= -np.diag(precision).copy()
    np.fill_diagonal(precision, 0.0)
    return precision
