import math

import keras
import numpy as np
import pytest

from keras_aerec.metrics.rating import MaskedRMSE, masked_rmse

PREDICTIONS = np.array([[1.0, 2.0, 4.5], [3.0, 4.0, 2.0]])
TARGETS = np.array([[0.0, 3.0, 5.0], [5.0, 0.0, 1.0]])
# Observed entries (targets != 0) and errors p - t:
#   (0, 1): 2 - 3 = -1      (0, 2): 4.5 - 5 = -0.5
#   (1, 0): 3 - 5 = -2      (1, 2): 2 - 1 = 1
# RMSE = sqrt((1 + 0.25 + 4 + 1) / 4) = sqrt(6.25 / 4) = 1.25
EXPECTED_RMSE = 1.25


def test_masked_rmse_hand_example():
    assert masked_rmse(PREDICTIONS, TARGETS) == pytest.approx(EXPECTED_RMSE, abs=1e-12)


def test_masked_rmse_explicit_mask_and_weights():
    # Only (0, 2) and (1, 0): sqrt((0.25 + 4) / 2)
    mask = np.array([[0, 0, 1], [1, 0, 0]])
    assert masked_rmse(PREDICTIONS, TARGETS, mask) == pytest.approx(math.sqrt(4.25 / 2))
    # Weights 3 and 1: sqrt((3 * 0.25 + 4) / 4)
    weights = np.array([[0, 0, 3.0], [1.0, 0, 0]])
    assert masked_rmse(PREDICTIONS, TARGETS, weights) == pytest.approx(math.sqrt(4.75 / 4))


def test_masked_rmse_ignores_unobserved_nan_predictions_and_empty_mask():
    predictions = PREDICTIONS.copy()
    predictions[0, 0] = np.nan  # unobserved entry
    assert masked_rmse(predictions, TARGETS) == pytest.approx(EXPECTED_RMSE, abs=1e-12)
    assert math.isnan(masked_rmse(PREDICTIONS, np.zeros_like(TARGETS)))
    with pytest.raises(ValueError, match="`predictions` should have the same shape"):
        masked_rmse(PREDICTIONS[:1], TARGETS)


@pytest.mark.backend
def test_keras_metric_hand_example_and_batch_aggregation():
    metric = MaskedRMSE()
    metric.update_state(TARGETS, PREDICTIONS)
    assert float(metric.result()) == pytest.approx(EXPECTED_RMSE, rel=1e-6)

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 6, size=(50, 20)).astype("float32")
    predictions = rng.uniform(1, 5, size=(50, 20)).astype("float32")
    metric.reset_state()
    for start in range(0, 50, 7):
        metric.update_state(targets[start : start + 7], predictions[start : start + 7])
    assert float(metric.result()) == pytest.approx(masked_rmse(predictions, targets), rel=1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0


@pytest.mark.backend
def test_keras_metric_sample_weight_missing_value_and_unobserved_nan():
    metric = MaskedRMSE()
    # Row weights 3 and 1: sqrt((3 * (1 + 0.25) + (4 + 1)) / (3 * 2 + 2)) = sqrt(8.75 / 8)
    metric.update_state(TARGETS, PREDICTIONS, sample_weight=np.array([3.0, 1.0]))
    assert float(metric.result()) == pytest.approx(math.sqrt(8.75 / 8), rel=1e-6)

    metric = MaskedRMSE(missing_value=-1.0)
    targets = np.where(TARGETS == 0, -1.0, TARGETS)
    predictions = PREDICTIONS.copy()
    predictions[0, 0] = np.nan  # unobserved entry
    metric.update_state(targets, predictions)
    assert float(metric.result()) == pytest.approx(EXPECTED_RMSE, rel=1e-6)


@pytest.mark.backend
def test_keras_metric_serialization_round_trip():
    metric = MaskedRMSE(missing_value=-1.0, name="rmse")
    serialized = keras.saving.serialize_keras_object(metric)
    assert serialized["registered_name"] == "keras_aerec>MaskedRMSE"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, MaskedRMSE)
    assert restored.get_config() == metric.get_config()
    assert restored.get_config()["missing_value"] == -1.0


@pytest.mark.backend
def test_keras_metric_in_compiled_evaluate():
    # An identity model, so the metric compares the inputs with the targets, aggregated by
    # Keras over batches of 4 rows inside the backend's compiled step.
    rng = np.random.default_rng(1)
    inputs = rng.uniform(1, 5, size=(10, 6)).astype("float32")
    targets = (rng.integers(0, 6, size=(10, 6)) * (rng.random((10, 6)) < 0.5)).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Identity()])
    model.compile(loss="mse", metrics=[MaskedRMSE()])
    results = model.evaluate(inputs, targets, batch_size=4, verbose=0, return_dict=True)
    assert results["masked_rmse"] == pytest.approx(masked_rmse(inputs, targets), rel=1e-5)
