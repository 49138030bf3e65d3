"""The shared top-N contract: score(), recommend(), input validation, and learning."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.data.batching import RowBatches
from keras_aerec.data.splits import weak_generalization
from keras_aerec.data.synthetic import synthetic
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.models.cdae import CDAE
from keras_aerec.models.ease import EASE
from keras_aerec.models.mult_dae import MultDAE
from keras_aerec.models.mult_vae import MultVAE
from keras_aerec.models.recommender import TopNRecommender
from keras_aerec.validation import check_item_ids

NUM_ITEMS = 6
WEIGHTS = np.arange(NUM_ITEMS * NUM_ITEMS, dtype="float32").reshape(NUM_ITEMS, NUM_ITEMS) % 7
BIAS = np.linspace(0.0, 0.5, NUM_ITEMS, dtype="float32")
ROWS = np.array(
    [
        [1, 0, 0, 1, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
    ],
    dtype="float32",
)


class LinearScores(TopNRecommender, keras.Model):
    """Test double: scores are `x @ WEIGHTS + BIAS`."""

    def __init__(self, item_ids=None, **kwargs):
        inputs = keras.Input(shape=(NUM_ITEMS,))
        # Fixed weights (not trainable): the untrained-model guard does not apply.
        layer = keras.layers.Dense(NUM_ITEMS, trainable=False, name="scores")
        outputs = layer(inputs)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        layer.set_weights([WEIGHTS, BIAS])
        self.num_items = NUM_ITEMS
        self.item_ids = check_item_ids(item_ids, NUM_ITEMS)


def expected_scores(rows):
    return rows @ WEIGHTS + BIAS


@pytest.mark.backend
def test_score_is_row_aligned_for_csr_dense_and_batches():
    model = LinearScores()
    expected = expected_scores(ROWS)
    np.testing.assert_allclose(model.score(ROWS), expected, rtol=1e-6)
    np.testing.assert_allclose(model.score(sp.csr_matrix(ROWS)), expected, rtol=1e-6)
    np.testing.assert_allclose(model.score(sp.coo_matrix(ROWS), batch_size=3), expected, rtol=1e-6)
    np.testing.assert_allclose(model.score(ROWS[1]), expected[1:2], rtol=1e-6)
    assert model.score(ROWS).dtype == np.float32


@pytest.mark.backend
def test_recommend_excludes_seen_items_and_returns_original_ids():
    item_ids = np.array([101, 102, 103, 104, 105, 106])
    model = LinearScores(item_ids=item_ids)
    ids, scores = model.recommend(sp.csr_matrix(ROWS[:3]), k=2)
    masked = np.where(ROWS[:3] != 0, -np.inf, expected_scores(ROWS[:3]))
    best = np.argsort(-masked, axis=1, kind="stable")[:, :2]
    np.testing.assert_array_equal(ids, item_ids[best])
    np.testing.assert_allclose(scores, np.take_along_axis(masked, best, axis=1), rtol=1e-6)
    for row, row_ids in zip(ROWS[:3], ids, strict=True):
        assert not set(item_ids[row != 0]) & set(row_ids)


@pytest.mark.backend
def test_recommend_csr_and_dense_identical_and_keeps_seen_on_request():
    model = LinearScores(item_ids=["a", "b", "c", "d", "e", "f"])
    dense = model.recommend(ROWS, k=3, exclude_seen=False)
    sparse = model.recommend(sp.csr_matrix(ROWS), k=3, exclude_seen=False, batch_size=1)
    np.testing.assert_array_equal(dense[0], sparse[0])
    np.testing.assert_array_equal(dense[1], sparse[1])
    best = np.argsort(-expected_scores(ROWS), axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(dense[0], np.array(list("abcdef"))[best])


@pytest.mark.backend
def test_recommend_marks_missing_positions_when_too_few_unseen_items():
    ids, scores = LinearScores().recommend(ROWS[3:], k=4)
    assert set(ids[0, :2]) == {4, 5}
    np.testing.assert_array_equal(ids[0, 2:], [-1, -1])
    assert np.all(np.isneginf(scores[0, 2:])) and np.all(np.isfinite(scores[0, :2]))
    ids, _ = LinearScores(item_ids=list("abcdef")).recommend(ROWS[3:], k=4)
    assert ids[0, 3] is None


@pytest.mark.backend
@pytest.mark.parametrize("k", [0, -1, NUM_ITEMS + 1, 2.0, True, None])
def test_recommend_rejects_bad_k(k):
    with pytest.raises(ValueError, match="`k` should be an integer between 1 and"):
        LinearScores().recommend(ROWS, k=k)


@pytest.mark.backend
def test_bad_inputs_raise_clear_errors():
    model = LinearScores()
    with pytest.raises(ValueError, match="should have 6 columns"):
        model.score(np.ones((2, 5)))
    with pytest.raises(ValueError, match="should have 6 columns"):
        model.recommend(sp.csr_matrix(np.ones((2, 7))))
    with pytest.raises(ValueError, match="NaN"):
        model.score(np.where(ROWS == 1, np.nan, 0.0))
    with pytest.raises(ValueError, match="NaN"):
        model.recommend(sp.csr_matrix(np.array([[np.inf, 0, 0, 0, 0, 0]])))
    with pytest.raises(ValueError, match="2D matrix"):
        model.score(np.ones((1, 2, 6)))
    with pytest.raises(ValueError, match="`users` should be a 1D integer array"):
        model.score(ROWS, users=np.arange(3))
    with pytest.raises(ValueError, match="`item_ids` should be"):
        LinearScores(item_ids=[1, 2, 3])


def synthetic_split():
    data = synthetic(400, 80, density=0.25, seed=0, preference_strength=3.0).to_implicit(3.0)
    return weak_generalization(data, test=0.2, seed=0)


def build(name, train):
    num_users, num_items = train.shape
    if name == "ease":
        return EASE(num_items, l2=50.0).fit(train), None
    if name == "cdae":
        model = CDAE(num_users, num_items, hidden_dim=16, seed=0)
    elif name == "multvae":
        model = MultVAE(num_items, hidden_dims=(32,), latent_dim=16, total_anneal_steps=100, seed=0)
    else:
        model = MultDAE(num_items, hidden_dims=(32,), latent_dim=16, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    batches = RowBatches(train, batch_size=100, seed=0, user_index=name == "cdae")
    return model, batches


@pytest.mark.backend
@pytest.mark.parametrize("name", ["ease", "cdae", "multvae", "multdae"])
def test_training_beats_popularity_and_random(name):
    split = synthetic_split()
    popularity = np.asarray((split.train != 0).sum(axis=0), dtype="float32")
    ndcg = {}
    for baseline, scores in {
        "popularity": lambda rows, users=None: np.repeat(popularity, rows.shape[0], axis=0),
        "random": lambda rows, users=None: np.random.default_rng(0).random(rows.shape),
    }.items():
        ndcg[baseline] = evaluate_ranking(scores, split.test, ks=(10,))["ndcg@10"]
    model, batches = build(name, split.train)
    if batches is not None:
        model.fit(batches, epochs=20, verbose=0)
    ndcg[name] = evaluate_ranking(model, split.test, ks=(10,))["ndcg@10"]
    assert ndcg[name] > ndcg["popularity"] + 0.03 > ndcg["random"] + 0.03, ndcg


@pytest.mark.backend
@pytest.mark.parametrize("name", ["ease", "cdae", "multvae", "multdae"])
def test_all_zero_row_gets_finite_scores(name):
    train = sp.csr_matrix((np.random.default_rng(0).random((20, 8)) < 0.3).astype("float32"))
    model, batches = build(name, train)
    if batches is not None:
        model.fit(batches, epochs=1, verbose=0)
    zero = np.zeros((2, 8), dtype="float32")
    assert np.all(np.isfinite(model.score(zero)))
    ids, scores = model.recommend(zero, k=8)
    assert np.all(np.isfinite(scores))
    np.testing.assert_array_equal(np.sort(ids, axis=1), np.tile(np.arange(8), (2, 1)))


@pytest.mark.backend
def test_jax_fit_never_runs_more_than_four_steps_ahead():
    # Without the bound, Keras' JAX loop queued a whole epoch of steps, each holding its
    # dense batch: Mult-VAE's peak on 17,000 items went from 1.15 GB to 2.27 GB.
    from keras_aerec.models.recommender import StepByStep, with_step_by_step

    class InFlight(keras.callbacks.Callback):
        async_safe = True  # keeps Keras' loop asynchronous, as with the default callbacks

        def __init__(self):
            super().__init__()
            self.begun, self.ended, self.most = 0, 0, 0

        def on_train_batch_begin(self, batch, logs=None):
            self.begun += 1
            self.most = max(self.most, self.begun - self.ended)

        def on_train_batch_end(self, batch, logs=None):
            self.ended += 1

    probe = InFlight()
    callbacks = with_step_by_step([probe])
    if keras.backend.backend() != "jax":
        assert callbacks == [probe]  # TensorFlow and torch finish each step before the next
        return
    assert [type(c) for c in callbacks] == [InFlight, StepByStep]
    assert with_step_by_step(callbacks) == callbacks  # never two bounds
    # Steps long enough (~10 ms) for Python to run ahead of them when nothing stops it.
    x = sp.random(32 * 64, 4000, density=0.01, format="csr", dtype="float32", random_state=0)
    model = MultVAE(4000, hidden_dims=(512,), latent_dim=8, seed=0)
    model.compile(optimizer="adam")
    # The probe after the bound counts a step once the bound has let it start.
    model.fit(x, batch_size=64, epochs=1, verbose=0, callbacks=[callbacks[1], probe])
    assert probe.begun == 32 and 1 <= probe.most <= 4
    bound = StepByStep(in_flight=4)
    assert [bound._slots.acquire(blocking=False) for _ in range(5)] == [True] * 4 + [False]
