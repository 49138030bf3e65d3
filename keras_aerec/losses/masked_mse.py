"""Masked squared error over the observed ratings of a batch of rating vectors.

Only observed ratings count: the mask is `y_true != 0` (0 marks a missing rating). The
batch's masked sum of squared errors, `sum(mask * (y_true - y_pred)^2)`, is divided by:

- `"ratings"`: the number of observed ratings in the batch (the masked MSE of DeepRec);
- `"rows"`: the number of rows in the batch (the mean, over rating vectors, of each
  vector's masked sum of squares: AutoRec's reconstruction cost divided by the number of
  vectors);
- `"none"`: nothing (AutoRec's reconstruction cost as summed by the article's code).

Reference:
    Kuchaiev, Ginsburg. Training Deep AutoEncoders for Collaborative Filtering.
    arXiv:1708.01715, 2017.
"""

import keras
from keras import ops

from keras_aerec.api_export import keras_aerec_export
from keras_aerec.distribute import sum_over_replicas

NORMALIZATIONS = ("ratings", "rows", "none")


def masked_squared_error(y_true, y_pred):
    """Per-row masked sum of squared errors and the per-row count of observed ratings.

    Args:
        y_true: `(batch, n)` ratings, 0 where missing.
        y_pred: `(batch, n)` predictions.

    Returns:
        `(squared_errors, counts)`, two `(batch,)` tensors.
    """
    observed = ops.not_equal(y_true, 0)
    # `where`, not a product: a prediction at a missing entry must not leak in, even NaN.
    squared = ops.where(observed, ops.square(y_true - y_pred), ops.zeros_like(y_pred))
    return ops.sum(squared, axis=-1), ops.sum(ops.cast(observed, y_pred.dtype), axis=-1)


@keras_aerec_export
class MaskedMSE(keras.losses.Loss):
    """Squared error over observed ratings (`y_true != 0`), normalized per `normalization`.

    The loss returns one value per row whose plain sum is the batch's loss, so
    `sample_weight` weights whole rows.

    Args:
        normalization: `"ratings"` (divide by the batch's number of observed ratings),
            `"rows"` (divide by the batch's number of rows) or `"none"` (plain sum).
        name: loss name.
        dtype: dtype of the loss computation.

    Example:

    >>> loss = MaskedMSE()
    >>> float(loss([[0.0, 3.0], [5.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]]))  # (1 + 4) / 2
    2.5

    Reference:
        Kuchaiev, Ginsburg. Training Deep AutoEncoders for Collaborative Filtering.
        arXiv:1708.01715, 2017.
    """

    def __init__(self, normalization: str = "ratings", name: str = "masked_mse", dtype=None):
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"`normalization` should be one of {NORMALIZATIONS}. "
                f"Received: normalization={normalization!r}"
            )
        super().__init__(name=name, reduction="sum", dtype=dtype)
        self.normalization = normalization

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        squared_errors, counts = masked_squared_error(y_true, y_pred)
        # Under tf.distribute each replica divides by the whole batch's count, so the
        # replicas' summed gradients equal the single-device ones.
        if self.normalization == "ratings":
            return squared_errors / ops.maximum(sum_over_replicas(ops.sum(counts)), 1.0)
        if self.normalization == "rows":
            rows = ops.cast(ops.shape(squared_errors)[0], y_pred.dtype)
            return squared_errors / sum_over_replicas(rows)
        return squared_errors

    def get_config(self):
        return {"normalization": self.normalization, "name": self.name, "dtype": self.dtype}
