"""`keras_aerec.layers.GRU`: the same outputs, gradients, weights and saved files as Keras' GRU."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_aerec.layers.gru import GRU

RNG = np.random.default_rng(0)
INPUTS = RNG.normal(size=(3, 7, 5)).astype("float32")


def twin_models(return_sequences=True, **kwargs):
    """A `keras.layers.GRU` model and a `keras_aerec.layers.GRU` model holding the same weights."""
    models = []
    for layer_class in (keras.layers.GRU, GRU):
        inputs = keras.Input((None, 5))
        outputs = layer_class(4, return_sequences=return_sequences, name="gru", **kwargs)(inputs)
        models.append(keras.Model(inputs, outputs))
    reference, projected = models
    reference.set_weights([RNG.normal(size=w.shape).astype("float32") for w in reference.weights])
    projected.set_weights(reference.get_weights())
    return reference, projected


@pytest.mark.backend
@pytest.mark.parametrize("return_sequences", [True, False])
def test_outputs_match_keras_gru(return_sequences):
    reference, projected = twin_models(return_sequences)
    np.testing.assert_allclose(
        ops.convert_to_numpy(projected(INPUTS)),
        ops.convert_to_numpy(reference(INPUTS)),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.backend
def test_one_training_step_moves_the_weights_as_keras_gru():
    reference, projected = twin_models()
    before = reference.get_weights()
    targets = RNG.normal(size=(3, 7, 4)).astype("float32")
    for model in (reference, projected):
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        model.train_on_batch(INPUTS, targets)
    for after, expected in zip(projected.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-6)
    # The step changed the weights: the comparison is not between two untouched copies.
    assert not any(np.allclose(a, b) for a, b in zip(before, reference.get_weights(), strict=True))


@pytest.mark.backend
def test_one_product_path_runs_and_other_cases_use_keras_gru(monkeypatch):
    calls = []
    original = keras.layers.GRU.call

    # Keras reads `call`'s signature (to build the layer): keep GRU's.
    def counting_call(self, sequences, initial_state=None, mask=None, training=False):
        calls.append(type(self).__module__.split(".")[0])
        return original(self, sequences, initial_state, mask, training)

    monkeypatch.setattr(keras.layers.GRU, "call", counting_call)
    reference, projected = twin_models()
    projected(INPUTS)
    assert calls == []
    # Backwards and masked runs fall back to Keras' loop and still agree with it.
    for kwargs in ({"go_backwards": True}, {"return_state": True}):
        reference, projected = twin_models(**kwargs)
        calls.clear()
        expected, got = reference(INPUTS), projected(INPUTS)
        assert calls == ["keras", "keras_aerec"]
        np.testing.assert_allclose(
            ops.convert_to_numpy(keras.tree.flatten(got)[0]),
            ops.convert_to_numpy(keras.tree.flatten(expected)[0]),
            rtol=1e-5,
            atol=1e-6,
        )
    ids = np.array([[3, 1, 0, 0], [2, 2, 2, 1]], dtype="int32")
    embedding = keras.layers.Embedding(4, 5, mask_zero=True)
    calls.clear()
    GRU(4)(embedding(ids))
    assert calls == ["keras_aerec"]


@pytest.mark.backend
def test_saved_file_reloads_and_keras_gru_weights_load(tmp_path):
    reference, projected = twin_models()
    assert [w.path for w in projected.weights] == [w.path for w in reference.weights]
    path = tmp_path / "projected.keras"
    projected.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.get_layer("gru"), GRU)
    np.testing.assert_allclose(
        ops.convert_to_numpy(reloaded(INPUTS)), ops.convert_to_numpy(reference(INPUTS)), atol=1e-6
    )
    # Weight files (and checkpoints) of either class load into the other.
    for source, target in ((reference, 1), (projected, 0)):
        source.save_weights(tmp_path / "twin.weights.h5")
        fresh = twin_models()[target]
        fresh.load_weights(tmp_path / "twin.weights.h5")
        np.testing.assert_allclose(
            ops.convert_to_numpy(fresh(INPUTS)), ops.convert_to_numpy(source(INPUTS)), atol=1e-6
        )
