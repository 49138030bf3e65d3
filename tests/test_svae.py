"""`SVAE`: shapes, the masked next-k loss, inference from the last position, saving, training."""

import math

import keras
import numpy as np
import pytest
import scipy.sparse as sp
from keras import ops

from keras_aerec.data.sequences import (
    next_k_targets,
    pad_sequences,
    time_ordered_part,
    time_ordered_sequences,
)
from keras_aerec.data.splits import temporal
from keras_aerec.data.synthetic import synthetic
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.layers.sampling import Sampling
from keras_aerec.models.svae import SVAE, next_k_nll

NUM_ITEMS = 12
ITEM_IDS = np.arange(100, 100 + NUM_ITEMS)  # original ids differ from positions


def small_model(**kwargs):
    config = {
        "item_embedding_dim": 6,
        "rnn_units": 5,
        "hidden_units": 7,
        "latent_dim": 3,
        "next_k": 2,
        "max_len": 8,
        "item_ids": ITEM_IDS,
        "seed": 0,
        **kwargs,
    }
    return SVAE(NUM_ITEMS, **config)


def batch(sequences, length=None, next_k=2, max_len=8):
    padded, _ = pad_sequences(sequences, max_len, length=length)
    return padded, next_k_targets(padded, next_k)


def loss_of(model, x, y, training=False):
    y_pred = model(x, training=training)
    return float(ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred)))


@pytest.mark.backend
def test_output_shape_and_config_round_trip():
    model = small_model(l2=1e-4, anneal_cap=0.3, total_anneal_steps=5, likelihood_reduction="sum")
    x, _ = batch([[0, 1, 2], [3]], length=5)
    assert tuple(model(x).shape) == (2, 5, NUM_ITEMS)
    config = model.get_config()
    assert config["item_ids"] == ITEM_IDS.tolist()
    assert config["next_k"] == 2 and config["max_len"] == 8 and config["l2"] == 1e-4
    assert config["likelihood_reduction"] == "sum"
    clone = SVAE.from_config(config)
    assert clone.get_config() == config
    assert len(clone.weights) == len(model.weights)


@pytest.mark.backend
def test_next_k_nll_by_hand_and_ignores_positions_without_targets():
    targets = np.array([[[2, 3], [3, 0], [0, 0]]], dtype="int32")  # items 1, 2 then 2
    logits = np.zeros((1, 3, 4), dtype="float32")
    logits[0, 0, 1] = math.log(2.0)  # p(item 1) = 2/5 at position 0
    expected = (-(math.log(2 / 5) + math.log(1 / 5)) + math.log(4.0)) / 2
    loss = float(ops.convert_to_numpy(next_k_nll(targets, logits)))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    logits[0, 2] = np.array([9.0, -3.0, 1.0, 5.0])  # a position without targets
    np.testing.assert_allclose(float(ops.convert_to_numpy(next_k_nll(targets, logits))), loss)
    weighted = next_k_nll(np.concatenate([targets, targets]), np.concatenate([logits, logits]))
    np.testing.assert_allclose(float(ops.convert_to_numpy(weighted)), loss, rtol=1e-6)

    # "sum" (the authors'): each sequence's position losses summed and divided by k, then
    # averaged over sequences; a second sequence with one target at a uniform position.
    first = -(math.log(2 / 5) + math.log(1 / 5)) + math.log(4.0)
    other = np.array([[[1, 0], [0, 0], [0, 0]]], dtype="int32")
    pair_targets = np.concatenate([targets, other])
    pair_logits = np.concatenate([logits, np.zeros_like(logits)])
    summed = next_k_nll(pair_targets, pair_logits, reduction="sum")
    expected_sum = (first / 2 + math.log(4.0) / 2) / 2
    np.testing.assert_allclose(float(ops.convert_to_numpy(summed)), expected_sum, rtol=1e-6)
    averaged = next_k_nll(pair_targets, pair_logits)
    expected_mean = (first + math.log(4.0)) / 3
    np.testing.assert_allclose(float(ops.convert_to_numpy(averaged)), expected_mean, rtol=1e-6)
    # Sample weights weigh sequences: weight 0 on the second leaves the first alone.
    only_first = next_k_nll(pair_targets, pair_logits, np.array([1.0, 0.0]), reduction="sum")
    np.testing.assert_allclose(float(ops.convert_to_numpy(only_first)), first / 2, rtol=1e-6)


@pytest.mark.backend
def test_next_k_nll_matches_log_softmax_and_is_stable_for_large_logits():
    # The loss picks the targets' logits and subtracts one logsumexp per position: the
    # same value as picking log-softmax entries, finite even for logits in the 1e4s.
    rng = np.random.default_rng(0)
    targets = rng.integers(0, NUM_ITEMS + 1, size=(3, 5, 2)).astype("int32")
    for scale in (1.0, 1e4):
        logits = (rng.normal(size=(3, 5, NUM_ITEMS)) * scale).astype("float32")
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        picked = np.take_along_axis(log_probs, np.maximum(targets - 1, 0), axis=-1)
        per_position = -(picked * (targets > 0)).sum(axis=-1)
        weight = (targets.max(axis=-1) > 0).astype("float32")
        expected = (per_position * weight).sum() / weight.sum()
        loss = float(ops.convert_to_numpy(next_k_nll(targets, logits)))
        np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.backend
