import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.data.interactions import Interactions
from keras_aerec.data.splits import (
    rating_holdout,
    strong_generalization,
    temporal,
    weak_generalization,
)


def _random_interactions(
    num_users=60, num_items=40, density=0.3, seed=0, timestamps=False, implicit=True
):
    rng = np.random.default_rng(seed)
    matrix = sp.random(
        num_users, num_items, density=density, format="csr", random_state=rng, dtype=np.float32
    )
    matrix.data = rng.integers(1, 6, matrix.nnz).astype(np.float32)
    if implicit:  # ranking protocols refuse explicit ratings without a threshold
        matrix.data[:] = 1.0
    # Few distinct values, so that ties in time are exercised.
    stamps = rng.integers(1, 20, matrix.nnz) if timestamps else None
    return Interactions.from_csr(
        matrix,
        user_ids=np.arange(num_users) + 100,
        item_ids=np.arange(num_items) + 1000,
        timestamps=stamps,
        name="random",
    )


def _pairs(matrix, user_ids, item_ids):
    coo = matrix.tocoo()
    return set(zip(user_ids[coo.row].tolist(), item_ids[coo.col].tolist(), strict=True))


def _round_half_up(x):
    return int(np.floor(x + 0.5))


# ------------------------------------------------------------------ rating holdout


def test_rating_holdout_partitions_the_ratings():
    data = _random_interactions(implicit=False)
    split = rating_holdout(data, test=0.1, validation=0.1, seed=0)
    nnz = data.num_interactions
    assert split.test.nnz == _round_half_up(0.1 * nnz)
    assert split.validation.nnz == _round_half_up(0.1 * nnz)
    assert split.train.nnz + split.validation.nnz + split.test.nnz == nnz
    for part in (split.train, split.validation, split.test):
        assert part.shape == data.matrix.shape
        assert part.dtype == np.float32
        assert part.has_canonical_format
    assert (split.train + split.validation + split.test != data.matrix).nnz == 0
    overlap = split.train.multiply(split.test) + split.train.multiply(split.validation)
    assert (overlap + split.validation.multiply(split.test)).nnz == 0
    np.testing.assert_array_equal(split.user_ids, data.user_ids)
    np.testing.assert_array_equal(split.item_ids, data.item_ids)


def test_rating_holdout_stats_count_unseen_users_and_items():
    # Users 1 and 2 have a single rating, items 3 and 4 a single rating.
    matrix = sp.csr_matrix(
        np.array([[5, 4, 3, 2, 0], [1, 0, 0, 0, 0], [0, 2, 0, 0, 0], [3, 3, 4, 0, 5]], "float32")
    )
    for seed in range(5):
        split = rating_holdout(matrix, test=0.3, validation=0.2, seed=seed)
        for name in ("test", "validation"):
            part = getattr(split, name).tocoo()
            unseen_user = np.diff(split.train.indptr)[part.row] == 0
            unseen_item = np.bincount(split.train.indices, minlength=5)[part.col] == 0
            assert split.stats[f"{name}_unseen_users"] == unseen_user.sum()
            assert split.stats[f"{name}_unseen_items"] == unseen_item.sum()
            assert split.stats[f"{name}_num_unseen_users"] == len(set(part.row[unseen_user]))
            assert split.stats[f"{name}_num_unseen_items"] == len(set(part.col[unseen_item]))


def test_rating_holdout_without_validation_and_determinism():
    data = _random_interactions(implicit=False)
    split = rating_holdout(data, test=0.2, validation=0.0, seed=3)
    assert split.validation.nnz == 0 and split.validation.shape == data.matrix.shape
    again = rating_holdout(data, test=0.2, validation=0.0, seed=3)
    other = rating_holdout(data, test=0.2, validation=0.0, seed=4)
    assert (split.test != again.test).nnz == 0
    assert (split.test != other.test).nnz > 0


# ----------------------------------------------------------- weak generalization


