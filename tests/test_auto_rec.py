import re
import warnings

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.data.batching import RowBatches
from keras_aerec.data.splits import rating_holdout
from keras_aerec.data.synthetic import synthetic
from keras_aerec.evaluation.rating import evaluate_rating
from keras_aerec.models.auto_rec import AutoRec

# 3 users x 4 items; user 2 and item 3 have no rating.
RATINGS = sp.csr_matrix(
    np.array([[5.0, 0.0, 3.0, 0.0], [0.0, 4.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]], "float32")
)
USER_IDS = np.array([10, 20, 30])
ITEM_IDS = np.array(["a", "b", "c", "d"])


def tiny_model(variant="item", **kwargs):
    num_inputs = 3 if variant == "item" else 4
    kwargs.setdefault("hidden_units", 2)
    return AutoRec(num_inputs, variant=variant, user_ids=USER_IDS, item_ids=ITEM_IDS, **kwargs)


@pytest.mark.backend
def test_forward_shapes_and_score():
    model = tiny_model("user", l2=0.5)
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    assert model(np.zeros((5, 4), "float32")).shape == (5, 4)
    assert model.score(RATINGS).shape == (3, 4)
    assert model.rating_rows(RATINGS).shape == (3, 4)
    assert tiny_model("item").rating_rows(RATINGS).shape == (4, 3)


@pytest.mark.backend
@pytest.mark.parametrize("num_rows", [None, 10])
def test_loss_matches_hand_computation(num_rows):
    model = AutoRec(4, hidden_units=2, l2=0.7, variant="user", num_rows=num_rows)
    x = RATINGS.toarray()[:2]
    y_pred = np.asarray(model.predict_on_batch(x))
    # Entries without a rating must not count, whatever the prediction there.
    y_pred_noisy = np.where(x != 0, y_pred, 1e6).astype("float32")
    squared = np.sum(np.where(x != 0, (x - y_pred) ** 2, 0.0))
    penalty = sum(
        np.sum(keras.ops.convert_to_numpy(w) ** 2) for w in model.weights if "kernel" in w.path
    )
    if num_rows is None:  # the article's cost: batch sum + lambda/2 ||W||^2
        expected = squared + 0.5 * 0.7 * penalty
    else:  # the paper's objective / num_rows, estimated on the batch
        expected = squared / 2 + 0.5 * 0.7 / num_rows * penalty
    loss = model.compute_loss(x=x, y=x, y_pred=y_pred_noisy, training=True)
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.backend
@pytest.mark.parametrize("variant", ["item", "user"])
def test_training_beats_global_mean(variant):
    data = synthetic(num_users=120, num_items=80, density=0.15, seed=0)
    split = rating_holdout(data, test=0.1, validation=0.1, seed=0)
    num_inputs, num_rows = (120, 80) if variant == "item" else (80, 120)
    model = AutoRec(num_inputs, hidden_units=24, l2=1.0, variant=variant, num_rows=num_rows)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    rows = model.rating_rows(split.train)
    model.fit(RowBatches(rows, y="x", batch_size=16, seed=0), epochs=20, verbose=0)
    targets = model.rating_rows(split.validation)
    rmse = evaluate_rating(model, rows, targets)["rmse"]
    baseline = evaluate_rating(
        lambda batch: np.full(batch.shape, split.train.data.mean()), rows, targets
    )
    assert rmse < baseline["rmse"] - 0.02


@pytest.mark.backend
@pytest.mark.parametrize("variant", ["item", "user"])
def test_save_load_gives_identical_predictions(tmp_path, variant):
    model = tiny_model(variant, l2=2.0, num_rows=4 if variant == "item" else 3)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3, clipvalue=5.0))
    rows = model.rating_rows(RATINGS)
    model.fit(RowBatches(rows, y="x", batch_size=2, seed=0), epochs=2, verbose=0)
    path = tmp_path / "auto_rec.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, AutoRec)
    np.testing.assert_array_equal(loaded.score(rows), model.score(rows))
    pairs = ([10, 20], ["c", "b"])
    np.testing.assert_array_equal(
        loaded.predict_ratings(*pairs, RATINGS), model.predict_ratings(*pairs, RATINGS)
    )


def test_config_round_trip():
    model = tiny_model("user", l2=3.0, num_rows=3, rating_range=(0.5, 5), default_rating="mean")
    config = model.get_config()
    for argument in (
        "num_inputs",
        "hidden_units",
        "l2",
        "variant",
        "num_rows",
        "rating_range",
        "default_rating",
        "user_ids",
        "item_ids",
    ):
        assert argument in config
    clone = AutoRec.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert restored.get_config() == config


