"""Shared top-N recommender contract: `score()`, `recommend()` and the reconstruction loss.

`TopNRecommender` gives every implicit-feedback model the same inference API on a batch
of users' interaction rows (CSR or dense; row i of every output belongs to row i of the
input). New users are "folded in": their interaction row is the model's input, so any row
over the training catalogue can be scored, whether or not the user was seen in training.

`ReconstructionObjective` lets an autoencoder train on its own objective without a `loss`
in `compile()`: `compute_loss` reconstructs the input row (or `y` when given) with the
model's per-user loss, plus the layers' losses (KL terms, weight regularisation).
"""

import sys
import threading

import keras
import numpy as np
import scipy.sparse as sp

from keras_aerec import allocator
from keras_aerec.data.batching import RowBatches
from keras_aerec.distribute import predict_batch
from keras_aerec.metrics.ranking import top_k_indices
from keras_aerec.validation import check_positive_int

DEFAULT_SCORE_BATCH_SIZE = 1024


KERAS_DEFAULT_BATCH_SIZE = 32


class StepByStep(keras.callbacks.Callback):
    """Bounds how many training steps Keras' JAX `fit` loop dispatches ahead of the computation.

    JAX runs a step asynchronously, and Keras' loop does not wait for it when every callback
    is `async_safe` (the default `History` and progress bar): Python then queues the whole
    epoch ahead of the computation, each queued step holding its input batch, so peak memory
    grows with the number of steps per epoch. Measured on Mult-VAE, 30,000 users x 17,000
    items, batches of 500: 2.27 GB peak without this callback, 1.15 GB with it
    (benchmarks/bench_multvae_memory.py). A step's end hook runs once its logs are read,
    that is once the step has finished (in Keras' callback thread when every callback is
    `async_safe`); the begin hook of step `n + in_flight` waits for it. With four steps in
    flight the next ones are dispatched while the current one computes: Mult-VAE epochs on
    ML-1M (batch 500), with / without the bound, were 0.97x, 1.09x and 0.95x in three
    alternating runs at load ~1 (benchmarks/bench_step_bound.py): within run-to-run noise,
    while the 17,000-item peak stayed at 1.15-1.21 GB.

    Args:
        in_flight: the most steps dispatched and not yet finished.
    """

    async_safe = True

    def __init__(self, in_flight: int = 4):
        super().__init__()
        self.in_flight = check_positive_int(in_flight, "in_flight")
        self._slots = threading.Semaphore(self.in_flight)

    def on_train_begin(self, logs=None):
        # A fit that ended in an exception may have left slots taken.
        self._slots = threading.Semaphore(self.in_flight)

    def on_train_batch_begin(self, batch, logs=None):
        self._slots.acquire()

    def on_train_batch_end(self, batch, logs=None):
        self._slots.release()


def with_step_by_step(callbacks):
    """`callbacks` plus a `StepByStep` under JAX (other backends run steps synchronously)."""
    callbacks = list(callbacks or [])
    if keras.backend.backend() == "jax" and not any(
        isinstance(callback, StepByStep) for callback in callbacks
    ):
        callbacks.append(StepByStep())
    return callbacks


class KeepFreedMemory(keras.callbacks.Callback):
    """Sets `keras_aerec.allocator`'s malloc options again after the first batch.

    TensorFlow's first `from_generator` kernel, built when Keras trains on a `PyDataset`,
    lowers glibc's mmap threshold to 128 KiB, so that every step maps and faults in its
    tensors afresh (`allocator.reassert`); measured on Mult-VAE, ML-1M, batch 500: 41,000
    page faults and ~2.2x the time per step. Added by `MatrixInputs.fit` / `evaluate` /
    `predict` when TensorFlow is loaded and the options are in effect.
    """

    async_safe = True

    def _first(self, batch):
        if batch == 0:
            allocator.reassert()

    def on_train_batch_end(self, batch, logs=None):
        self._first(batch)

    def on_test_batch_end(self, batch, logs=None):
        self._first(batch)

    def on_predict_batch_end(self, batch, logs=None):
        self._first(batch)


