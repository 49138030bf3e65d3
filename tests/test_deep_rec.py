import re

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.data.batching import RowBatches
from keras_aerec.data.splits import rating_holdout
from keras_aerec.data.synthetic import synthetic
from keras_aerec.evaluation.rating import evaluate_rating
from keras_aerec.losses.masked_mse import MaskedMSE
from keras_aerec.models.deep_rec import DeepRec

# 3 users x 5 items; user 2 and item 4 have no rating.
RATINGS = sp.csr_matrix(
    np.array(
        [[5, 0, 3, 1, 0], [0, 4, 1, 0, 0], [0, 0, 0, 0, 0]],
        "float32",
    )
)
SIDE = np.eye(3, 2, dtype="float32")  # two side features per user


def small_model(**kwargs):
    kwargs.setdefault("hidden_units", (6, 4))
    kwargs.setdefault("dropout", 0.0)
    return DeepRec(5, **kwargs)


def numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


@pytest.mark.backend
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("side", [0, 2])
def test_forward_shapes(tied, side):
    model = small_model(tied=tied, side_information_size=side)
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    assert model(np.zeros((7, 5 + side), "float32")).shape == (7, 5)
    rows = model.rating_rows(RATINGS, SIDE if side else None)
    assert rows.shape == (3, 5 + side)
    assert model.score(rows).shape == (3, 5)
    kernels = [w for w in model.weights if w.path.endswith("kernel")]
    assert len(kernels) == (2 if tied else 4)  # a tied decoder owns no kernel


@pytest.mark.backend
@pytest.mark.parametrize("tied", [False, True])
def test_loss_matches_hand_computation_and_refeeding_adds_a_dense_term(tied):
    x = RATINGS.toarray()[:2]
    model = small_model(tied=tied, l2=0.01, refeeds=0)
    y_pred = numpy(model.predict_on_batch(x))
    observed = x != 0
    masked_mse = np.sum(np.where(observed, (x - y_pred) ** 2, 0.0)) / observed.sum()
    penalty = sum(np.sum(numpy(w) ** 2) for w in model.weights if w.path.endswith("kernel"))
    noisy = np.where(observed, y_pred, 1e6).astype("float32")  # missing entries are ignored
    loss = numpy(model.compute_loss(x=x, y=x, y_pred=noisy, training=True))
    assert float(loss) == pytest.approx(masked_mse + 0.01 * penalty, rel=1e-5)

    # Same weights, re-feeding on: one dense term mean((f(f(x)) - f(x))^2) per re-feed.
    refed = small_model(tied=tied, l2=0.01, refeeds=2)
    refed.set_weights(model.get_weights())
    once = numpy(model.predict_on_batch(y_pred))
    twice = numpy(model.predict_on_batch(once))
    expected = (
        masked_mse + 0.01 * penalty + np.mean((once - y_pred) ** 2) + np.mean((twice - once) ** 2)
    )
    loss = numpy(refed.compute_loss(x=x, y=x, y_pred=y_pred, training=True))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(loss) > masked_mse + 0.01 * penalty
    # No re-feeding outside training (validation loss).
    loss = numpy(refed.compute_loss(x=x, y=x, y_pred=y_pred, training=False))
    assert float(loss) == pytest.approx(masked_mse + 0.01 * penalty, rel=1e-5)


