"""`CDAE`: the user embedding, the new-user fallback, its losses, saving."""

import math

import keras
import numpy as np
import pytest
import scipy.sparse as sp
from keras import ops

from keras_aerec.data.batching import RowBatches
from keras_aerec.models.cdae import CDAE

NUM_USERS, NUM_ITEMS = 30, 12


def rows(num_rows=NUM_USERS, seed=0):
    matrix = sp.random(num_rows, NUM_ITEMS, density=0.3, format="csr", random_state=seed)
    matrix.data[:] = 1.0
    return matrix.astype("float32")


def given_weights(model):
    """`model` with its initial weights declared final (lifts the untrained guard)."""
    model.set_weights(model.get_weights())
    return model


def small_model(**kwargs):
    return CDAE(NUM_USERS, NUM_ITEMS, **{"hidden_dim": 4, "seed": 0, **kwargs})


@pytest.mark.backend
def test_user_embedding_moves_only_its_users_scores_and_new_users_use_zero():
    model = given_weights(small_model(fold_in_steps=0))
    embedding = np.zeros((NUM_USERS, 4), dtype="float32")
    embedding[2] = 2.0
    model.get_layer("user_embedding").set_weights([embedding])
    x = rows(3).toarray()
    known = model.score(x, users=np.array([0, 1, 2]))
    unknown = model.score(x, users=np.array([-1, -1, -1]))
    np.testing.assert_allclose(known[:2], unknown[:2], rtol=1e-6)
    assert np.abs(known[2] - unknown[2]).max() > 1e-3
    np.testing.assert_array_equal(model.score(x), unknown)
    np.testing.assert_array_equal(model.score(x, users=np.array([0, 1, 0]))[2], unknown[2])


@pytest.mark.backend
@pytest.mark.parametrize(
    "reconstruction_loss, expected",
    [
        ("binary_crossentropy", -(math.log(0.8) + math.log(0.7))),
        ("squared_error", 0.2**2 + 0.3**2),
    ],
)
def test_per_user_loss_hand_computed(reconstruction_loss, expected):
    model = CDAE(2, 2, hidden_dim=2, reconstruction_loss=reconstruction_loss, l2=0.0)
    target = np.array([[1.0, 0.0]], dtype="float32")
    y_pred = np.array([[0.8, 0.3]], dtype="float32")
    loss = model.compute_loss(x=(np.array([0]), target), y_pred=y_pred, training=False)
    np.testing.assert_allclose(float(ops.convert_to_numpy(loss)), expected, rtol=1e-5)


@pytest.mark.backend
def test_negative_sampling_keeps_positives_and_about_ratio_times_as_many_zeros():
    model = CDAE(2, 1000, hidden_dim=2, negative_sample_ratio=2, seed=0)
    target = np.zeros((40, 1000), dtype="float32")
    target[:, :50] = 1.0
    y_pred = np.full_like(target, 0.5)  # every counted entry costs ln 2
    counted = ops.convert_to_numpy(model.per_user_loss(target, y_pred, training=True))
    counted = counted / math.log(2.0)
    assert np.all(counted >= 50)
    np.testing.assert_allclose(counted.mean(), 150.0, rtol=0.05)
    full = ops.convert_to_numpy(model.per_user_loss(target, y_pred, training=False))
    np.testing.assert_allclose(full / math.log(2.0), 1000.0, rtol=1e-5)


@pytest.mark.backend
@pytest.mark.parametrize("reconstruction_loss", ["binary_crossentropy", "squared_error"])
def test_fit_with_negative_sampling(reconstruction_loss):
    model = small_model(negative_sample_ratio=1.0, reconstruction_loss=reconstruction_loss)
    model.compile(optimizer="adam")
    batches = RowBatches(rows(), batch_size=10, seed=0, user_index=True)
    history = model.fit(batches, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.backend
def test_save_and_load_give_identical_scores(tmp_path):
    model = small_model(item_ids=[f"m{i}" for i in range(NUM_ITEMS)], negative_sample_ratio=3)
    model.compile(optimizer="adam")
    model.fit(RowBatches(rows(), batch_size=10, seed=0, user_index=True), epochs=1, verbose=0)
    path = tmp_path / "cdae.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, CDAE)
    assert restored.get_config() == model.get_config()
    x, users = rows(5, seed=1), np.array([0, 4, -1, 29, 7])
    np.testing.assert_array_equal(restored.score(x, users=users), model.score(x, users=users))
    np.testing.assert_array_equal(restored.score(x), model.score(x))


@pytest.mark.backend
def test_rejects_users_without_an_embedding_row():
    with pytest.raises(ValueError, match=r"`users` should hold training-user positions"):
        given_weights(small_model()).score(rows(2), users=np.array([0, NUM_USERS]))
    with pytest.raises(ValueError, match=r"`users` should hold training-user positions"):
        given_weights(small_model()).recommend(rows(2), k=2, users=np.array([-2, 0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reconstruction_loss": "hinge"}, "reconstruction_loss"),
        ({"negative_sample_ratio": 0}, "negative_sample_ratio"),
        ({"corruption_ratio": 1.5}, "corruption_ratio"),
        ({"hidden_dim": 0}, "hidden_dim"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model(**kwargs)