@pytest.mark.backend
@pytest.mark.parametrize("variant", ["item", "user"])
def test_predict_ratings_in_original_ids(variant):
    model = tiny_model(variant, default_rating=3.0)
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    users = np.array([20, 10, 30, 10])
    items = np.array(["c", "b", "a", "d"])  # user 30 and item "d" are unseen
    predictions = model.predict_ratings(users, items, RATINGS)
    reconstructed = model.score(model.rating_rows(RATINGS))
    if variant == "item":  # rows are items, columns users
        expected = [reconstructed[2, 1], reconstructed[1, 0]]
    else:
        expected = [reconstructed[1, 2], reconstructed[0, 1]]
    np.testing.assert_allclose(predictions[:2], np.clip(expected, 1, 5), rtol=1e-6)
    np.testing.assert_array_equal(predictions[2:], [3.0, 3.0])
    one_row_at_a_time = model.predict_ratings(users, items, RATINGS, batch_size=1)
    np.testing.assert_allclose(one_row_at_a_time, predictions, rtol=1e-6)
    mean_model = tiny_model(variant, default_rating="mean")
    mean_model.set_weights(mean_model.get_weights())
    assert mean_model.predict_ratings([30], ["a"], RATINGS)[0] == pytest.approx(13 / 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"hidden_units": 0},
            "`hidden_units` should be a positive integer. Received: hidden_units=0",
        ),
        ({"variant": "both"}, "`variant` should be one of"),
        ({"l2": -1.0}, "`l2` should be a finite non-negative number"),
        ({"rating_range": (5, 1)}, "`rating_range` should be (min, max)"),
        ({"default_rating": "median"}, '`default_rating` should be a number or "mean"'),
        ({"num_rows": 7}, "`num_rows` should equal the number of items"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_model(**kwargs)


@pytest.mark.backend
def test_bad_inputs():
    model = tiny_model("item")
    model.compile()
    wide = sp.csr_matrix(np.ones((4, 5), "float32"))
    with pytest.raises(
        ValueError, match=r"`ratings` should have 3 users .*Received: ratings.shape=\(5, 4\)"
    ):
        model.rating_rows(wide.T)
    with pytest.raises(ValueError, match=r"`rows` should have 3 columns"):
        model.score(wide)
    with pytest.raises(ValueError, match=r"`x` should have 3 columns"):
        model.fit(RowBatches(wide, y="x", batch_size=2), epochs=1, verbose=0)
    out_of_range = RATINGS.copy()
    out_of_range.data[0] = 6.0
    with pytest.raises(ValueError, match=r"ratings in `rating_range`=\[1, 5\].*\[1, 6\]"):
        model.rating_rows(out_of_range)
    with pytest.raises(ValueError, match=r"`targets of x` should hold ratings in `rating_range`"):
        model.fit(RowBatches(model.rating_rows(RATINGS), y=out_of_range.T.tocsr()), verbose=0)
    with_nan = RATINGS.copy()
    with_nan.data[1] = np.nan
    with pytest.raises(ValueError, match="should not contain NaN"):
        model.predict_ratings([10], ["a"], with_nan)
    with pytest.raises(
        ValueError, match=r"`user_ids` should only hold ids the model knows. Received 1 unknown: 99"
    ):
        model.predict_ratings([10, 99], ["a", "b"], RATINGS)
    with pytest.raises(ValueError, match=r"`item_ids` should only hold ids the model knows.*'z'"):
        model.predict_ratings([10], ["z"], RATINGS)
    with pytest.raises(ValueError, match="`loss` should not be passed"):
        model.compile(loss="mse")


@pytest.mark.backend
def test_compiles_with_xla_by_default_on_tensorflow_only():
    # Keras' "auto" turns XLA off on TensorFlow without an accelerator, where it trains the
    # rating models ~1.6x faster (RatingAutoencoder.compile); an explicit choice is kept.
    model = AutoRec(num_inputs=8, hidden_units=4, num_rows=5)
    model.compile()
    assert model.jit_compile is (keras.backend.backend() != "torch")
    model.compile(jit_compile=False)
    assert model.jit_compile is False
    # Eager runs compile nothing: no XLA default, so no Keras warning about the pair.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(run_eagerly=True)
    assert model.jit_compile is False and model.run_eagerly
