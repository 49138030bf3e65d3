"""`Sampling`: KL term, annealing schedule, deterministic inference, serialization."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_aerec.layers.sampling import Sampling, gaussian_kl

MEAN = np.array([[1.0, 0.0], [0.0, 2.0]], dtype="float32")
LOG_VAR = np.array([[0.0, math.log(2.0)], [0.0, 0.0]], dtype="float32")
# Row 1: 0.5 * [(1 + 1 - 1 - 0) + (2 + 0 - 1 - ln 2)] = 1 - ln(2) / 2; row 2: 0.5 * 4 = 2.
KL_PER_ROW = np.array([1.0 - math.log(2.0) / 2.0, 2.0])


def to_numpy(value):
    return np.asarray(ops.convert_to_numpy(value))


@pytest.mark.backend
def test_gaussian_kl_hand_computed():
    np.testing.assert_allclose(to_numpy(gaussian_kl(MEAN, LOG_VAR)), KL_PER_ROW, rtol=1e-6)


@pytest.mark.backend
def test_inference_returns_the_mean_and_adds_no_loss():
    layer = Sampling(seed=0)
    z = layer([MEAN, LOG_VAR])
    np.testing.assert_array_equal(to_numpy(z), MEAN)
    assert not layer.losses
    assert float(to_numpy(layer.anneal_step)) == 0.0


@pytest.mark.backend
def test_training_call_adds_annealed_kl_and_counts_the_step():
    layer = Sampling(anneal_cap=0.9, total_anneal_steps=10, seed=0)
    layer.build(None)
    layer.anneal_step.assign(4.0)
    layer([MEAN, LOG_VAR], training=True)
    (loss,) = layer.losses
    np.testing.assert_allclose(float(to_numpy(loss)), 0.4 * KL_PER_ROW.mean(), rtol=1e-6)
    assert float(to_numpy(layer.anneal_step)) == 5.0
    np.testing.assert_allclose(float(to_numpy(layer.kl_weight())), 0.5, rtol=1e-6)


@pytest.mark.backend
def test_training_samples_with_the_posterior_spread():
    mean = np.full((4000, 2), 3.0, dtype="float32")
    log_var = np.tile(np.log(np.array([[0.25, 4.0]], dtype="float32")), (4000, 1))
    z = to_numpy(Sampling(seed=1)([mean, log_var], training=True))
    np.testing.assert_allclose(z.mean(axis=0), [3.0, 3.0], atol=0.1)
    np.testing.assert_allclose(z.std(axis=0), [0.5, 2.0], rtol=0.05)


def tiny_vae(anneal_cap, total_anneal_steps):
    inputs = keras.Input(shape=(4,))
    hidden = keras.layers.Dense(3)(inputs)
    z = Sampling(anneal_cap, total_anneal_steps, seed=0, name="sampling")(
        [keras.layers.Dense(2)(hidden), keras.layers.Dense(2)(hidden)]
    )
    model = keras.Model(inputs, keras.layers.Dense(4)(z))
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.backend
@pytest.mark.parametrize(
    "anneal_cap, total_anneal_steps, expected_beta",
    [(0.8, 10, 0.7), (0.2, 10, 0.2), (0.3, 0, 0.3)],
)
def test_beta_schedule_after_n_updates(anneal_cap, total_anneal_steps, expected_beta):
    model = tiny_vae(anneal_cap, total_anneal_steps)
    x = np.random.default_rng(0).random((28, 4)).astype("float32")
    model.fit(x, x, batch_size=4, epochs=1, verbose=0)  # 7 updates
    layer = model.get_layer("sampling")
    assert float(to_numpy(layer.anneal_step)) == 7.0
    np.testing.assert_allclose(float(to_numpy(layer.kl_weight())), expected_beta, rtol=1e-6)
    model.predict(x, verbose=0)
    assert float(to_numpy(layer.anneal_step)) == 7.0


@pytest.mark.backend
def test_serialization_round_trip():
    layer = Sampling(anneal_cap=0.5, total_anneal_steps=123, seed=7, name="s")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, Sampling)
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"anneal_cap": -0.1}, "anneal_cap"),
        ({"anneal_cap": "0.2"}, "anneal_cap"),
        ({"total_anneal_steps": -1}, "total_anneal_steps"),
        ({"total_anneal_steps": 2.5}, "total_anneal_steps"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampling(**kwargs)
