"""The Python API a Keras user meets: plain `fit` on matrices, own data, clear refusals."""

import keras
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from keras_aerec.data.interactions import Interactions
from keras_aerec.data.splits import strong_generalization, weak_generalization
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.models import CDAE, SVAE, AutoRec, DeepRec, MultDAE, MultVAE

NUM_USERS, NUM_ITEMS = 48, 20


def implicit_rows(num_rows=NUM_USERS, seed=0):
    matrix = sp.random(num_rows, NUM_ITEMS, density=0.25, format="csr", random_state=seed)
    matrix.data[:] = 1.0
    return matrix.astype("float32")


def rating_rows(num_rows, num_columns, seed=0):
    matrix = sp.random(num_rows, num_columns, density=0.3, format="csr", random_state=seed)
    matrix.data = np.ceil(matrix.data * 5).astype("float32")
    return matrix.astype("float32")


TOP_N = {
    "multvae": lambda: MultVAE(NUM_ITEMS, hidden_dims=(8,), latent_dim=4, seed=0),
    "multdae": lambda: MultDAE(NUM_ITEMS, hidden_dims=(), latent_dim=4, seed=0),
    "cdae": lambda: CDAE(NUM_USERS, NUM_ITEMS, hidden_dim=4, seed=0),
}


@pytest.mark.backend
@pytest.mark.parametrize("name", sorted(TOP_N))
def test_plain_keras_fit_evaluate_predict_on_csr_and_dense(name, tmp_path):
    x, x_val = implicit_rows(), implicit_rows(seed=1)
    model = TOP_N[name]()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    with pytest.raises(ValueError, match=r"recommend\(\)` was called before training"):
        model.recommend(x[:2], k=3)
    history = model.fit(
        x,
        batch_size=16,
        epochs=2,
        validation_data=x_val if name != "cdae" else x,
        callbacks=[keras.callbacks.History()],
        verbose=0,
    )
    assert len(history.history["loss"]) == 2 and len(history.history["val_loss"]) == 2
    dense = model.fit(x.toarray(), batch_size=16, epochs=1, validation_split=0.25, verbose=0)
    assert "val_loss" in dense.history
    assert np.isfinite(model.evaluate(x, batch_size=16, verbose=0))
    assert model.predict(x, verbose=0).shape == (NUM_USERS, NUM_ITEMS)
    ids, _ = model.recommend(x[:3], k=4)
    assert ids.shape == (3, 4)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.score(x[:3]), model.score(x[:3]), rtol=1e-5, atol=1e-6)


@pytest.mark.backend
@pytest.mark.parametrize("variant", ["item", "user"])
def test_rating_models_fit_plain_rows(variant):
    ratings = rating_rows(30, 12)
    for model in (
        AutoRec(30 if variant == "item" else 12, hidden_units=4, variant=variant),
        DeepRec(30 if variant == "item" else 12, hidden_units=(4,), variant=variant),
    ):
        model.compile()
        rows = model.rating_rows(ratings)
        history = model.fit(rows, batch_size=8, epochs=1, validation_data=rows, verbose=0)
        assert np.isfinite(history.history["val_loss"][0])
        assert model.score(rows[:2]).shape == (2, rows.shape[1])


@pytest.mark.backend
def test_cdae_named_inputs_and_rows_of_other_users():
    x = implicit_rows()
    model = TOP_N["cdae"]()
    model.compile(optimizer="adam")
    model.fit({"user_index": np.arange(NUM_USERS), "user_items": x}, epochs=1, verbose=0)
    assert np.isfinite(model.evaluate([np.arange(NUM_USERS), x], verbose=0))
    with pytest.raises(ValueError, match=r"one row per training user \(num_users=48"):
        model.fit(x[:10], epochs=1, verbose=0)
    with pytest.raises(ValueError, match='keys "user_items" and'):
        model.fit({"items": x}, epochs=1, verbose=0)


