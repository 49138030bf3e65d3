"""`EASE`: closed form against a direct inverse, memory refusal, fallback, saving."""

import logging

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.models import ease as ease_module
from keras_aerec.models.ease import EASE

NUM_ITEMS = 8


def rows(num_rows=25, seed=0):
    matrix = sp.random(num_rows, NUM_ITEMS, density=0.4, format="csr", random_state=seed)
    matrix.data[:] = 1.0
    return matrix.astype("float32")


def direct_weights(x, l2):
    precision = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


@pytest.mark.backend
def test_weights_match_the_direct_inverse_and_have_a_zero_diagonal():
    x = rows()
    model = EASE(NUM_ITEMS, l2=3.0).fit(x)
    weights = np.asarray(keras.ops.convert_to_numpy(model.get_layer("item_weights").kernel))
    expected = direct_weights(x.toarray().astype("float64"), 3.0)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    float64 = ease_module.closed_form_weights(sp.csr_matrix(x, dtype="float64"), 3.0)
    np.testing.assert_allclose(float64, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(model.score(x), x.toarray() @ expected, rtol=1e-5, atol=1e-6)
    assert not model.trainable_weights


@pytest.mark.backend
def test_fit_is_a_closed_form_that_ignores_keras_fit_arguments(caplog):
    model = EASE(NUM_ITEMS, l2=3.0)
    with caplog.at_level(logging.WARNING, logger="keras_aerec"):
        assert model.fit(rows(), epochs=10, batch_size=4) is model
    assert "ignoring ['batch_size', 'epochs']" in caplog.text
    refit = model.fit(rows(seed=2).toarray())
    np.testing.assert_allclose(
        refit.score(rows()), EASE(NUM_ITEMS, l2=3.0).fit(rows(seed=2)).score(rows()), rtol=1e-6
    )


@pytest.mark.backend
def test_rows_without_interactions_are_ranked_by_popularity():
    x = rows()
    model = EASE(NUM_ITEMS, l2=3.0).fit(x)
    scores = model.score(np.zeros((2, NUM_ITEMS)))
    popularity = np.asarray((x != 0).sum(axis=0)).ravel() / x.shape[0]
    np.testing.assert_allclose(scores, np.tile(popularity, (2, 1)), rtol=1e-6)
    assert not np.allclose(model.score(np.eye(NUM_ITEMS)[:1]), popularity)


def test_refuses_catalogues_whose_gram_matrix_does_not_fit(monkeypatch):
    with pytest.raises(ValueError, match=r"EASE needs \d+\.\d GiB .* num_items=10000000"):
        EASE(num_items=10_000_000)
    model = EASE(NUM_ITEMS)
    monkeypatch.setattr(ease_module, "available_memory_bytes", lambda: 100)
    with pytest.raises(ValueError, match="more than the 0.0 GiB of available memory"):
        model.fit(rows())


@pytest.mark.backend
def test_save_and_load_give_identical_scores(tmp_path):
    model = EASE(NUM_ITEMS, l2=2.0, item_ids=np.arange(NUM_ITEMS) + 1000).fit(rows())
    path = tmp_path / "ease.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, EASE)
    assert restored.get_config() == model.get_config()
    x = rows(6, seed=4)
    np.testing.assert_array_equal(restored.score(x), model.score(x))
    np.testing.assert_array_equal(restored.recommend(x, k=3)[0], model.recommend(x, k=3)[0])
    np.testing.assert_array_equal(
        restored.score(np.zeros((1, NUM_ITEMS))), model.score(np.zeros((1, NUM_ITEMS)))
    )


@pytest.mark.parametrize("l2", [0, -1.0, "500", True])
def test_rejects_a_non_positive_l2(l2):
    with pytest.raises(ValueError, match="`l2` should be a positive float"):
        EASE(NUM_ITEMS, l2=l2)


def test_large_catalogue_refusal_names_the_bytes_and_max_items(monkeypatch):
    monkeypatch.setattr(ease_module, "available_memory_bytes", lambda: 24 * 2**30)
    with pytest.raises(ValueError, match=r"120,000,000,000 bytes.*`max_items`"):
        EASE(num_items=100_000)
    model = EASE(num_items=100_000, max_items=20_000)
    assert model.get_config()["max_items"] == 20_000


@pytest.mark.backend
def test_max_items_keeps_the_most_popular_items_and_scores_the_others_minus_inf(tmp_path):
    x = rows(40, seed=1)
    popularity = np.asarray((x != 0).sum(axis=0)).ravel()
    kept = np.sort(np.argsort(-popularity, kind="stable")[:5])
    model = EASE(NUM_ITEMS, l2=2.0, max_items=5).fit(x)
    scores = model.score(x[:6])
    unkept = np.setdiff1d(np.arange(NUM_ITEMS), kept)
    assert np.all(np.isneginf(scores[:, unkept]))
    full = x[:6].toarray()[:, kept] @ direct_weights(x.toarray()[:, kept], 2.0)
    np.testing.assert_allclose(scores[:, kept], full, rtol=1e-4, atol=1e-6)
    # -1 pads the lists of rows with fewer than k unseen kept items.
    assert set(model.recommend(x[:6], k=2)[0].ravel()) - {-1} <= set(kept)
    path = tmp_path / "ease.keras"
    model.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path).score(x[:6]), scores)
