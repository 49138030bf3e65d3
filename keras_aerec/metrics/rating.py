"""Masked RMSE for rating prediction: a numpy function and a Keras metric.

Only observed ratings count: an entry enters the error when its mask is nonzero, the mask
being by default the nonzero targets (0 marks an unobserved rating).

    RMSE = sqrt( sum(mask * (prediction - target)^2) / sum(mask) )

Reference:
    Sedhain, Menon, Sanner, Xie. AutoRec: Autoencoders Meet Collaborative Filtering.
    WWW 2015. https://doi.org/10.1145/2740908.2742726
"""

import keras
import numpy as np
from keras import ops

from keras_aerec.api_export import keras_aerec_export


def masked_rmse(predictions, targets, mask=None) -> float:
    """Root mean squared error over the observed entries only.

    RMSE = sqrt(sum(mask * (predictions - targets)^2) / sum(mask)).

    Args:
        predictions: dense array of predicted ratings.
        targets: dense array of the same shape; 0 marks an unobserved rating.
        mask: optional array broadcastable to `targets` (binary or weights); defaults to
            `targets != 0`. Entries with a zero mask are ignored even if the prediction is
            NaN.

    Returns:
        The RMSE as a float; NaN when the mask is all zeros.

    Example:
        >>> masked_rmse(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.0, 3.0], [5.0, 0.0]]))
        1.5811388300841898
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"`predictions` should have the same shape as `targets` {targets.shape}. "
            f"Received: predictions.shape={predictions.shape}"
        )
    mask = targets != 0 if mask is None else mask
    mask = np.broadcast_to(np.asarray(mask, dtype=np.float64), targets.shape)
    observed = mask != 0
    weights = mask[observed]
    total = weights.sum()
    if total == 0:
        return float("nan")
    squared_errors = np.square(predictions[observed] - targets[observed])
    return float(np.sqrt(np.sum(weights * squared_errors) / total))


@keras_aerec_export
class MaskedRMSE(keras.metrics.Metric):
    """RMSE over the observed entries of a rating matrix, aggregated over batches.

    The state is the sum of squared errors and the count of observed entries, so the
    result over several batches equals the RMSE over all of them at once:

        RMSE = sqrt( sum(mask * (y_pred - y_true)^2) / sum(mask) ),  mask = y_true != missing_value

    (times `sample_weight` when given, broadcast over the trailing axes).

    Args:
        missing_value: the target value that marks an unobserved rating (default 0).
        name: metric name.
        dtype: dtype of the state and result.

    Example:
        >>> metric = MaskedRMSE()
        >>> metric.update_state([[0.0, 3.0], [5.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]])
        >>> float(metric.result())  # sqrt((1 + 4) / 2)
        1.58113...

    Reference:
        Sedhain, Menon, Sanner, Xie. AutoRec: Autoencoders Meet Collaborative Filtering.
        WWW 2015. https://doi.org/10.1145/2740908.2742726
    """

    def __init__(self, missing_value: float = 0.0, name: str = "masked_rmse", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.missing_value = missing_value
        self.sum_squared_error = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="sum_squared_error"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="count"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        mask = ops.cast(ops.not_equal(y_true, self.missing_value), self.dtype)
        if sample_weight is not None:
            sample_weight = ops.convert_to_tensor(sample_weight, dtype=self.dtype)
            while len(sample_weight.shape) < len(mask.shape):
                sample_weight = ops.expand_dims(sample_weight, axis=-1)
            mask = mask * sample_weight
        # `where` rather than a product, so that predictions at unobserved entries
        # (which may be anything, even NaN) cannot leak into the sum.
        squared_error = ops.where(mask != 0, mask * ops.square(y_pred - y_true), 0.0)
        self.sum_squared_error.assign_add(ops.sum(squared_error))
        self.count.assign_add(ops.sum(mask))

    def result(self):
        return ops.sqrt(ops.divide_no_nan(self.sum_squared_error, self.count))

    def get_config(self):
        config = super().get_config()
        config.update({"missing_value": self.missing_value})
        return config