def test_padding_does_not_change_the_loss():
    model = small_model()
    sequences = [[0, 1, 2, 3], [4, 5], [6]]
    x, y = batch(sequences)
    reference = loss_of(model, x, y)
    # Longer padding, and another padding embedding, change nothing.
    x_long, y_long = batch(sequences, length=8)
    np.testing.assert_allclose(loss_of(model, x_long, y_long), reference, rtol=1e-5)
    embedding = model.get_layer("item_embedding")
    table = ops.convert_to_numpy(embedding.embeddings).copy()
    table[0] = np.random.default_rng(0).normal(size=table.shape[1]) * 5
    embedding.embeddings.assign(table)
    np.testing.assert_allclose(loss_of(model, x_long, y_long), reference, rtol=1e-5)

    # In training (KL and sampling noise) too: same noise, same loss.
    sampling = model.get_layer("sampling")
    state = ops.convert_to_numpy(sampling.seed_generator.state)
    trained = loss_of(model, x_long, y_long, training=True)
    table[0] = -table[0]
    embedding.embeddings.assign(table)
    sampling.seed_generator.state.assign(state)
    sampling.anneal_step.assign(0.0)
    np.testing.assert_allclose(loss_of(model, x_long, y_long, training=True), trained, rtol=1e-5)


@pytest.mark.backend
def test_sampling_mask_drops_masked_positions_from_the_kl():
    layer = Sampling(anneal_cap=1.0, total_anneal_steps=0, seed=0)
    mean = np.zeros((1, 3, 2), dtype="float32")
    log_var = np.zeros((1, 3, 2), dtype="float32")
    mean[0, 0] = 1.0  # KL = 0.5 * (1 + 1) = 1 at position 0
    mean[0, 2] = 7.0  # masked out
    layer([mean, log_var, np.array([[1.0, 1.0, 0.0]], dtype="float32")], training=True)
    np.testing.assert_allclose(float(ops.convert_to_numpy(layer.losses[0])), 0.5, rtol=1e-6)
    layer([mean, log_var, np.zeros((1, 3), dtype="float32")], training=True)
    assert float(ops.convert_to_numpy(layer.losses[0])) == 0.0