@pytest.mark.parametrize("test,validation", [(0.2, 0.0), (0.1, 0.1)])
def test_weak_generalization_per_user_fractions_and_disjointness(test, validation):
    data = _random_interactions(num_users=80, num_items=20, density=0.4)
    split = weak_generalization(data, test=test, validation=validation, seed=0)
    assert split.stats["num_dropped_items"] == 0  # dense enough: every item trains
    assert split.train.shape == data.matrix.shape
    np.testing.assert_array_equal(split.train_user_ids, data.user_ids)
    counts = np.diff(data.matrix.indptr)
    test_counts = np.zeros(data.num_users, int)
    test_counts[split.test.train_rows] = np.diff(split.test.holdout.indptr)
    expected_test = np.minimum([_round_half_up(test * n) for n in counts], counts - 1)
    np.testing.assert_array_equal(test_counts, expected_test)

    train = _pairs(split.train, split.train_user_ids, split.item_ids)
    test_pairs = _pairs(split.test.holdout, split.test.user_ids, split.item_ids)
    test_fold_in = _pairs(split.test.fold_in, split.test.user_ids, split.item_ids)
    assert not train & test_pairs
    assert not test_fold_in & test_pairs
    if validation:
        assert split.validation is not None
        val_counts = np.zeros(data.num_users, int)
        val_counts[split.validation.train_rows] = np.diff(split.validation.holdout.indptr)
        expected_val = np.minimum(
            [_round_half_up(validation * n) for n in counts], counts - 1 - expected_test
        )
        np.testing.assert_array_equal(val_counts, expected_val)
        val = _pairs(split.validation.holdout, split.validation.user_ids, split.item_ids)
        assert not val & train and not val & test_pairs
        # Validation fold-in = train row; test fold-in = train + validation rows.
        assert _pairs(split.validation.fold_in, split.validation.user_ids, split.item_ids) == {
            pair for pair in train if pair[0] in set(split.validation.user_ids.tolist())
        }
        test_users = set(split.test.user_ids.tolist())
        assert test_fold_in == {pair for pair in train | val if pair[0] in test_users}
        assert split.train.nnz + len(val) + len(test_pairs) == data.num_interactions
    else:
        assert split.validation is None
        assert test_fold_in == {p for p in train if p[0] in set(split.test.user_ids.tolist())}
        assert split.train.nnz + len(test_pairs) == data.num_interactions
    assert np.all(np.diff(split.test.holdout.indptr) >= 1)
    np.testing.assert_array_equal(split.test.user_ids, data.user_ids[split.test.train_rows])


def test_weak_generalization_keeps_a_training_interaction_per_user():
    # One user with a single interaction (stays in train), one with two.
    matrix = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], "float32"))
    split = weak_generalization(matrix, test=0.5, validation=0.4, seed=0)
    assert np.all(np.diff(split.train.indptr) >= 1)
    assert 0 not in split.test.train_rows


def test_weak_generalization_dropped_items_are_counted():
    # User u has items 0, 1 and its own item u + 2; one interaction of three is held out.
    num_users = 8
    dense = np.zeros((num_users, num_users + 2), "float32")
    dense[:, :2] = 1
    dense[np.arange(num_users), np.arange(num_users) + 2] = 1
    split = weak_generalization(sp.csr_matrix(dense), test=1 / 3, seed=0)
    stats = split.stats
    # A user whose own item was held out loses it (no one else trains on it) and,
    # with no holdout left, is excluded from the test part.
    assert stats["test_dropped_interactions"] > 0
    assert stats["test_dropped_interactions"] == stats["num_dropped_items"]
    assert stats["test_excluded_users"] == stats["num_dropped_items"]
    assert stats["test_users"] == num_users - stats["num_dropped_items"]
    assert split.num_items == num_users + 2 - stats["num_dropped_items"]
    assert (
        split.test.holdout.nnz + split.train.nnz + stats["test_dropped_interactions"]
        == 3 * num_users
    )


# -------------------------------------------------------- strong generalization


def test_strong_generalization_users_are_disjoint():
    data = _random_interactions(num_users=100, num_items=30)
    split = strong_generalization(data, num_heldout_users=15, seed=0, num_validation_users=10)
    train_users = set(split.train_user_ids.tolist())
    test_users = set(split.test.user_ids.tolist())
    val_users = set(split.validation.user_ids.tolist())
    assert len(test_users) == 15 and len(val_users) == 10
    assert len(train_users) == 75
    assert not train_users & test_users and not train_users & val_users
    assert not test_users & val_users
    assert split.test.train_rows is None and split.test.fold_in_timestamps is None
    # Training users keep all their interactions (on training items: all of them here).
    assert split.train.nnz == data.matrix[np.isin(data.user_ids, split.train_user_ids)].nnz
    for part in (split.validation, split.test):
        fold_in_counts = np.diff(part.fold_in.indptr)
        holdout_counts = np.diff(part.holdout.indptr)
        counts = fold_in_counts + holdout_counts
        expected = np.clip([_round_half_up(0.2 * n) for n in counts], 1, counts - 1)
        np.testing.assert_array_equal(holdout_counts, expected)
        assert not _pairs(part.fold_in, part.user_ids, split.item_ids) & _pairs(
            part.holdout, part.user_ids, split.item_ids
        )
        rows = np.searchsorted(data.user_ids, part.user_ids)
        original = data.matrix[rows][:, np.searchsorted(data.item_ids, split.item_ids)]
        assert ((part.fold_in + part.holdout) != original).nnz == 0


