"""`EASE`: embarrassingly shallow autoencoder, a closed-form item-item model (Steck 2019)."""

import logging
import math
import mmap
import os

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from keras_aerec.api_export import keras_aerec_export
from keras_aerec.data.batching import RowBatches
from keras_aerec.metrics.ranking import ndcg_at_k
from keras_aerec.models.recommender import DEFAULT_SCORE_BATCH_SIZE, TopNRecommender
from keras_aerec.validation import check_item_ids, check_positive_int, item_ids_config

logger = logging.getLogger("keras_aerec.models.ease")

_GIB = 2.0**30
# Bytes per item-item entry at the peak of `fit`, measured: while the weights are
# assigned, the float32 result (4), the model's float32 variable (4) and the backends'
# copies of it (up to 8: TensorFlow makes two). Solving needs less: the matrix (4 or 8,
# see `solve_dtype`), the variable (4) and, with `l2="auto"`, the float32 Gram matrix
# (4) of the candidates.
_PEAK_BYTES_PER_ENTRY = 16
# Candidates of `l2="auto"`: the paper's 500 and the 50-100 that held-out catalogues favour.
DEFAULT_L2_GRID = (20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
_AUTO_VALIDATION_SHARE = 0.1
_AUTO_HOLDOUT_SHARE = 0.2
_AUTO_K = 100
# Rows of the dense Gram matrix computed per sparse product: bounds its sparse temporary.
_GRAM_BLOCK_ENTRIES = 2**21
# Largest bound of cond(X^T X + l2 * I) solved in float32 (see `solve_dtype`): relative
# errors stay near 1e-4 of the weights at worst (ML-1M, l2=500: 4e-6, NDCG@100 equal to
# six decimals).
_FLOAT32_MAX_CONDITION = 1e4


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
    """Peak memory `EASE.fit` adds for `num_items` items: `num_items**2 * 16` bytes.

    The item-item matrices (see `_PEAK_BYTES_PER_ENTRY`); the interactions and the
    Python process come on top.
    """
    return num_items**2 * _PEAK_BYTES_PER_ENTRY


def check_gram_fits_in_memory(num_items: int, max_items_hint: bool = True) -> None:
    """Refuses catalogues whose item-item matrices (`ease_memory_bytes`) won't fit."""
    needed = ease_memory_bytes(num_items)
    available = available_memory_bytes()
    if available is not None and needed > available:
        hint = (
            " Pass `max_items` to keep only the most popular items (about "
            f"{math.isqrt(available // _PEAK_BYTES_PER_ENTRY):,} fit in the available memory)."
            if max_items_hint
            else ""
        )
        raise ValueError(
            f"EASE needs {needed / _GIB:.1f} GiB ({needed:,} bytes) for its {num_items} x "
            f"{num_items} item-item matrices (solved, then float32 weights and the backend's "
            f"copies), more than the {available / _GIB:.1f} GiB of available memory.{hint} "
            f"Received: num_items={num_items}"
        )


def check_l2_penalty(l2) -> float | str:
    """`l2` as a positive finite float, or `"auto"`; a Keras-style ValueError otherwise."""
    if isinstance(l2, str) and l2 == "auto":
        return l2
    if (
        isinstance(l2, bool)
        or not isinstance(l2, int | float | np.integer | np.floating)
        or not math.isfinite(l2)
        or l2 <= 0
    ):
        raise ValueError(f'`l2` should be a positive float or "auto". Received: l2={l2!r}')
    return float(l2)


def check_l2_grid(l2_grid) -> tuple[float, ...]:
    """`l2_grid` as a sorted tuple of distinct positive finite floats (at least one)."""
    try:
        grid = tuple(l2_grid)
        valid = bool(grid) and all(not isinstance(v, str) and check_l2_penalty(v) for v in grid)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "`l2_grid` should be a non-empty sequence of positive floats. "
            f"Received: l2_grid={l2_grid!r}"
        )
    return tuple(sorted({float(value) for value in grid}))


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
    `diag(B) = 0`. `fit(x)` computes B once with a Cholesky factorisation (LAPACK `potrf`
    + `potri`), in place, and assigns it to a non-trainable float32 weight, so the model
    saves, loads and exports like the others. The factorisation runs in float32 (twice
    as fast, half the memory) when a bound of the condition number of `X^T X + l2 * I`
    is at most 1e4, else in float64 (`solve_dtype` tells which after `fit`).

    `fit` is not Keras' gradient training: there are no epochs, batches or optimizer
    (`compile()` is optional and changes nothing); extra keyword arguments (`epochs=...`)
    are ignored with a warning and it returns the model itself, not a `History`. It takes
    a CSR matrix, a dense array or a `RowBatches` of users x items. Calling it again
    refits from scratch. Without `num_items`, the first `fit` takes it from `x`.

    `l2="auto"` picks the penalty in the same call: B is solved for every value of
    `l2_grid` on a training part and the value with the best NDCG@100 on a validation
    part is kept (`selected_l2`), then B is solved once more on all of `x`. The validation
    part is `validation_data` (an object with `fold_in` and `holdout` CSR matrices, such
    as `split.validation`, or a `(fold_in, holdout)` tuple) or, without it, 10 % of the
    users of `x` with 20 % of their items held out. The Gram matrix is computed once;
    each candidate costs one factorisation.

    The factorisation runs on one BLAS thread: OpenBLAS' multi-threaded Cholesky crashes
    the process (SIGSEGV) from about 16,000 items on some CPUs (its SkylakeX kernels on
    AMD), and its threads spin-wait, which makes a fit on a busy machine about ten times
    slower than with one thread.

    A row without interactions scores 0 everywhere under `x @ B`; it gets the items'
    training popularity (share of training users with the item) instead, so it is ranked
    by popularity. Every other row's scores are exactly `x @ B`.

    Memory: fitting adds `ease_memory_bytes(num_items)` = `num_items**2 * 16` bytes at its
    peak (measured within 3 % at 16,000 items): the float32 weights, the model's variable
    and the backend's copies while they are assigned; the solve, in place, needs no more.
    The constructor and `fit` refuse catalogues for which that exceeds the available
    memory, naming the amount (100,000 items: 149 GiB). With `max_items=N` the model keeps only the `N` items with the most
    training users; the other items score `-inf`, so they are never recommended before
    a kept one.

    Args:
        num_items: number of items, or `None` to take it from the first `fit`.
        l2: the L2 penalty lambda, a positive float, or `"auto"` (see above). Defaults to
            `500.0` (the paper's value on ML-20M and Netflix).
        item_ids: original id of each item position (default: the positions).
        max_items: optional positive integer: fit the weights of only this many most
            popular items (see Memory above). `None` keeps every item.
        l2_grid: candidates of `l2="auto"`.
        selected_l2: the penalty `l2="auto"` chose (set by `fit`, kept in the config).
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, `trainable`).

    Example:

    >>> import numpy as np, scipy.sparse as sp
    >>> x = sp.random(64, 30, density=0.2, format="csr", dtype="float32", random_state=0)
    >>> x.data[:] = 1.0
    >>> model = EASE(l2=10.0).fit(x)
    >>> item_ids, scores = model.recommend(x[:2], k=5)

    Reference:
        Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.
    """

    def __init__(
        self,
        num_items=None,
        l2=500.0,
        item_ids=None,
        max_items=None,
        l2_grid=DEFAULT_L2_GRID,
        selected_l2=None,
        **kwargs,
    ):
        self.l2 = check_l2_penalty(l2)
        self.solve_dtype = None
        self.l2_grid = check_l2_grid(l2_grid)
        self.selected_l2 = None if selected_l2 is None else float(check_l2_penalty(selected_l2))
        self.max_items = None if max_items is None else check_positive_int(max_items, "max_items")
        self.item_ids = None if item_ids is None else np.asarray(item_ids)
        if num_items is None and self.item_ids is not None and self.item_ids.ndim == 1:
            num_items = self.item_ids.shape[0]
        self.num_items = None
        if num_items is None:
            # Built by the first `fit`, once the data gives the number of items.
            self._model_kwargs = kwargs
            keras.Model.__init__(self, **kwargs)
        else:
            self._build_graph(check_positive_int(num_items, "num_items"), kwargs)

    def _build_graph(self, num_items, kwargs):
        item_id_array = check_item_ids(self.item_ids, num_items)
        max_items = self.max_items
        if max_items is not None and max_items >= num_items:
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
        self.item_ids = item_id_array
        self.max_items = max_items

    def fit(self, x=None, y=None, validation_data=None, **kwargs):
        """Computes B in closed form from the training interactions (no epochs).

        Args:
            x: CSR or dense (num_users x num_items) training interactions, or a
                `RowBatches` over them.
            y: ignored (EASE reconstructs its input).
            validation_data: the validation part of `l2="auto"` (see the class
                docstring); ignored with a warning for a fixed `l2`.
            **kwargs: Keras `fit` arguments such as `epochs`; ignored with a warning.

        Returns:
            The model.
        """
        ignored = sorted(kwargs) + (["y"] if y is not None else [])
        if validation_data is not None and self.l2 != "auto":
            ignored.append("validation_data")
        if ignored:
            logger.warning("EASE.fit computes a closed form; ignoring %s", ignored)
        rows = training_rows(x)
        if self.num_items is None:
            self._build_graph(rows.shape[1], {**self._model_kwargs, "name": self.name})
        rows = sp.csr_matrix(self._check_user_items(rows), dtype="float32")
        rows.eliminate_zeros()
        if rows.nnz == 0:
            raise ValueError(
                "`x` should hold at least one interaction (EASE learns from co-occurrences). "
                f"Received: x with shape {rows.shape} and no nonzero entry"
            )
        users_per_item = np.bincount(rows.indices, minlength=self.num_items)
        item_weights = self.get_layer("item_weights")
        kept = None
        if self.max_items is not None:
            kept = np.sort(np.argsort(-users_per_item, kind="stable")[: self.max_items])
            item_weights.kept_items.assign(kept.astype("int32"))
            offset = np.full(self.num_items, -np.inf, dtype="float32")
            offset[kept] = 0.0
            item_weights.unkept_offset.assign(offset)
        bound = _largest_eigenvalue_bound(rows if kept is None else rows[:, kept])
        penalties = self.l2_grid if self.l2 == "auto" else (self.l2,)
        # The smallest penalty is the worst conditioned: it decides the largest dtype.
        self.solve_dtype = np.dtype(solve_dtype(bound, min(penalties))).name
        check_gram_fits_in_memory(self.num_items if kept is None else self.max_items)
        if self.l2 == "auto":
            validation = (
                None
                if validation_data is None
                else validation_rows(validation_data, self.num_items)
            )
            if kept is not None:
                rows = rows[:, kept]
                if validation is not None:
                    validation = tuple(part[:, kept] for part in validation)
            self.selected_l2, weights = select_l2_and_fit(rows, self.l2_grid, validation)
        else:
            weights = closed_form_weights(rows if kept is None else rows[:, kept], self.l2)
        item_weights.kernel.assign(weights)
        del weights
        self.get_layer("empty_row_fallback").fallback_scores.assign(
            (users_per_item / rows.shape[0]).astype("float32")
        )
        return self

    def score(self, user_items, users=None, batch_size=DEFAULT_SCORE_BATCH_SIZE):
        self._check_fitted()
        return super().score(user_items, users=users, batch_size=batch_size)

    def recommend(
        self, user_items, k=10, exclude_seen=True, users=None, batch_size=DEFAULT_SCORE_BATCH_SIZE
    ):
        self._check_fitted()
        return super().recommend(
            user_items, k=k, exclude_seen=exclude_seen, users=users, batch_size=batch_size
        )

    def _check_fitted(self):
        # Fitting always leaves some positive popularity: all zeros means never fitted.
        if self.num_items is None or not np.any(
            ops.convert_to_numpy(self.get_layer("empty_row_fallback").fallback_scores)
        ):
            raise ValueError(
                "This EASE model is not fitted yet: call `fit(x)` with the training "
                "interactions (users x items) before `score` or `recommend`."
            )

    def get_config(self):
        return {
            **self._base_config(),
            "num_items": self.num_items,
            "l2": self.l2,
            "item_ids": None
            if self.num_items is None
            else item_ids_config(self.item_ids, self.num_items),
            "max_items": self.max_items,
            "l2_grid": list(self.l2_grid),
            "selected_l2": self.selected_l2,
        }


def training_rows(x):
    """The users x items matrix of `EASE.fit`'s `x` (CSR, dense or `RowBatches`)."""
    if isinstance(x, RowBatches):
        x = x.x[x.rows]
    elif isinstance(x, list):
        x = np.asarray(x, dtype="float32")
    if not (sp.issparse(x) or isinstance(x, np.ndarray)):
        raise ValueError(
            "EASE.fit solves a closed form on the whole matrix: `x` should be a CSR matrix "
            "or dense array of users x items (or a `RowBatches` over one). "
            f"Received: x of type {type(x).__name__}"
        )
    if x.ndim != 2:
        raise ValueError(f"`x` should be a 2D matrix (users x items). Received: x.shape={x.shape}")
    return x