@pytest.mark.backend
def test_scores_come_from_the_last_position_and_truncation_keeps_recent_items():
    model = small_model()
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    sequence = [5, 1, 9, 0, 7, 2, 11, 3, 4, 8, 6]  # longer than max_len=8
    full = ops.convert_to_numpy(model(pad_sequences([sequence], 8)[0]))
    scores = model.score([ITEM_IDS[sequence]])
    np.testing.assert_allclose(scores[0], full[0, -1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score([ITEM_IDS[sequence[-8:]]]), scores, rtol=1e-5)
    assert np.abs(model.score([ITEM_IDS[sequence[:8]]]) - scores).max() > 1e-4
    # A time-valued sparse matrix gives the same scores as the id sequences.
    short = [2, 0, 5]
    timestamps = sp.csr_matrix(
        ([30, 10, 20], ([0, 0, 0], short)), shape=(1, NUM_ITEMS)
    )  # time order: 0, 5, 2
    np.testing.assert_allclose(
        model.score(timestamps), model.score([ITEM_IDS[[0, 5, 2]]]), rtol=1e-6
    )


@pytest.mark.backend
def test_recommend_excludes_seen_items_and_returns_original_ids():
    model = small_model()
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    sequences = [ITEM_IDS[[3, 1, 4, 0, 5, 9, 2, 6, 7]], ITEM_IDS[[11]]]
    ids, scores = model.recommend(sequences, k=NUM_ITEMS)
    assert ids.shape == (2, NUM_ITEMS)
    assert set(ids[0, :3].tolist()) == set(ITEM_IDS[[8, 10, 11]].tolist())
    assert (ids[0, 3:] == -1).all() and np.isneginf(scores[0, 3:]).all()
    assert ITEM_IDS[11] not in ids[1, :-1] and ids[1, -1] == -1
    assert np.all(np.diff(scores[1, :-1]) <= 0)
    all_ids, _ = model.recommend(sequences, k=NUM_ITEMS, exclude_seen=False)
    assert sorted(all_ids[0].tolist()) == ITEM_IDS.tolist()
    expected = np.argsort(-model.score(sequences)[1], kind="stable")[:3]
    np.testing.assert_array_equal(
        model.recommend(sequences, k=3, exclude_seen=False)[0][1], ITEM_IDS[expected]
    )


@pytest.mark.backend
def test_save_and_load_give_identical_scores(tmp_path):
    model = small_model()
    model.set_weights(model.get_weights())  # initial weights on purpose (untrained guard)
    model.get_layer("sampling").anneal_step.assign(2.0)  # the annealing state is saved too
    sequences = [np.random.default_rng(i).permutation(NUM_ITEMS)[:6] for i in range(10)]
    path = tmp_path / "svae.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SVAE)
    queries = [ITEM_IDS[s] for s in sequences[:4]]
    np.testing.assert_array_equal(loaded.score(queries), model.score(queries))
    np.testing.assert_array_equal(
        loaded.recommend(queries, k=3)[0], model.recommend(queries, k=3)[0]
    )
    assert float(ops.convert_to_numpy(loaded.get_layer("sampling").anneal_step)) == 2.0


@pytest.mark.backend
def test_training_lowers_the_loss_and_beats_popularity():
    # Tastes turn along a 2D circle: each user's next items follow from the recent ones.
    data = synthetic(
        350,
        60,
        0.12,
        latent_dim=2,
        drift=3.0,
        preference_strength=5.0,
        popularity_exponent=0.5,
        seed=0,
    ).to_implicit(0.0)
    split = temporal(data, num_heldout_users=50, seed=0, num_validation_users=0)
    keras.utils.set_random_seed(0)
    model = SVAE(
        split.num_items,
        item_embedding_dim=16,
        rnn_units=32,
        hidden_units=32,
        latent_dim=8,
        next_k=2,
        max_len=16,
        anneal_cap=0.0,
        total_anneal_steps=0,
        item_ids=split.item_ids,
        seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    sequences = time_ordered_sequences(split.train_timestamps)
    # 300 sequences in 10 full batches of one length: a single compiled shape on JAX.
    batches = model.batches(sequences, batch_size=30, seed=0, length_multiple=None)
    history = model.fit(batches, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.5
    svae = evaluate_ranking(model, time_ordered_part(split.test), ks=(10,))["ndcg@10"]
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    baseline = evaluate_ranking(
        lambda rows, users: np.tile(popularity, (rows.shape[0], 1)), split.test, ks=(10,)
    )["ndcg@10"]
    assert svae > baseline + 0.1, (svae, baseline)


@pytest.mark.backend
def test_variable_batch_lengths_train_over_several_epochs():
    # Batch lengths vary from epoch to epoch (TensorFlow's fixed signature must allow it).
    rng = np.random.default_rng(0)
    sequences = [rng.permutation(NUM_ITEMS)[: rng.integers(1, NUM_ITEMS)] for _ in range(12)]
    model = small_model(max_len=12)
    model.compile(optimizer="adam")
    batches = model.batches(sequences, batch_size=4, seed=1, length_multiple=6)
    lengths = {batches[i][0].shape[1] for i in range(len(batches))}
    history = model.fit(batches, epochs=2, verbose=0)
    lengths |= {batches[i][0].shape[1] for i in range(len(batches))}
    assert len(lengths) > 1
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.backend
def test_bad_inputs_raise_clear_errors():
    model = small_model()
    with pytest.raises(ValueError, match="at least one item"):
        model.score([ITEM_IDS[[1, 2]], []])
    with pytest.raises(ValueError, match="unknown ids in sequence 0, e.g. \\[999\\]"):
        model.recommend([[ITEM_IDS[0], 999]])
    with pytest.raises(ValueError, match="unknown ids"):
        model.score([["a", "b"]])
    with pytest.raises(ValueError, match="at most once"):
        model.score([ITEM_IDS[[1, 2, 1]]])
    with pytest.raises(ValueError, match="at least one sequence"):
        model.score([])
    with pytest.raises(ValueError, match=f"should have {NUM_ITEMS} columns"):
        model.score(sp.csr_matrix((1, NUM_ITEMS + 1)))
    with pytest.raises(ValueError, match="at least one item"):
        model.score(sp.csr_matrix((2, NUM_ITEMS)))
    with pytest.raises(ValueError, match="`k` should be an integer between 1 and"):
        model.recommend([ITEM_IDS[[1]]], k=0)
    with pytest.raises(ValueError, match="item positions in \\[0, 12\\)"):
        model.batches([[0, 12]])
    x, y = batch([[0, 1, 2]], next_k=3)
    with pytest.raises(ValueError, match="next_k=2"):
        model.compute_loss(x=x, y=y, y_pred=model(x))
    with pytest.raises(ValueError, match="y=None"):
        model.compute_loss(x=x, y=None, y_pred=model(x))
    with pytest.raises(ValueError, match="`next_k` should be a positive integer"):
        SVAE(NUM_ITEMS, next_k=0)
    with pytest.raises(ValueError, match="`likelihood_reduction` should be one of"):
        SVAE(NUM_ITEMS, likelihood_reduction="total")
    with pytest.raises(ValueError, match="`max_len` should be a positive integer"):
        SVAE(NUM_ITEMS, max_len=-1)
    with pytest.raises(ValueError, match="`item_ids` should be a 1D sequence of 12 ids"):
        SVAE(NUM_ITEMS, item_ids=[1, 2])