def test_strong_generalization_without_validation_and_only_eligible_users():
    # Rows 0-2 have 2 interactions, rows 3-4 one, row 5 none: only rows 0-2 are eligible,
    # and each of their items has another user.
    dense = np.array(
        [[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
        "float32",
    )
    drawn = set()
    for seed in range(10):
        split = strong_generalization(sp.csr_matrix(dense), 1, seed=seed, num_validation_users=0)
        assert split.validation is None
        assert split.stats["num_eligible_users"] == 3
        assert split.test.num_users == 1 and split.test.holdout.nnz == 1
        drawn.add(int(split.test.user_ids[0]))
    assert drawn <= {0, 1, 2} and len(drawn) > 1


def test_strong_generalization_dropped_items_are_counted():
    # User u has items 0, 1 and its own item u + 2: the held-out user's own item is dropped.
    num_users = 6
    dense = np.zeros((num_users, num_users + 2), "float32")
    dense[:, :2] = 1
    dense[np.arange(num_users), np.arange(num_users) + 2] = 1
    split = strong_generalization(sp.csr_matrix(dense), 1, seed=0, num_validation_users=1)
    stats = split.stats
    assert stats["num_dropped_items"] == 2
    assert stats["test_dropped_interactions"] == stats["validation_dropped_interactions"] == 1
    assert split.num_items == num_users
    for part in (split.test, split.validation):
        # Items 0 and 1 remain: one fold-in, one holdout (at least one is held out).
        assert part.fold_in.nnz == part.holdout.nnz == 1
        assert set(split.item_ids[part.fold_in.indices]) | set(
            split.item_ids[part.holdout.indices]
        ) == {0, 1}


def test_held_out_user_left_without_holdout_is_excluded():
    # Row 3 has items 0 and 3; item 3 has no other user, so if row 3 is held out it keeps a
    # single interaction and is excluded.
    dense = np.array(
        [[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 0]], "float32"
    )
    seen = False
    for seed in range(20):
        split = strong_generalization(sp.csr_matrix(dense), 1, seed=seed, num_validation_users=0)
        if split.stats["test_excluded_users"]:
            seen = True
            assert split.test.num_users == 0 and split.stats["test_dropped_interactions"] == 1
    assert seen


# ----------------------------------------------------------------------- temporal


def test_temporal_holdout_is_after_fold_in():
    data = _random_interactions(num_users=100, num_items=30, timestamps=True)
    split = temporal(data, num_heldout_users=20, seed=0)
    stamp = dict(
        zip(
            zip(
                data.user_ids[
                    np.repeat(np.arange(data.num_users), np.diff(data.matrix.indptr))
                ].tolist(),
                data.item_ids[data.matrix.indices].tolist(),
                strict=True,
            ),
            data.timestamps.tolist(),
            strict=True,
        )
    )
    assert split.train_timestamps is not None
    assert split.train_timestamps.nnz == split.train.nnz
    for part in (split.validation, split.test):
        assert part.num_users == 20
        np.testing.assert_array_equal(part.fold_in_timestamps.indptr, part.fold_in.indptr)
        np.testing.assert_array_equal(part.fold_in_timestamps.indices, part.fold_in.indices)
        for row, user in enumerate(part.user_ids):
            fold_items = split.item_ids[part.fold_in[row].indices]
            hold_items = split.item_ids[part.holdout[row].indices]
            fold_times = [stamp[(user, item)] for item in fold_items]
            hold_times = [stamp[(user, item)] for item in hold_items]
            np.testing.assert_array_equal(part.fold_in_timestamps[row].data, fold_times)
            assert max(fold_times) <= min(hold_times)
            n = len(fold_items) + len(hold_items)
            assert len(hold_items) == min(max(_round_half_up(0.2 * n), 1), n - 1)


def test_temporal_needs_timestamps():
    with pytest.raises(
        ValueError, match="`temporal` needs timestamps; `interactions` \\(random\\)"
    ):
        temporal(_random_interactions(), num_heldout_users=5)


# ------------------------------------------------------------ determinism, errors


@pytest.mark.parametrize(
    "protocol,kwargs",
    [
        (weak_generalization, {"test": 0.2, "validation": 0.1}),
        (strong_generalization, {"num_heldout_users": 10}),
        (temporal, {"num_heldout_users": 10}),
    ],
)
def test_ranking_protocols_are_seed_deterministic(protocol, kwargs):
    data = _random_interactions(timestamps=True)
    first = protocol(data, seed=1, **kwargs)
    again = protocol(data, seed=1, **kwargs)
    other = protocol(data, seed=2, **kwargs)
    assert (first.train != again.train).nnz == 0
    assert (first.test.holdout != again.test.holdout).nnz == 0
    np.testing.assert_array_equal(first.test.user_ids, again.test.user_ids)
    assert first.stats == again.stats
    differs = first.test.holdout.shape != other.test.holdout.shape or (
        (first.test.holdout != other.test.holdout).nnz > 0
    )
    assert differs


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda d: rating_holdout(d, test=0.0), "`test` should be a float in \\(0, 1\\)"),
        (lambda d: rating_holdout(d, test=1.0), "`test` should be a float in \\(0, 1\\)"),
        (lambda d: rating_holdout(d, validation=-0.1), "`validation` should be a float in \\[0"),
        (lambda d: rating_holdout(d, test=0.6, validation=0.4), "`test` \\+ `validation`"),
        (lambda d: rating_holdout(d, seed=1.5), "`seed` should be an integer"),
        (lambda d: rating_holdout(d, seed=None), "`seed` should be an integer"),
        (lambda d: rating_holdout(np.ones((3, 3))), "`interactions` should be"),
        (lambda d: weak_generalization(d, test="0.2"), "`test` should be a float"),
        (lambda d: weak_generalization(d, test=0.5, validation=0.5), "`test` \\+ `validation`"),
        (lambda d: strong_generalization(d, 0), "`num_heldout_users` should be a positive"),
        (lambda d: strong_generalization(d, 30), "`num_heldout_users` \\+ `num_validation_users`"),
        (lambda d: strong_generalization(d, 5, num_validation_users=-1), "`num_validation_users`"),
        (lambda d: strong_generalization(d, 5, fold_in=1.0), "`fold_in` should be a float"),
        (lambda d: temporal(d, 5, seed="0"), "`seed` should be an integer"),
    ],
)
def test_bad_arguments_raise(call, message):
    data = _random_interactions(timestamps=True)
    with pytest.raises(ValueError, match=message):
        call(data)


