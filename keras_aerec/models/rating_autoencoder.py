"""Behaviour shared by the rating autoencoders (AutoRec, DeepRec).

A rating autoencoder reads rating vectors: the rows of the users x items rating matrix
(`variant="user"`: one user's ratings over the items) or its columns (`variant="item"`: one
item's ratings over the users). `RatingAutoencoder` hides that orientation: `rating_rows`
turns a users x items matrix into the model's rows, and `predict_ratings` takes
`(user, item)` pairs in original ids whatever the variant.
"""

import logging
import numbers

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp

from keras_aerec.data.batching import RowBatches
from keras_aerec.distribute import predict_batch
from keras_aerec.models.recommender import DEFAULT_SCORE_BATCH_SIZE, MatrixInputs

logger = logging.getLogger("keras_aerec.models")

VARIANTS = ("item", "user")


def check_rating_config(variant, rating_range, default_rating, user_ids, item_ids, num_inputs):
    """Validates the arguments every rating autoencoder shares; returns them normalized."""
    if variant not in VARIANTS:
        raise ValueError(f"`variant` should be one of {VARIANTS}. Received: variant={variant!r}")
    try:
        low, high = (float(value) for value in rating_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"`rating_range` should be a pair (min, max). Received: rating_range={rating_range!r}"
        ) from None
    if not 0 < low < high:
        raise ValueError(
            "`rating_range` should be (min, max) with 0 < min < max (0 marks a missing "
            f"rating). Received: rating_range={rating_range!r}"
        )
    if default_rating != "mean" and (
        isinstance(default_rating, bool) or not isinstance(default_rating, numbers.Real)
    ):
        raise ValueError(
            '`default_rating` should be a number or "mean". '
            f"Received: default_rating={default_rating!r}"
        )
    ids = {}
    for name, values in (("user_ids", user_ids), ("item_ids", item_ids)):
        if values is not None:
            values = np.asarray(values)
            if values.ndim != 1 or len(pd.unique(values)) != len(values):
                raise ValueError(
                    f"`{name}` should be a 1D array of distinct ids. Received: {name} with "
                    f"shape {values.shape}"
                )
        ids[name] = values
    input_ids = "user_ids" if variant == "item" else "item_ids"
    if ids[input_ids] is not None and len(ids[input_ids]) != num_inputs:
        raise ValueError(
            f"`{input_ids}` should hold one id per input column (`num_inputs`={num_inputs} "
            f'for variant="{variant}"). Received: {len(ids[input_ids])} ids'
        )
    default = default_rating if default_rating == "mean" else float(default_rating)
    return variant, (low, high), default, ids["user_ids"], ids["item_ids"]


