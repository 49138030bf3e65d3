"""`MultDAE`: architecture, objective, deterministic inference, saving."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp
from keras import ops

from keras_aerec.data.batching import RowBatches
from keras_aerec.losses.multinomial import multinomial_nll
from keras_aerec.models.mult_dae import MultDAE

NUM_ITEMS = 12


def rows(num_rows=40, seed=0):
    matrix = sp.random(num_rows, NUM_ITEMS, density=0.3, format="csr", random_state=seed)
    matrix.data[:] = 1.0
    return matrix.astype("float32")


@pytest.mark.backend
def test_layers_mirror_the_encoder():
    model = MultDAE(NUM_ITEMS, hidden_dims=(10, 8), latent_dim=4)
    widths = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert widths == [10, 8, 4, 8, 10, NUM_ITEMS]
    shallow = MultDAE(NUM_ITEMS, hidden_dims=(), latent_dim=4)
    assert [layer.name for layer in shallow.layers][-2:] == ["code", "logits"]


@pytest.mark.backend
def test_objective_is_multinomial_nll_plus_l2_and_inference_is_deterministic():
    model = MultDAE(NUM_ITEMS, hidden_dims=(8,), latent_dim=4, l2=0.01, seed=0)
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    x = rows().toarray()
    logits = model(x, training=True)
    loss = float(ops.convert_to_numpy(model.compute_loss(x=x, y_pred=logits)))
    nll = np.mean(ops.convert_to_numpy(multinomial_nll(x, logits)))
    l2 = 0.01 * sum(
        np.sum(np.square(ops.convert_to_numpy(layer.kernel)))
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    )
    np.testing.assert_allclose(loss, nll + l2, rtol=1e-5)
    np.testing.assert_array_equal(model.score(x), model.score(x))
    assert not np.allclose(ops.convert_to_numpy(logits), model.score(x))


@pytest.mark.backend
def test_targets_from_the_data_replace_the_input():
    model = MultDAE(NUM_ITEMS, hidden_dims=(), latent_dim=4, l2=0.0, seed=0)
    x, y = rows().toarray(), rows(seed=3).toarray()
    logits = model(x, training=False)
    loss = float(ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=logits)))
    np.testing.assert_allclose(
        loss, np.mean(ops.convert_to_numpy(multinomial_nll(y, logits))), rtol=1e-5
    )


@pytest.mark.backend
def test_save_and_load_give_identical_scores(tmp_path):
    model = MultDAE(NUM_ITEMS, hidden_dims=(8,), latent_dim=4, seed=0, item_ids=np.arange(12) + 1)
    model.compile(optimizer="adam")
    model.fit(RowBatches(rows(), y="x", batch_size=10, seed=0), epochs=2, verbose=0)
    path = tmp_path / "mult_dae.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, MultDAE)
    assert restored.get_config() == model.get_config()
    x = rows(seed=1)
    np.testing.assert_array_equal(restored.score(x), model.score(x))
    np.testing.assert_array_equal(restored.recommend(x, k=3)[0], model.recommend(x, k=3)[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"dropout": -0.1}, "dropout"), ({"hidden_dims": 5}, "hidden_dims"), ({"l2": "x"}, "l2")],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultDAE(NUM_ITEMS, **kwargs)