# ------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_movielens_1m_protocol_sizes(data_dir):
    movielens = pytest.importorskip("keras_aerec.data.movielens")
    ratings = movielens.load_movielens("1m", data_dir=data_dir)
    split = rating_holdout(ratings, test=0.1, validation=0.05, seed=0)
    assert (split.stats["num_train"], split.stats["num_validation"], split.stats["num_test"]) == (
        850_178,
        50_010,
        100_021,
    )
    positives = ratings.to_implicit(3.0)
    assert positives.num_interactions == 575_281
    weak = weak_generalization(positives, test=0.2, seed=0)
    assert weak.train.shape[0] == 6_040
    assert (
        weak.train.nnz + weak.test.holdout.nnz + weak.stats["test_dropped_interactions"] == 575_281
    )
    strong = strong_generalization(positives.filter_min_interactions(users=5), 600, seed=0)
    assert strong.test.num_users == strong.validation.num_users == 600
    assert strong.train.shape[0] == strong.stats["num_users"] - 1_200
    recbole = ratings.to_implicit(2.0).k_core(10)
    # RecBole reports 6,040 x 3,124 and 834,449 interactions: the interactions match
    # exactly; its item count includes its [PAD] id; 7 users end below 10 positives here.
    assert (recbole.num_users, recbole.num_items, recbole.num_interactions) == (
        6_033,
        3_123,
        834_449,
    )
    split_811 = weak_generalization(recbole, test=0.1, validation=0.1, seed=0)
    assert split_811.validation.num_users > 6_000 and split_811.test.num_users > 6_000


@pytest.mark.parametrize(
    "protocol,kwargs",
    [
        (weak_generalization, {"test": 0.2}),
        (strong_generalization, {"num_heldout_users": 5}),
        (temporal, {"num_heldout_users": 5}),
    ],
)
def test_ranking_protocols_refuse_explicit_ratings_without_a_threshold(protocol, kwargs):
    ratings = _random_interactions(timestamps=True, implicit=False)
    with pytest.raises(ValueError, match="low ratings would count as positives.*to_implicit"):
        protocol(ratings, **kwargs)
    thresholded = protocol(ratings, positive_threshold=3.0, **kwargs)
    expected = protocol(ratings.to_implicit(3.0), **kwargs)
    assert (thresholded.train != expected.train).nnz == 0
    assert (thresholded.test.holdout != expected.test.holdout).nnz == 0
    with pytest.raises(ValueError, match="`positive_threshold` should be a finite number"):
        protocol(ratings, positive_threshold=float("nan"), **kwargs)