class RatingAutoencoder(MatrixInputs, keras.Model):
    """Base of the rating autoencoders: orientation, input checks, scoring, pair prediction.

    Subclasses build a functional model in `__init__`, set `variant`, `num_inputs` (width
    of a rating vector), `side_information_size`, `rating_range`, `default_rating`,
    `user_ids` and `item_ids`, and implement `compute_loss`.
    """

    # === Orientation ===

    def rating_rows(self, ratings, side_information=None) -> sp.csr_matrix:
        """The model's input rows built from a users x items rating matrix.

        Args:
            ratings: users x items CSR matrix (or `Interactions`) of ratings, 0 = missing.
            side_information: for a model with `side_information_size > 0`, a matrix with
                one row per model row (users for `variant="user"`, items for `"item"`)
                appended to the ratings.

        Returns:
            CSR float32: `ratings.T` (items x users) for `variant="item"`, `ratings` for
            `variant="user"`, with the side information appended as extra columns.
        """
        matrix = _as_csr(ratings, "ratings")
        rows = matrix.T.tocsr() if self.variant == "item" else matrix
        self._check_ratings(rows, "ratings", self.num_inputs, transposed=self.variant == "item")
        if self.side_information_size == 0:
            if side_information is not None:
                raise ValueError(
                    "`side_information` should be None for a model built with "
                    "`side_information_size=0`. Received a matrix of shape "
                    f"{np.shape(side_information)}"
                )
            return rows
        if side_information is None:
            raise ValueError(
                "`side_information` should be a matrix with "
                f"{self.side_information_size} columns for this model. Received: None"
            )
        side = sp.csr_matrix(side_information, dtype="float32")
        if side.shape != (rows.shape[0], self.side_information_size):
            raise ValueError(
                f"`side_information` should have shape ({rows.shape[0]}, "
                f"{self.side_information_size}) (one row per model row). "
                f"Received: shape={side.shape}"
            )
        if not np.all(np.isfinite(side.data)):
            raise ValueError("`side_information` should not contain NaN or infinite values.")
        return sp.hstack([rows, side], format="csr", dtype="float32")

    # === Prediction ===

    def score(self, rows, users=None, batch_size: int = DEFAULT_SCORE_BATCH_SIZE) -> np.ndarray:
        """Reconstructed rating vectors (unclipped) for model-orientation rows.

        Args:
            rows: CSR or dense matrix of model rows (see `rating_rows`), width
                `num_inputs + side_information_size`.
            users: unused (rating autoencoders have no per-row state).
            batch_size: rows densified and predicted at a time.

        Returns:
            float32 array `(len(rows), num_inputs)`.
        """
        del users
        rows = self._check_inputs(rows, "rows")
        self._check_trained("score")
        outputs = []
        for start in range(0, rows.shape[0], batch_size):
            batch = rows[start : start + batch_size]
            batch = batch.toarray() if sp.issparse(batch) else batch
            outputs.append(np.asarray(predict_batch(self, batch.astype("float32"))))
        if not outputs:
            return np.zeros((0, self.num_inputs), dtype="float32")
        return np.concatenate(outputs).astype("float32", copy=False)

    def score_entries(self, rows, row_positions, columns) -> np.ndarray:
        """Reconstructed values at `(row_positions[j], columns[j])` of `score(rows)`.

        Rating evaluation needs a few percent of the reconstructed matrix. When the output
        layer is a linear `Dense` (AutoRec, untied DeepRec), only the hidden rows are
        computed by the model and each entry is the dot product of its row's code with its
        column of the output kernel: this skips the output layer's full matmul, about half
        of the arithmetic of an AutoRec evaluation. Other models score whole rows.

        Args:
            rows: CSR or dense batch of model rows, as in `score`.
            row_positions: int array, the entries' positions in `rows`.
            columns: int array of the same length, the entries' columns (< `num_inputs`).

        Returns:
            float32 array, one value per entry.
        """
        rows = self._check_inputs(rows, "rows")
        self._check_trained("score_entries")
        row_positions, columns = np.asarray(row_positions), np.asarray(columns)
        code_model = self._code_model()
        if code_model is None:
            return self.score(rows)[row_positions, columns]
        batch = rows.toarray() if sp.issparse(rows) else rows
        codes = np.asarray(predict_batch(code_model, batch.astype("float32")), dtype="float32")
        output = self.layers[-1]
        # Transposed by the backend: (num_inputs, code), so that a column is a row.
        kernel = keras.ops.convert_to_numpy(keras.ops.transpose(output.kernel))
        kernel = np.ascontiguousarray(kernel, dtype="float32")
        # One matrix-vector product per row (2.3x faster than gathering a code per entry
        # and summing products, 500-wide codes): the entries grouped by row.
        order = np.argsort(row_positions, kind="stable")
        sorted_rows = row_positions[order]
        bounds = np.searchsorted(sorted_rows, np.arange(codes.shape[0] + 1))
        values = np.empty(order.size, dtype="float32")
        for row in np.flatnonzero(np.diff(bounds)):
            entries = order[bounds[row] : bounds[row + 1]]
            values[entries] = kernel[columns[entries]] @ codes[row]
        if output.use_bias:
            values += keras.ops.convert_to_numpy(output.bias).astype("float32")[columns]
        return values

    def _code_model(self):
        """The model up to the output layer's input when that layer is a linear `Dense`."""
        output = self.layers[-1]
        if not (
            len(self.outputs) == 1
            and type(output) is keras.layers.Dense
            and len(output._inbound_nodes) == 1
            and output.output is self.outputs[0]
            and output.activation is keras.activations.linear
            and output.quantization_mode is None
            and not output.lora_enabled
        ):
            return None
        if "_code_model_cache" not in self.__dict__:
            # Set around Keras' attribute tracking: the sub-model shares this model's
            # layers and must not become a sublayer that saving would serialise twice.
            self.__dict__["_code_model_cache"] = keras.Model(self.input, output.input)
        return self.__dict__["_code_model_cache"]

    def predict_ratings(
        self,
        user_ids,
        item_ids,
        ratings,
        side_information=None,
        batch_size: int = DEFAULT_SCORE_BATCH_SIZE,
    ) -> np.ndarray:
        """Predicted ratings of `(user, item)` pairs given in original ids.

        Each pair is read from the rating vectors of `ratings` (the matrix the model's
        inputs come from, normally the training ratings): the pair's item column
        (`variant="item"`) or user row (`"user"`) is reconstructed, and the entry of the
        other side is returned, clipped to `rating_range`. A pair whose user or item has
        no rating in `ratings` gets `default_rating` instead (the training mean of
        `ratings` when `default_rating="mean"`).

        Args:
            user_ids: 1D array of original user ids (the model's `user_ids`; positions when
                the model was built without ids).
            item_ids: 1D array of original item ids, aligned with `user_ids`.
            ratings: users x items CSR matrix (or `Interactions`) of the ratings the
                inputs are read from.
            side_information: see `rating_rows`.
            batch_size: rating vectors reconstructed at a time.

        Returns:
            float32 array of predicted ratings, one per pair.
        """
        matrix = _as_csr(ratings, "ratings")
        users = self._positions(user_ids, self.user_ids, matrix.shape[0], "user_ids")
        items = self._positions(item_ids, self.item_ids, matrix.shape[1], "item_ids")
        if users.shape != items.shape:
            raise ValueError(
                "`user_ids` and `item_ids` should have the same length. "
                f"Received: {users.size} user ids and {items.size} item ids"
            )
        rows = self.rating_rows(matrix, side_information)
        self._check_trained("predict_ratings")
        row_of_pair, column_of_pair = (items, users) if self.variant == "item" else (users, items)
        seen = (np.diff(matrix.indptr) > 0)[users] & (
            np.bincount(matrix.indices, minlength=matrix.shape[1]) > 0
        )[items]
        default = (
            float(matrix.data.mean()) if self.default_rating == "mean" else self.default_rating
        )
        predictions = np.full(users.shape, default, dtype="float32")
        # Reconstruct the needed rows a batch at a time and gather each batch's pairs.
        pairs = np.flatnonzero(seen)
        needed, pair_to_needed = np.unique(row_of_pair[pairs], return_inverse=True)
        order = np.argsort(pair_to_needed, kind="stable")
        pairs, pair_to_needed = pairs[order], pair_to_needed[order]
        for start in range(0, needed.size, batch_size):
            reconstructed = self.score(
                rows[needed[start : start + batch_size]], batch_size=batch_size
            )
            low, high = np.searchsorted(pair_to_needed, [start, start + batch_size])
            batch_pairs = pairs[low:high]
            predictions[batch_pairs] = reconstructed[
                pair_to_needed[low:high] - start, column_of_pair[batch_pairs]
            ]
        low, high = self.rating_range
        predictions[seen] = np.clip(predictions[seen], low, high)
        return predictions

    # === Training ===

    def compile(self, optimizer="auto", **kwargs):
        """Configures training; the loss is the model's own (see `compute_loss`).

        Args:
            optimizer: a Keras optimizer, its name, or `"auto"` for Adam with learning
                rate 1e-3. Pass e.g. `keras.optimizers.RMSprop(1e-3, clipvalue=5.0)` to
                clip gradients by value as the article's code can.
            **kwargs: forwarded to `keras.Model.compile` (`metrics`, `jit_compile`, ...),
                except `loss`. `jit_compile` defaults to `True` on TensorFlow, where
                Keras' `"auto"` turns XLA off on machines without an accelerator: on the
                ML-1M article split (2-core CPU, `benchmarks/bench_rating_xla.py`),
                training epochs with XLA took 1.50 s vs 2.05 s without (I-AutoRec), 1.44
                vs 2.34 s (U-AutoRec) and 1.70 vs 2.30 s (DeepRec). Elsewhere, and under a
                multi-replica `tf.distribute` strategy (which XLA does not support) or
                with `run_eagerly=True` (nothing to compile), Keras' `"auto"`.
        """
        if kwargs.pop("loss", None) is not None:
            raise ValueError(
                f"`loss` should not be passed to `{type(self).__name__}.compile`: the model "
                "computes its own masked loss."
            )
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        if (
            keras.backend.backend() == "tensorflow"
            and self._single_replica()
            and not kwargs.get("run_eagerly")
        ):
            kwargs.setdefault("jit_compile", True)
        super().compile(optimizer=optimizer, **kwargs)

    def _single_replica(self) -> bool:
        # XLA cannot reach a MirroredStrategy's variables on other devices (TensorFlow's
        # "tf.Variable on a different device" known issue).
        return self.distribute_strategy.num_replicas_in_sync == 1

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, after checking `RowBatches` / array inputs (width, range, NaN)."""
        self._check_training_data(x, y, "x")
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, tuple | list):
            self._check_training_data(*validation_data[:2], "validation_data")
        elif validation_data is not None:
            self._check_training_data(validation_data, None, "validation_data")
        return super().fit(x, y, *args, **kwargs)

    def _matrix_targets(self, x):
        """The ratings part of the input rows (without side information)."""
        return x[:, : self.num_inputs] if self.side_information_size else "x"

    # === Checks ===

    @property
    def input_width(self) -> int:
        return self.num_inputs + self.side_information_size

    def _check_training_data(self, x, y, name):
        if isinstance(x, RowBatches):
            x, y = x.x, (None if x.y is x.x else x.y)
        elif not (sp.issparse(x) or isinstance(x, np.ndarray)):
            return  # tf.data, generators, ...: checked by Keras only
        self._check_inputs(x, name)
        if y is not None:
            self._check_ratings(y, f"targets of {name}", self.num_inputs)

    def _check_inputs(self, rows, name):
        if not sp.issparse(rows):
            rows = np.asarray(rows, dtype="float32")
        if rows.ndim != 2 or rows.shape[1] != self.input_width:
            expected = f"{self.num_inputs}"
            if self.side_information_size:
                expected += f" ratings + {self.side_information_size} side-information"
            raise ValueError(
                f'`{name}` should have {expected} columns (variant="{self.variant}"). '
                f"Received: {name}.shape={rows.shape}"
            )
        values = rows.data if sp.issparse(rows) else rows
        if not np.all(np.isfinite(values)):
            raise ValueError(f"`{name}` should not contain NaN or infinite values.")
        ratings = rows[:, : self.num_inputs] if self.side_information_size else rows
        self._check_ratings(ratings, name, self.num_inputs)
        return rows

    def _check_ratings(self, ratings, name, width, transposed=False):
        shape = ratings.shape[::-1] if transposed else ratings.shape
        if len(ratings.shape) != 2 or ratings.shape[1] != width:
            side = "users" if self.variant == "item" else "items"
            raise ValueError(
                f"`{name}` should have {width} {side} "
                f'(the model\'s `num_inputs` for variant="{self.variant}"). '
                f"Received: {name}.shape={shape}"
            )
        values = ratings.data if sp.issparse(ratings) else np.asarray(ratings)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"`{name}` should not contain NaN or infinite values.")
        observed = values[values != 0]
        low, high = self.rating_range
        if observed.size and (observed.min() < low or observed.max() > high):
            raise ValueError(
                f"`{name}` should hold ratings in `rating_range`=[{low:g}, {high:g}] (0 for "
                f"missing). Received: ratings in [{observed.min():g}, {observed.max():g}]"
            )

    @staticmethod
    def _positions(ids, known_ids, size, name):
        ids = np.asarray(ids).ravel()
        if known_ids is None:
            if not np.issubdtype(ids.dtype, np.integer) and ids.size:
                raise ValueError(
                    f"`{name}` should be integer positions (the model was built without "
                    f"`{name}`). Received: dtype {ids.dtype}"
                )
            positions = ids.astype("int64")
            unknown = (positions < 0) | (positions >= size)
        else:
            if len(known_ids) != size:
                raise ValueError(
                    f"`ratings` should have one {name[:-4]} per model `{name}` "
                    f"({len(known_ids)}). Received: {size}"
                )
            positions = pd.Index(known_ids).get_indexer(ids)
            unknown = positions < 0
        if unknown.any():
            examples = ", ".join(repr(value) for value in pd.unique(ids[unknown])[:5].tolist())
            raise ValueError(
                f"`{name}` should only hold ids the model knows. Received "
                f"{int(unknown.sum())} unknown: {examples}"
            )
        return positions

    def _rating_config(self):
        return {
            "variant": self.variant,
            "rating_range": list(self.rating_range),
            "default_rating": self.default_rating,
            "user_ids": None if self.user_ids is None else self.user_ids.tolist(),
            "item_ids": None if self.item_ids is None else self.item_ids.tolist(),
        }


def _as_csr(ratings, name):
    matrix = getattr(ratings, "matrix", ratings)  # Interactions
    if not sp.issparse(matrix):
        matrix = np.asarray(matrix, dtype="float32")
        if matrix.ndim != 2:
            raise ValueError(
                f"`{name}` should be a users x items matrix. Received: shape={matrix.shape}"
            )
        if not np.all(np.isfinite(matrix)):
            raise ValueError(f"`{name}` should not contain NaN or infinite values.")
    return sp.csr_matrix(matrix, dtype="float32")
