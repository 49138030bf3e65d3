import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.data.interactions import Interactions
from keras_aerec.data.sequences import (
    SequenceBatches,
    next_k_targets,
    pad_sequences,
    rank_matrix,
    time_ordered_part,
    time_ordered_sequences,
    truncate_sequences,
)
from keras_aerec.data.splits import strong_generalization, temporal
from keras_aerec.data.synthetic import synthetic


def test_time_ordered_sequences_sorts_by_time_then_item_and_keeps_zero_timestamps():
    # Row 1 has an explicit zero at item 3: its oldest interaction.
    timestamps = sp.csr_matrix(
        (np.array([30, 10, 10, 5, 0]), np.array([1, 2, 3, 0, 3]), np.array([0, 3, 5, 5])),
        shape=(3, 4),
    )
    assert [s.tolist() for s in time_ordered_sequences(timestamps)] == [[2, 3, 1], [3, 0], []]


def test_time_ordered_sequences_match_interactions_sequences():
    data = synthetic(60, 30, 0.2, seed=1)
    timestamps = sp.csr_matrix(
        (data.timestamps, data.matrix.indices, data.matrix.indptr), shape=data.matrix.shape
    )
    for ours, theirs in zip(time_ordered_sequences(timestamps), data.sequences(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_truncation_keeps_the_most_recent_items():
    assert [s.tolist() for s in truncate_sequences([[1, 2, 3, 4, 5], [6]], 3)] == [[3, 4, 5], [6]]
    padded, lengths = pad_sequences([np.arange(10, 20), [4]], max_len=4)
    assert padded.tolist() == [[17, 18, 19, 20], [5, 0, 0, 0]]
    assert lengths.tolist() == [4, 1]


def test_pad_sequences_shifts_items_left_aligns_and_pads_to_length():
    padded, lengths = pad_sequences([[0, 2], [], [5, 6, 7]], max_len=10, length=5)
    assert padded.dtype == np.int32
    assert padded.tolist() == [[1, 3, 0, 0, 0], [0, 0, 0, 0, 0], [6, 7, 8, 0, 0]]
    assert lengths.tolist() == [2, 0, 3]
    assert pad_sequences([[1, 2, 3]], max_len=10)[0].shape == (1, 3)


def test_next_k_targets_by_hand():
    padded = np.array([[5, 3, 8, 2, 0, 0]])  # items 4, 2, 7, 1
    assert next_k_targets(padded, 1)[0, :, 0].tolist() == [3, 8, 2, 0, 0, 0]
    assert next_k_targets(padded, 3)[0].tolist() == [
        [3, 8, 2],
        [8, 2, 0],
        [2, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
    ]
    assert next_k_targets(padded, 3).dtype == np.int32


def test_rank_matrix_and_time_ordered_part():
    data = synthetic(80, 40, 0.2, seed=0).to_implicit(3.0)
    split = temporal(data, num_heldout_users=10, seed=0)
    part = time_ordered_part(split.test)
    assert (part.fold_in != 0).nnz == split.test.fold_in.nnz
    assert ((part.fold_in != 0) != (split.test.fold_in != 0)).nnz == 0
    np.testing.assert_array_equal(part.holdout.toarray(), split.test.holdout.toarray())
    for ranks, ordered in zip(
        part.fold_in, time_ordered_sequences(split.test.fold_in_timestamps), strict=True
    ):
        assert ranks.indices[np.argsort(ranks.data)].tolist() == ordered.tolist()
    assert rank_matrix([[2, 0], [1]], 3).toarray().tolist() == [[2, 0, 1], [0, 1, 0]]


def test_timestamps_are_required_for_sequences():
    data = synthetic(50, 20, 0.2, seed=0).to_implicit(3.0)
    untimed = Interactions(data.matrix, data.user_ids, data.item_ids)
    with pytest.raises(ValueError, match="needs timestamps"):
        temporal(untimed, num_heldout_users=5)
    with pytest.raises(ValueError, match="no timestamps"):
        untimed.sequences()
    split = strong_generalization(untimed, num_heldout_users=5)
    with pytest.raises(ValueError, match="fold_in_timestamps"):
        time_ordered_part(split.test)
    with pytest.raises(ValueError, match="sparse matrix"):
        time_ordered_sequences(np.ones((2, 2)))


def _epoch(batches):
    return [batches[i] for i in range(len(batches))]


def test_sequence_batches_cover_every_sequence_with_matching_targets():
    rng = np.random.default_rng(0)
    sequences = [rng.permutation(30)[: rng.integers(1, 25)] for _ in range(23)]
    batches = SequenceBatches(sequences, batch_size=5, max_len=12, next_k=2, seed=0)
    assert len(batches) == 5
    for _ in range(2):
        seen = []
        for i, (padded, targets) in enumerate(_epoch(batches)):
            rows = batches.batch_rows(i)
            assert padded.dtype == np.int32 and targets.dtype == np.int32
            assert padded.shape[1] % 4 == 0 or padded.shape[1] == 12
            assert targets.shape == padded.shape + (2,)
            # The short batch (3 sequences) is filled up to 5 rows with empty sequences.
            assert padded.shape[0] == 5
            expected, _ = pad_sequences([sequences[r] for r in rows], 12, padded.shape[1])
            np.testing.assert_array_equal(padded[: len(rows)], expected)
            assert not padded[len(rows) :].any()
            np.testing.assert_array_equal(targets, next_k_targets(padded, 2))
            seen.append(rows)
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(23))
        batches.on_epoch_end()


def test_sequence_batches_lengths_shuffling_and_bucketing():
    rng = np.random.default_rng(1)
    sequences = [np.arange(n) for n in rng.integers(1, 60, size=200)]
    fixed = SequenceBatches(sequences, batch_size=20, max_len=40, length_multiple=None, seed=0)
    assert {padded.shape[1] for padded, _ in _epoch(fixed)} == {40}

    first = SequenceBatches(sequences, batch_size=20, max_len=40, length_multiple=8, seed=3)
    again = SequenceBatches(sequences, batch_size=20, max_len=40, length_multiple=8, seed=3)
    orders = []
    for _ in range(3):
        order = np.concatenate([first.batch_rows(i) for i in range(len(first))])
        np.testing.assert_array_equal(
            order, np.concatenate([again.batch_rows(i) for i in range(len(again))])
        )
        orders.append(order)
        first.on_epoch_end()
        again.on_epoch_end()
    assert not np.array_equal(orders[0], orders[1])

    bucketed = SequenceBatches(
        sequences, batch_size=20, max_len=40, length_multiple=8, bucket_size=10, seed=0
    )
    padded_cells = sum(p.size for p, _ in _epoch(bucketed))
    random_cells = sum(p.size for p, _ in _epoch(first))
    assert padded_cells < 0.8 * random_cells


def test_lengths_near_max_len_are_padded_to_it():
    # max_len 10, multiples of 4: 8 is within 4 of 10, so such batches take 10; the
    # shapes are then 4 and 10, at most ceil(max_len / length_multiple).
    sequences = [np.arange(n) for n in (3, 4, 6, 8, 12)]
    batches = SequenceBatches(sequences, batch_size=1, max_len=10, length_multiple=4, shuffle=False)
    by_sequence = {
        int(batches.batch_rows(i)[0]): padded.shape[1]
        for i, (padded, _) in enumerate(_epoch(batches))
    }
    assert by_sequence == {0: 4, 1: 4, 2: 10, 3: 10, 4: 10}
    # A multiple further from max_len is kept.
    batches = SequenceBatches([np.arange(5)], batch_size=1, max_len=16, length_multiple=4)
    assert batches[0][0].shape[1] == 8


def test_first_two_batches_differ_in_length_for_tensorflow_signature():
    # Every batch reaches max_len: batch 0 gets extra padding, which changes no target.
    sequences = [np.arange(10) for _ in range(6)]
    batches = SequenceBatches(sequences, batch_size=2, max_len=8, length_multiple=4, seed=0)
    (p0, t0), (p1, _) = batches[0], batches[1]
    assert p0.shape[1] == 12 and p1.shape[1] == 8
    np.testing.assert_array_equal(p0[:, :8], p1)
    assert not p0[:, 8:].any() and not t0[:, 8:].any()
    # Mixed lengths: a batch of another length is moved to index 1.
    sequences = [np.arange(10)] * 4 + [np.arange(2)] * 2
    batches = SequenceBatches(sequences, batch_size=2, max_len=8, length_multiple=4, seed=0)
    assert batches[0][0].shape[1] != batches[1][0].shape[1]


def test_sequence_batches_is_a_keras_dataset_and_validates_arguments():
    assert isinstance(SequenceBatches([[1, 2]]), keras.utils.PyDataset)
    with pytest.raises(ValueError, match="`batch_size` should be a positive integer"):
        SequenceBatches([[1, 2]], batch_size=0)
    with pytest.raises(ValueError, match="`next_k` should be a positive integer"):
        SequenceBatches([[1, 2]], next_k=0)
    with pytest.raises(ValueError, match="at least one sequence"):
        SequenceBatches([])
    with pytest.raises(ValueError, match="1D integer arrays"):
        SequenceBatches([[0.5, 1.0]])
    with pytest.raises(ValueError, match="non-negative integer"):
        pad_sequences([[1, -2]], max_len=5)
    with pytest.raises(ValueError, match="`length` should be an integer"):
        pad_sequences([[1, 2, 3]], max_len=5, length=2)