@pytest.mark.backend
def test_cdae_fold_in_fits_new_users_and_zero_steps_keeps_the_zero_vector():
    x = implicit_rows()
    model = CDAE(NUM_USERS, NUM_ITEMS, hidden_dim=4, seed=0, fold_in_steps=0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(x, batch_size=16, epochs=2, verbose=0)
    new = implicit_rows(5, seed=7)
    zero_vector = model.score(new)
    np.testing.assert_allclose(
        zero_vector, model.score(new, users=np.full(5, -1)), rtol=1e-6, atol=1e-7
    )
    model.fold_in_steps = 40
    folded = model.score(new)
    np.testing.assert_array_equal(folded, model.score(new))  # deterministic
    assert not np.allclose(folded, zero_vector)

    def loss(scores):
        probabilities = np.clip(scores, 1e-7, 1 - 1e-7)
        dense = new.toarray()
        return -np.sum(dense * np.log(probabilities) + (1 - dense) * np.log(1 - probabilities))

    assert loss(folded) < loss(zero_vector)  # the fitted vectors explain the rows better
    known = model.score(x[:3], users=np.arange(3))  # trained users keep their embedding
    model.fold_in_steps = 0
    np.testing.assert_array_equal(known, model.score(x[:3], users=np.arange(3)))


@pytest.mark.backend
def test_svae_fits_sequences_and_says_what_to_pass_for_a_matrix():
    data = Interactions.from_csr(implicit_rows(), timestamps=None)
    rng = np.random.default_rng(0)
    sequences = [rng.permutation(row.indices) for row in data.matrix]
    model = SVAE(
        NUM_ITEMS,
        item_embedding_dim=4,
        rnn_units=4,
        hidden_units=4,
        latent_dim=2,
        next_k=1,
        max_len=10,
        seed=0,
    )
    model.compile(optimizer="adam")
    history = model.fit(sequences, batch_size=16, epochs=1, validation_data=sequences, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])
    with pytest.raises(ValueError, match="trains on item sequences, not on a users x items"):
        model.fit(data.matrix, epochs=1, verbose=0)


def test_evaluate_ranking_takes_a_ranking_split_or_says_what_to_pass():
    split = weak_generalization(Interactions.from_csr(implicit_rows()), test=0.2, seed=0)
    popularity = np.asarray(split.train.sum(axis=0))

    def scores(rows, users=None):
        return np.repeat(popularity, rows.shape[0], axis=0)

    assert evaluate_ranking(scores, split, ks=(5,)) == evaluate_ranking(scores, split.test, ks=(5,))
    with pytest.raises(ValueError, match=r"e.g. `split.test` or `split.validation`"):
        evaluate_ranking(scores, split.train, ks=(5,))


def test_reprs_are_short():
    data = Interactions.from_csr(rating_rows(30, 12))
    assert repr(data) == "Interactions: 30 users x 12 items, 108 ratings"
    split = strong_generalization(data, num_heldout_users=5, positive_threshold=0.0)
    text = repr(split)
    assert text.startswith("RankingSplit(train: 20 users x") and len(text) < 400
    assert repr(split.test).startswith("HeldOutPart(5 users, ")


@pytest.mark.backend
def test_string_ids_from_a_dataframe_train_and_recommend_original_ids(tmp_path):
    rng = np.random.default_rng(0)
    users = [f"user-{u}" for u in rng.integers(0, 40, 600)]
    items = [f"track/{i}" for i in rng.integers(0, 25, 600)]
    frame = pd.DataFrame({"who": users, "what": items}).drop_duplicates()
    data = Interactions.from_dataframe(frame, user_col="who", item_col="what")
    assert data.is_implicit
    split = strong_generalization(data, num_heldout_users=5, num_validation_users=0)
    model = MultDAE(split.num_items, hidden_dims=(), latent_dim=4, item_ids=split.item_ids)
    model.compile(optimizer="adam")
    model.fit(split.train, batch_size=8, epochs=1, verbose=0)
    ids, _ = model.recommend(split.test.fold_in, k=3)
    assert ids.shape == (5, 3) and all(str(i).startswith("track/") for i in ids.ravel())
    for row, row_ids in zip(split.test.fold_in, ids, strict=True):
        assert not set(split.item_ids[row.indices]) & set(row_ids)

    path = tmp_path / "plays.csv"
    frame.assign(plays=1).to_csv(path, index=False)
    from_csv = Interactions.from_csv(path, user_col="who", item_col="what", id_dtype=str)
    assert (from_csv.matrix != data.matrix * 1.0).nnz == 0
    np.testing.assert_array_equal(from_csv.item_ids, data.item_ids)
    with pytest.raises(ValueError, match=r"`rating_col` should name a column of the header"):
        Interactions.from_csv(path, user_col="who", item_col="what", rating_col="stars")


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: MultVAE(10, l2=float("nan")), "`l2` should be a finite non-negative number"),
        (lambda: CDAE(5, 10, fold_in_steps=-1), "`fold_in_steps` should be a non-negative"),
        (lambda: MultDAE(10, hidden_dims=(0,)), "`hidden_dims` should be a sequence of positive"),
    ],
)
def test_shared_validators_refuse_bad_arguments_up_front(build, message):
    with pytest.raises(ValueError, match=message):
        build()