def with_kept_memory(callbacks):
    """`callbacks` plus a `KeepFreedMemory` when TensorFlow is loaded and memory is kept.

    A `CallbackList` (what `fit` hands to its validation `evaluate`) is returned as is.
    """
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    callbacks = list(callbacks or [])
    if (
        "tensorflow" in sys.modules
        and allocator.is_kept()
        and not any(isinstance(callback, KeepFreedMemory) for callback in callbacks)
    ):
        callbacks.append(KeepFreedMemory())
    return callbacks


def is_matrix(value) -> bool:
    """Whether `value` is a scipy sparse matrix or a numpy array (rows of examples)."""
    return sp.issparse(value) or isinstance(value, np.ndarray)


class MatrixInputs:
    """Mixin: Keras `fit` / `evaluate` / `predict` on a CSR matrix or numpy array of rows.

    A matrix (rows x columns) passed as `x` or `validation_data` is wrapped in
    `RowBatches`, the package's fast path, which densifies one batch of rows at a time:
    `batch_size` (default 32, as in Keras), `shuffle` (rows are reshuffled every epoch,
    seeded by the model's `seed` when it has one) and `validation_split` (the last rows,
    before shuffling, as in Keras) keep their Keras meaning. Anything else (a
    `RowBatches`, a `tf.data.Dataset`, a generator) goes to Keras unchanged.

    The host model may override `_matrix_targets(x)` (default targets when `y` is None)
    and `_row_batches(x, y, batch_size, shuffle, rows, training)`.

    It also refuses to score with untrained weights: `_check_trained(method)` raises
    unless the model was fitted (optimizer updates > 0) or its weights were loaded
    (`keras.saving.load_model`, `load_weights`) or given (`model.set_weights`).

    A `dtype` given to the model (a dtype policy such as `"mixed_bfloat16"`) applies to
    its layers, which otherwise follow Keras' global policy (a functional `keras.Model`
    would silently keep them at the global one), except the layers named in
    `_float32_layers`, which compute in float32 whatever the policy.
    """

    _float32_layers = ()

    def __init__(self, *args, dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        if dtype is not None:
            policy = keras.dtype_policies.get(dtype)
            self.dtype_policy = policy
            for layer in self._flatten_layers(include_self=False):
                if not isinstance(layer, keras.layers.InputLayer) and (
                    layer.name not in self._float32_layers
                ):
                    layer.dtype_policy = policy

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        **kwargs,
    ):
        validation_batch_size = kwargs.pop("validation_batch_size", None)
        given_batch_size = batch_size
        batches = self._matrix_batches(x, y, batch_size, shuffle, "x", validation_split)
        if batches is not None:
            self._refuse_weights(kwargs, "x")
            (x, validation_from_split), y, batch_size = batches, None, None
            if validation_from_split is not None:
                if validation_data is not None:
                    raise ValueError(
                        "Pass either `validation_split` or `validation_data`, not both."
                    )
                validation_data = validation_from_split
            validation_split = 0.0
        if validation_data is not None:
            wrapped = self._validation_batches(
                validation_data, validation_batch_size or given_batch_size
            )
            if wrapped is not validation_data:
                validation_data, validation_batch_size = wrapped, None
        if validation_batch_size is not None:
            kwargs["validation_batch_size"] = validation_batch_size
        return super().fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=with_kept_memory(with_step_by_step(callbacks)),
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            **kwargs,
        )

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        batches = self._matrix_batches(x, y, batch_size, False, "x")
        if batches is not None:
            self._refuse_weights(kwargs, "x")
            (x, _), y, batch_size = batches, None, None
        kwargs["callbacks"] = with_kept_memory(kwargs.get("callbacks"))
        return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        batches = self._matrix_batches(x, None, batch_size, False, "x", predict=True)
        if batches is not None:
            (x, _), batch_size = batches, None
        kwargs["callbacks"] = with_kept_memory(kwargs.get("callbacks"))
        return super().predict(x, batch_size=batch_size, **kwargs)

    def load_own_variables(self, store):
        super().load_own_variables(store)
        # Loading a `.keras` file or weights counts as training for `_check_trained`.
        self._weights_loaded = True

    def set_weights(self, weights):
        super().set_weights(weights)
        self._weights_loaded = True

    def _check_trained(self, method: str) -> None:
        """Raises unless the model was fitted or loaded (not for models without trainable
        weights, such as closed-form ones, which check their own state)."""
        if getattr(self, "_weights_loaded", False) or not self.trainable_weights:
            return
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and int(keras.ops.convert_to_numpy(optimizer.iterations)) > 0:
            return
        raise ValueError(
            f"`{type(self).__name__}.{method}()` was called before training: its weights "
            "are random. Call `fit()` first, or load a trained model with "
            "`keras.saving.load_model()`."
        )

    # === Matrix inputs ===

    def _matrix_targets(self, x):
        """Targets used when `y` is None (None: the loss reconstructs the input)."""
        del x
        return None

    def _row_batches(self, x, y, batch_size, shuffle, rows, training):
        """`RowBatches` over the rows of matrix `x` (and `y`), or None when `x` is not one."""
        del training
        if not is_matrix(x):
            return None
        return RowBatches(
            x,
            y=self._matrix_targets(x) if y is None else y,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=getattr(self, "seed", None),
            rows=rows,
        )

    def _matrix_batches(self, x, y, batch_size, shuffle, name, validation_split=0.0, predict=False):
        """`(batches, validation_batches)` for matrix inputs, or None for other inputs."""
        batch_size = check_positive_int(
            KERAS_DEFAULT_BATCH_SIZE if batch_size is None else batch_size, "batch_size"
        )
        training = not predict and name == "x"
        batches = self._row_batches(
            x, y, batch_size, shuffle and not validation_split, None, training
        )
        if batches is None:
            if is_matrix(y):
                raise ValueError(
                    f"`{name}` should be a CSR matrix or numpy array when `y` is one. "
                    f"Received: {name} of type {type(x).__name__}"
                )
            return None
        if not validation_split:
            return batches, None
        if not isinstance(validation_split, float | int) or not 0 < validation_split < 1:
            raise ValueError(
                "`validation_split` should be a float in (0, 1). "
                f"Received: validation_split={validation_split!r}"
            )
        num_rows = batches.rows.size
        split_at = int(np.floor(num_rows * (1.0 - validation_split)))
        if split_at < 1 or split_at == num_rows:
            raise ValueError(
                f"`validation_split`={validation_split} leaves no training or no validation "
                f"rows out of {num_rows}."
            )
        rows = np.arange(num_rows)
        return (
            self._row_batches(x, y, batch_size, shuffle, rows[:split_at], training),
            self._row_batches(x, y, batch_size, False, rows[split_at:], False),
        )

    def _validation_batches(self, validation_data, batch_size):
        """`validation_data` as `RowBatches` when it holds matrices (`X` or `(X, Y)`)."""
        if isinstance(validation_data, tuple) and len(validation_data) in (1, 2):
            x, y = validation_data[0], (validation_data[1] if len(validation_data) == 2 else None)
        else:
            x, y = validation_data, None
        batches = self._matrix_batches(x, y, batch_size, False, "validation_data")
        return validation_data if batches is None else batches[0]

    @staticmethod
    def _refuse_weights(kwargs, name):
        for argument in ("sample_weight", "class_weight"):
            if kwargs.get(argument) is not None:
                raise ValueError(
                    f"`{argument}` is not supported when `{name}` is a matrix of rows. "
                    f"Received: {argument} of type {type(kwargs[argument]).__name__}"
                )


class TopNRecommender(MatrixInputs):
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
        self._check_trained("score")
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
        self._check_trained("recommend")
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

    def _row_batches(self, x, y, batch_size, shuffle, rows, training):
        if is_matrix(x):
            x = self._check_user_items(x)  # width and finite values, before any batch
        return super()._row_batches(x, y, batch_size, shuffle, rows, training)

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
        # In float32 under a mixed precision policy, as Keras computes its losses.
        y_pred = keras.ops.cast(y_pred, "float32")
        per_user = self.per_user_loss(target, y_pred, training=training)
        loss = _PER_USER_MEAN(per_user, per_user, sample_weight)
        if self._compile_loss is not None or self.losses:
            loss = loss + super().compute_loss(
                x=x, y=target, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        return loss


_PER_USER_MEAN = _PerUserMean(name="reconstruction_loss")