def validation_rows(validation_data, num_items):
    """`(fold_in, holdout)` CSR matrices of `l2="auto"`'s validation part."""
    if hasattr(validation_data, "fold_in") and hasattr(validation_data, "holdout"):
        parts = (validation_data.fold_in, validation_data.holdout)
    elif isinstance(validation_data, tuple | list) and len(validation_data) == 2:
        parts = tuple(validation_data)
    else:
        parts = None
    if parts is None or any(
        not (sp.issparse(part) or isinstance(part, np.ndarray))
        or part.ndim != 2
        or part.shape[1] != num_items
        or part.shape[0] != parts[0].shape[0]
        for part in parts
    ):
        raise ValueError(
            "`validation_data` should be a held-out part with `fold_in` and `holdout` "
            f"matrices (users x {num_items} items), or a `(fold_in, holdout)` tuple of them. "
            f"Received: validation_data of type {type(validation_data).__name__}"
        )
    return tuple(sp.csr_matrix(part, dtype="float32") for part in parts)


def closed_form_weights(user_items: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's B as float32 (num_items x num_items), solved in `solve_dtype`."""
    return _solve_weights(
        lambda out: _write_gram(user_items, out),
        user_items.shape[1],
        l2,
        solve_dtype(_largest_eigenvalue_bound(user_items), l2),
    )


def solve_dtype(largest_eigenvalue_bound: float, l2: float) -> type:
    """float32 when `X^T X + l2 * I` is well conditioned enough, else float64.

    The float32 factorisation takes half the time and memory of the float64 one; its
    relative error grows like the condition number times 6e-8, so it is used only while
    a bound of that number, `(largest_eigenvalue_bound + l2) / l2`, stays within
    `_FLOAT32_MAX_CONDITION`.
    """
    condition_bound = (largest_eigenvalue_bound + l2) / l2
    return np.float32 if condition_bound <= _FLOAT32_MAX_CONDITION else np.float64


def _largest_eigenvalue_bound(user_items) -> float:
    """Gershgorin bound of X^T X's largest eigenvalue: its largest absolute row sum."""
    magnitudes = abs(sp.csr_matrix(user_items, dtype="float64"))
    row_sums = magnitudes.T @ (magnitudes @ np.ones(magnitudes.shape[1]))
    return float(row_sums.max(initial=0.0))


def select_l2_and_fit(user_items, l2_grid, validation=None):
    """`(best l2, weights)`: the grid value with the best validation NDCG@100, refitted."""
    if validation is None:
        train, validation_users, fold_in, holdout = _internal_validation(user_items)
    else:
        train, validation_users, (fold_in, holdout) = user_items, None, validation
    num_items = user_items.shape[1]
    # Bounds the training part's Gram matrix too (it holds fewer users).
    eigenvalue_bound = _largest_eigenvalue_bound(user_items)
    # Counts are exact in float32 (up to 2**24 users): half the memory of float64.
    gram = np.zeros((num_items, num_items), dtype=_gram_dtype(train))
    _write_gram(train, gram)

    def copy_gram(out):
        out[...] = gram

    k = min(_AUTO_K, num_items)
    curve = {}
    for l2 in l2_grid:
        weights = _solve_weights(copy_gram, num_items, l2, solve_dtype(eigenvalue_bound, l2))
        curve[l2] = float(np.nanmean(ndcg_at_k(fold_in @ weights, holdout, k, exclude=fold_in)))
        del weights
    best = max(curve, key=curve.get)
    logger.info("EASE l2='auto': NDCG@%d on validation by l2 %s; kept l2=%g", k, curve, best)

    def all_users_gram(out):
        copy_gram(out)
        if validation_users is not None:
            _write_gram(validation_users, out, accumulate=True)

    return best, _solve_weights(
        all_users_gram, num_items, best, solve_dtype(eigenvalue_bound, best)
    )


def _internal_validation(user_items):
    """10 % of the users with two interactions or more, 20 % of their items held out."""
    rng = np.random.default_rng(0)
    counts = np.diff(user_items.indptr)
    candidates = np.flatnonzero(counts >= 2)
    num_validation = round(_AUTO_VALIDATION_SHARE * user_items.shape[0])
    if num_validation < 1 or candidates.size < num_validation:
        raise ValueError(
            '`l2="auto"` needs validation users: pass `validation_data=(fold_in, holdout)` '
            "or more users with two interactions or more. "
            f"Received: x with {candidates.size} such users of {user_items.shape[0]}"
        )
    chosen = np.sort(rng.choice(candidates, num_validation, replace=False))
    is_validation = np.zeros(user_items.shape[0], dtype=bool)
    is_validation[chosen] = True
    validation_users = user_items[chosen]
    coo = validation_users.tocoo()
    # Random rank of each entry within its row: the first ceil(20 %) go to the holdout.
    order = np.lexsort((rng.random(coo.nnz), coo.row))
    starts = validation_users.indptr[:-1][coo.row[order]]
    rank = np.arange(coo.nnz) - starts
    held = np.zeros(coo.nnz, dtype=bool)
    held[order] = (
        rank < np.ceil(_AUTO_HOLDOUT_SHARE * np.diff(validation_users.indptr))[coo.row[order]]
    )
    shape = validation_users.shape
    holdout = sp.csr_matrix((coo.data[held], (coo.row[held], coo.col[held])), shape=shape)
    fold_in = sp.csr_matrix((coo.data[~held], (coo.row[~held], coo.col[~held])), shape=shape)
    return user_items[~is_validation], validation_users, fold_in, holdout


def _gram_dtype(user_items):
    integral = np.array_equal(user_items.data, np.round(user_items.data))
    return np.float32 if integral and user_items.shape[0] < 2**24 else np.float64


def _write_gram(user_items, out, accumulate=False):
    """`out = X^T X` (`+=` with `accumulate`), a block of rows at a time.

    Blocks keep the sparse product's temporaries small next to the dense matrix.
    """
    dtype = _gram_dtype(user_items)
    columns = sp.csc_matrix(user_items, dtype=dtype)
    rows = sp.csr_matrix(columns)
    num_items = columns.shape[1]
    block = max(1, _GRAM_BLOCK_ENTRIES // num_items)
    for start in range(0, num_items, block):
        stop = min(start + block, num_items)
        product = (columns[:, start:stop].T @ rows).astype(out.dtype, copy=False)
        if accumulate:
            out[start:stop] += product.toarray()
        else:
            product.toarray(out=out[start:stop])


def _solve_matrix(num_items, dtype):
    """Zero-filled (n x n) C-order array of `dtype` on its own anonymous memory mapping.

    Its own mapping lets `_weights_in_place` hand the second half of a float64 matrix's
    pages back to the operating system once the float32 weights fill the first half.
    """
    itemsize = np.dtype(dtype).itemsize
    buffer = mmap.mmap(-1, max(num_items * num_items * itemsize, 1))
    return np.ndarray((num_items, num_items), dtype=dtype, buffer=buffer)


def _solve_weights(fill, num_items, l2, dtype):
    """B for the Gram matrix that `fill(out)` writes, solved in `dtype` (then float64)."""
    solve = _solve_matrix(num_items, dtype)
    fill(solve)
    weights = _weights_in_place(solve, l2)
    if weights is not None:
        return weights
    del solve
    if dtype != np.float64:
        # Rounding made the float32 matrix indefinite: float64 decides.
        return _solve_weights(fill, num_items, l2, np.float64)
    raise ValueError(
        f"`l2` is too small: X^T X + l2 * I is not positive definite. Received: l2={l2}"
    )


def _weights_in_place(solve, l2):
    """B from the Gram matrix `solve`, as float32 in its memory; None if not definite."""
    num_items = solve.shape[0]
    solve.flat[:: num_items + 1] += l2
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (solve,))
    # One BLAS thread (see the class docstring). `solve.T` is Fortran-ordered, so LAPACK
    # works in place; symmetric, it is the same matrix.
    with threadpool_limits(limits=1, user_api="blas"):
        factor, info = potrf(solve.T, lower=False, overwrite_a=True, clean=False)
        if info == 0:
            precision, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        return None
    if not np.shares_memory(precision, solve):
        solve[...] = precision.T
    del factor, precision
    # potri left P in the upper triangle of `solve.T`: the lower one of `solve`.
    block = max(1, _GRAM_BLOCK_ENTRIES // num_items)
    for start in range(0, num_items, block):
        stop = min(start + block, num_items)
        solve[start:stop, stop:] = solve[stop:, start:stop].T
        diagonal_block = solve[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        diagonal_block[upper] = diagonal_block.T[upper]
    scale = -1.0 / solve.diagonal()
    # Float32 rows of B overwrite the front of the buffer in order: block [a, b) lands
    # on rows below b, all already read into `scaled` (float64) or scaled in place.
    weights = np.ndarray((num_items, num_items), dtype=np.float32, buffer=solve.base)
    for start in range(0, num_items, block):
        stop = min(start + block, num_items)
        scaled = solve[start:stop] * scale.astype(solve.dtype)
        scaled[np.arange(stop - start), np.arange(start, stop)] = 0.0
        weights[start:stop] = scaled
    _release_after(solve.base, weights.nbytes)
    return weights


def _release_after(buffer, used_bytes):
    """Returns the pages of `buffer` past `used_bytes` to the OS (where `madvise` exists)."""
    page = mmap.PAGESIZE
    start = -(-used_bytes // page) * page
    if hasattr(mmap, "MADV_DONTNEED") and start < len(buffer):
        buffer.madvise(mmap.MADV_DONTNEED, start, len(buffer) - start)
