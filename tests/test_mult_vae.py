"""`MultVAE`: deterministic inference, its objective, annealing under fit, saving."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp
from keras import ops

from keras_aerec.data.batching import RowBatches
from keras_aerec.layers.sampling import gaussian_kl
from keras_aerec.losses.multinomial import multinomial_nll
from keras_aerec.models.mult_vae import MultVAE

NUM_ITEMS = 12


def rows(num_rows=40, seed=0):
    matrix = sp.random(num_rows, NUM_ITEMS, density=0.3, format="csr", random_state=seed)
    matrix.data[:] = 1.0
    return matrix.astype("float32")


def small_model(**kwargs):
    defaults = {"hidden_dims": (8,), "latent_dim": 4, "seed": 0}
    return MultVAE(NUM_ITEMS, **{**defaults, **kwargs})


def posterior(model, x):
    encoder = keras.Model(
        model.input, [model.get_layer("z_mean").output, model.get_layer("z_log_var").output]
    )
    return encoder.predict_on_batch(x)


def decode(model, z):
    latent = keras.Input(shape=(z.shape[1],))
    logits = model.get_layer("logits")(model.get_layer("decoder_0")(latent))
    return keras.Model(latent, logits).predict_on_batch(z)


@pytest.mark.backend
def test_inference_is_deterministic_and_decodes_the_posterior_mean():
    model = small_model()
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    x = rows().toarray()
    scores = model.score(x)
    np.testing.assert_array_equal(scores, model.score(x))
    mean, _ = posterior(model, x)
    np.testing.assert_allclose(scores, decode(model, mean), rtol=1e-5, atol=1e-5)
    sampled = ops.convert_to_numpy(model(x, training=True))
    assert not np.allclose(sampled, scores)


@pytest.mark.backend
def test_objective_is_multinomial_nll_plus_beta_kl_plus_l2():
    model = small_model(dropout=0.0, anneal_cap=0.5, total_anneal_steps=0, l2=0.01)
    x = rows().toarray()
    mean, log_var = posterior(model, x)
    logits = model(x, training=True)
    loss = float(ops.convert_to_numpy(model.compute_loss(x=x, y_pred=logits)))
    nll = np.mean(ops.convert_to_numpy(multinomial_nll(x, logits)))
    kl = np.mean(ops.convert_to_numpy(gaussian_kl(mean, log_var)))
    l2 = 0.01 * sum(
        np.sum(np.square(ops.convert_to_numpy(layer.kernel)))
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    )
    np.testing.assert_allclose(loss, nll + 0.5 * kl + l2, rtol=1e-5)


@pytest.mark.backend
def test_fit_counts_updates_for_the_kl_annealing():
    model = small_model(total_anneal_steps=20, anneal_cap=0.2)
    model.compile(optimizer="adam")
    history = model.fit(RowBatches(rows(), batch_size=10, seed=0), epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    sampling = model.get_layer("sampling")
    assert float(ops.convert_to_numpy(sampling.anneal_step)) == 12.0
    np.testing.assert_allclose(float(ops.convert_to_numpy(sampling.kl_weight())), 0.2)


@pytest.mark.backend
def test_save_and_load_give_identical_scores(tmp_path):
    model = small_model(item_ids=[f"item{i}" for i in range(NUM_ITEMS)])
    model.compile(optimizer="adam")
    model.fit(RowBatches(rows(), batch_size=10, seed=0), epochs=1, verbose=0)
    path = tmp_path / "mult_vae.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, MultVAE)
    x = rows(seed=1)
    np.testing.assert_array_equal(restored.score(x), model.score(x))
    np.testing.assert_array_equal(restored.recommend(x, k=3)[0], model.recommend(x, k=3)[0])
    anneal_step = restored.get_layer("sampling").anneal_step
    assert float(ops.convert_to_numpy(anneal_step)) == 4.0


@pytest.mark.backend
def test_config_round_trip():
    model = small_model(item_ids=np.arange(NUM_ITEMS) * 10, total_anneal_steps=5, l2=0.1)
    config = model.get_config()
    assert config["item_ids"] == list(range(0, 10 * NUM_ITEMS, 10))
    assert MultVAE.from_config(config).get_config() == config
    assert small_model().get_config()["item_ids"] is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dropout": 1.0}, "dropout"),
        ({"hidden_dims": (8, 0)}, "hidden_dims"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"l2": -1.0}, "l2"),
        ({"item_ids": [1, 2]}, "item_ids"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model(**kwargs)