@pytest.mark.backend
def test_training_with_refeeding_beats_global_mean():
    data = synthetic(num_users=300, num_items=50, density=0.3, seed=1)
    split = rating_holdout(data, test=0.1, validation=0.1, seed=1)
    model = DeepRec(50, hidden_units=(16, 8), dropout=0.5, l2=1e-3, refeeds=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    rows = model.rating_rows(split.train)
    model.fit(RowBatches(rows, y="x", batch_size=32, seed=0), epochs=12, verbose=0)
    rmse = evaluate_rating(model, rows, split.validation)["rmse"]
    mean = split.train.data.mean()
    baseline = evaluate_rating(lambda batch: np.full(batch.shape, mean), rows, split.validation)
    assert rmse < baseline["rmse"] - 0.02


@pytest.mark.backend
@pytest.mark.parametrize(
    "kwargs",
    [
        {"tied": True, "side_information_size": 2, "dropout": 0.5},
        {"variant": "item", "refeeds": 2, "l2": 1e-3},
    ],
)
def test_save_load_gives_identical_predictions(tmp_path, kwargs):
    side = SIDE if kwargs.get("side_information_size") else None
    num_inputs = 3 if kwargs.get("variant") == "item" else 5
    model = DeepRec(num_inputs, hidden_units=(6, 4), user_ids=[7, 8, 9], **kwargs)
    model.compile()
    rows = model.rating_rows(RATINGS, side)
    targets = rows[:, :num_inputs]
    model.fit(RowBatches(rows, y=targets, batch_size=2, seed=0), epochs=2, verbose=0)
    path = tmp_path / "deep_rec.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, DeepRec)
    np.testing.assert_array_equal(loaded.score(rows), model.score(rows))
    pairs = ([7, 8, 9], [0, 2, 1])
    np.testing.assert_array_equal(
        loaded.predict_ratings(*pairs, RATINGS, side), model.predict_ratings(*pairs, RATINGS, side)
    )


def test_config_round_trip():
    model = small_model(
        tied=True, refeeds=2, l2=0.5, side_information_size=2, item_ids=list("abcde")
    )
    config = model.get_config()
    for argument in (
        "num_inputs",
        "hidden_units",
        "activation",
        "dropout",
        "l2",
        "tied",
        "refeeds",
        "side_information_size",
        "variant",
        "rating_range",
        "default_rating",
        "user_ids",
        "item_ids",
    ):
        assert argument in config
    assert DeepRec.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert restored.get_config() == config


@pytest.mark.backend
def test_predict_ratings_with_side_information_and_unseen():
    model = small_model(side_information_size=2, user_ids=[7, 8, 9], item_ids=list("abcde"))
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    predictions = model.predict_ratings([8, 7, 9, 7], ["c", "b", "a", "e"], RATINGS, SIDE)
    scores = model.score(model.rating_rows(RATINGS, SIDE))
    np.testing.assert_allclose(
        predictions[:2], np.clip([scores[1, 2], scores[0, 1]], 1, 5), rtol=1e-6
    )
    np.testing.assert_array_equal(predictions[2:], [3.0, 3.0])  # user 9, item "e": unseen


def test_masked_mse_normalizations_and_serialization():
    y_true = np.array([[0.0, 3.0], [5.0, 0.0]], "float32")
    y_pred = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")  # observed errors 1 and 2
    assert float(numpy(MaskedMSE()(y_true, y_pred))) == pytest.approx(5 / 2)
    assert float(numpy(MaskedMSE("rows")(y_true, y_pred))) == pytest.approx(5 / 2)
    assert float(numpy(MaskedMSE("none")(y_true, y_pred))) == pytest.approx(5)
    three_rows = np.vstack([y_true, [[4.0, 0.0]]])
    predicted = np.vstack([y_pred, [[1.0, 9.0]]])  # one more observed error of 3
    assert float(numpy(MaskedMSE()(three_rows, predicted))) == pytest.approx(14 / 3)
    assert float(numpy(MaskedMSE("rows")(three_rows, predicted))) == pytest.approx(14 / 3)
    assert float(numpy(MaskedMSE("ratings")(three_rows[:, :1], predicted[:, :1]))) == pytest.approx(
        13 / 2
    )
    loss = keras.losses.deserialize(keras.losses.serialize(MaskedMSE("rows")))
    assert isinstance(loss, MaskedMSE) and loss.normalization == "rows"
    with pytest.raises(ValueError, match="`normalization` should be one of"):
        MaskedMSE("mean")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"hidden_units": ()},
            "`hidden_units` should be a non-empty sequence of positive integers",
        ),
        (
            {"hidden_units": (8, 0)},
            "`hidden_units` should be a positive integer. Received: hidden_units=0",
        ),
        ({"dropout": 1.0}, "`dropout` should be a float in [0, 1). Received: dropout=1.0"),
        ({"refeeds": -1}, "`refeeds` should be a non-negative integer. Received: refeeds=-1"),
        ({"side_information_size": -2}, "`side_information_size` should be a positive integer"),
        ({"activation": "nope"}, "nope"),
        ({"item_ids": [1, 2]}, "`item_ids` should hold one id per input column"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        small_model(**kwargs)


@pytest.mark.backend
def test_bad_inputs():
    model = small_model(side_information_size=2)
    with pytest.raises(ValueError, match=r"`side_information` should be a matrix with 2 columns"):
        model.rating_rows(RATINGS)
    with pytest.raises(ValueError, match=r"`side_information` should have shape \(3, 2\)"):
        model.rating_rows(RATINGS, np.ones((3, 3)))
    with pytest.raises(
        ValueError, match=r"`rows` should have 5 ratings \+ 2 side-information columns"
    ):
        model.score(RATINGS)
    with pytest.raises(ValueError, match=r"`ratings` should have 5 items"):
        model.rating_rows(RATINGS[:, :4], SIDE)
    bad_side = SIDE.copy()
    bad_side[0, 0] = np.nan
    with pytest.raises(ValueError, match="`side_information` should not contain NaN"):
        model.rating_rows(RATINGS, bad_side)
    with pytest.raises(ValueError, match=r"`ratings` should hold ratings in `rating_range`"):
        model.rating_rows(RATINGS * 2, SIDE)
