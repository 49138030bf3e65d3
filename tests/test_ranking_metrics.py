import math

import numpy as np
import pytest
import scipy.sparse

from keras_aerec.metrics.ranking import (
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    top_k_indices,
)

# Three users x six items.
SCORES = np.array(
    [
        [0.1, 0.9, 0.3, 0.8, 0.2, 0.7],
        [0.5, 0.4, 0.6, 0.1, 0.9, 0.3],
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
    ]
)
# User 0 has seen item 1, user 1 item 4: neither may be ranked.
EXCLUDE = scipy.sparse.csr_matrix(
    np.array(
        [
            [0, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0],
        ]
    )
)
# User 0 likes items {2, 3}, user 1 {0, 3, 5}, user 2 nothing (NaN for every metric).
HOLDOUT = scipy.sparse.csr_matrix(
    np.array(
        [
            [0, 0, 1, 1, 0, 0],
            [1, 0, 0, 1, 0, 1],
            [0, 0, 0, 0, 0, 0],
        ]
    )
)
# Rankings after exclusion:
#   user 0: 3 (0.8), 5 (0.7), 2 (0.3), 4 (0.2), 0 (0.1)       hits at ranks 1 and 3
#   user 1: 2 (0.6), 0 (0.5), 1 (0.4), 5 (0.3), 3 (0.1)       hits at ranks 2, 4 and 5
LOG2_3 = math.log2(3)


def test_top_k_indices_hand_example():
    top = top_k_indices(SCORES, 3, exclude=EXCLUDE)
    np.testing.assert_array_equal(top, [[3, 5, 2], [2, 0, 1], [0, 1, 2]])
    assert top.dtype == np.int64


def test_hand_example_at_3():
    # user 0: top 3 = [3, 5, 2], hits at ranks 1 and 3, |relevant| = 2
    #   precision = 2 / 3
    #   recall    = 2 / min(3, 2) = 1
    #   ndcg      = (1/log2(2) + 1/log2(4)) / (1/log2(2) + 1/log2(3)) = 1.5 / (1 + 1/log2(3))
    # user 1: top 3 = [2, 0, 1], hit at rank 2, |relevant| = 3
    #   precision = 1 / 3
    #   recall    = 1 / min(3, 3) = 1 / 3
    #   ndcg      = (1/log2(3)) / (1/log2(2) + 1/log2(3) + 1/log2(4)) = (1/log2(3)) / (1.5 + 1/log2(3))
    precision = precision_at_k(SCORES, HOLDOUT, 3, exclude=EXCLUDE)
    recall = recall_at_k(SCORES, HOLDOUT, 3, exclude=EXCLUDE)
    ndcg = ndcg_at_k(SCORES, HOLDOUT, 3, exclude=EXCLUDE)
    assert precision[:2] == pytest.approx([2 / 3, 1 / 3], abs=1e-12)
    assert recall[:2] == pytest.approx([1.0, 1 / 3], abs=1e-12)
    expected_ndcg = [
        (1 / math.log2(2) + 1 / math.log2(4)) / (1 / math.log2(2) + 1 / LOG2_3),
        (1 / LOG2_3) / (1 / math.log2(2) + 1 / LOG2_3 + 1 / math.log2(4)),
    ]
    assert ndcg[:2] == pytest.approx(expected_ndcg, abs=1e-12)
    assert ndcg[0] == pytest.approx(0.919720789148, abs=1e-12)  # 1.5 / 1.630929753571
    for values in (precision, recall, ndcg):
        assert values.dtype == np.float64
        assert np.isnan(values[2])


def test_recall_normalizations_at_2():
    # user 0: top 2 = [3, 5], 1 hit, |relevant| = 2 -> min: 1 / min(2, 2); relevant: 1 / 2
    # user 1: top 2 = [2, 0], 1 hit, |relevant| = 3 -> min: 1 / min(2, 3); relevant: 1 / 3
    recall_min = recall_at_k(SCORES, HOLDOUT, 2, exclude=EXCLUDE)
    recall_relevant = recall_at_k(SCORES, HOLDOUT, 2, exclude=EXCLUDE, normalization="relevant")
    assert recall_min[:2] == pytest.approx([1 / 2, 1 / 2], abs=1e-12)
    assert recall_relevant[:2] == pytest.approx([1 / 2, 1 / 3], abs=1e-12)


def test_k_larger_than_relevant():
    # k = 5, user 0: top 5 = [3, 5, 2, 4, 0], hits at ranks 1 and 3, |relevant| = 2
    #   precision = 2 / 5, recall = 2 / min(5, 2) = 1
    #   ndcg = (1 + 1/log2(4)) / (1 + 1/log2(3))  (IDCG over min(5, 2) = 2 items)
    # user 1: top 5 = [2, 0, 1, 5, 3], hits at ranks 2, 4, 5, |relevant| = 3
    #   precision = 3 / 5, recall = 3 / min(5, 3) = 1
    #   ndcg = (1/log2(3) + 1/log2(5) + 1/log2(6)) / (1 + 1/log2(3) + 1/log2(4))
    results = ranking_metrics(SCORES, HOLDOUT, ks=5, exclude=EXCLUDE)
    assert results["precision@5"][:2] == pytest.approx([2 / 5, 3 / 5], abs=1e-12)
    assert results["recall@5"][:2] == pytest.approx([1.0, 1.0], abs=1e-12)
    expected_ndcg = [
        (1 + 1 / math.log2(4)) / (1 + 1 / LOG2_3),
        (1 / LOG2_3 + 1 / math.log2(5) + 1 / math.log2(6)) / (1 + 1 / LOG2_3 + 0.5),
    ]
    assert results["ndcg@5"][:2] == pytest.approx(expected_ndcg, abs=1e-12)


def test_ranking_metrics_keys_and_single_metric_agreement():
    results = ranking_metrics(SCORES, HOLDOUT, ks=(2, 1, 2, 4), exclude=EXCLUDE)
    assert list(results) == [
        f"{name}@{k}" for k in (2, 1, 4) for name in ("precision", "recall", "ndcg")
    ]
    for k in (1, 2, 4):
        np.testing.assert_array_equal(
            results[f"ndcg@{k}"], ndcg_at_k(SCORES, HOLDOUT, k, exclude=EXCLUDE)
        )
    only_recall = ranking_metrics(SCORES, HOLDOUT, ks=(3,), metrics=("recall",))
    assert list(only_recall) == ["recall@3"]


def test_dense_and_sparse_inputs_agree():
    dense = ranking_metrics(SCORES, HOLDOUT.toarray(), (1, 3, 6), exclude=EXCLUDE.toarray())
    sparse = ranking_metrics(SCORES, HOLDOUT, (1, 3, 6), exclude=EXCLUDE)
    for name in dense:
        np.testing.assert_array_equal(dense[name], sparse[name])


def test_any_nonzero_is_relevant_and_explicit_zeros_are_not():
    holdout = scipy.sparse.csr_matrix(
        (np.array([4.0, 0.0, -1.0]), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 4)
    )
    scores = np.array([[0.4, 0.3, 0.2, 0.1]])
    # relevant = {0, 2}; top 2 = [0, 1] -> 1 hit
    assert precision_at_k(scores, holdout, 2) == pytest.approx([0.5])
    assert recall_at_k(scores, holdout, 2, normalization="relevant") == pytest.approx([0.5])


def test_excluded_items_are_never_ranked():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    exclude = np.array([[1, 1, 0, 1, 0]])
    # Only items 2 and 4 are rankable; the remaining positions are empty.
    np.testing.assert_array_equal(top_k_indices(scores, 4, exclude=exclude), [[2, 4, -1, -1]])
    # An excluded relevant item is never a hit but still counts as relevant:
    # relevant = {0, 2}; top 4 = [2, 4] -> 1 hit; precision 1/4, recall 1/min(4, 2)
    holdout = np.array([[1, 0, 1, 0, 0]])
    assert precision_at_k(scores, holdout, 4, exclude=exclude) == pytest.approx([1 / 4])
    assert recall_at_k(scores, holdout, 4, exclude=exclude) == pytest.approx([1 / 2])


def test_minus_inf_scores_are_never_ranked():
    scores = np.array([[-np.inf, 1.0, -np.inf, 0.5]])
    np.testing.assert_array_equal(top_k_indices(scores, 3), [[1, 3, -1]])


def test_ties_are_broken_by_lower_item_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1, 0.5]])
    np.testing.assert_array_equal(top_k_indices(scores, 1), [[1]])
    np.testing.assert_array_equal(top_k_indices(scores, 2), [[1, 0]])
    np.testing.assert_array_equal(top_k_indices(scores, 3), [[1, 0, 2]])
    np.testing.assert_array_equal(top_k_indices(scores, 6), [[1, 0, 2, 3, 5, 4]])
    constant = np.zeros((2, 50), dtype=np.float32)
    np.testing.assert_array_equal(top_k_indices(constant, 5), [[0, 1, 2, 3, 4]] * 2)
    exclude = np.zeros((2, 50))
    exclude[1, [0, 2]] = 1
    np.testing.assert_array_equal(
        top_k_indices(constant, 3, exclude=exclude), [[0, 1, 2], [1, 3, 4]]
    )


def test_ties_decide_hits():
    # All scores tie: the ranking is 0, 1, 2, ... so item 0 is a hit at rank 1 and item 5
    # is outside the top 3.
    scores = np.ones((1, 6))
    holdout = np.array([[1, 0, 0, 0, 0, 1]])
    # ndcg@3 = (1/log2(2)) / (1/log2(2) + 1/log2(3))
    assert ndcg_at_k(scores, holdout, 3) == pytest.approx([1 / (1 + 1 / LOG2_3)], abs=1e-12)


def test_users_without_relevant_items_are_nan():
    holdout = np.zeros((2, 4))
    results = ranking_metrics(np.random.rand(2, 4), holdout, (1, 4))
    assert all(np.isnan(values).all() for values in results.values())


def _reference_metrics(scores, holdout, exclude, k):
    """Slow, obviously correct per-user loop used to cross-check the vectorized code."""
    precision, recall_min, recall_relevant, ndcg = [], [], [], []
    for user in range(scores.shape[0]):
        relevant = {item for item in range(scores.shape[1]) if holdout[user, item] != 0}
        candidates = [
            item
            for item in range(scores.shape[1])
            if exclude[user, item] == 0 and scores[user, item] != -np.inf
        ]
        ranking = sorted(candidates, key=lambda item: (-scores[user, item], item))[:k]
        if not relevant:
            precision.append(np.nan)
            recall_min.append(np.nan)
            recall_relevant.append(np.nan)
            ndcg.append(np.nan)
            continue
        hits = [item in relevant for item in ranking]
        precision.append(sum(hits) / k)
        recall_min.append(sum(hits) / min(k, len(relevant)))
        recall_relevant.append(sum(hits) / len(relevant))
        dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
        idcg = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
        ndcg.append(dcg / idcg)
    return precision, recall_min, recall_relevant, ndcg


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agrees_with_reference_on_random_data(dtype):
    rng = np.random.default_rng(7)
    num_users, num_items = 40, 30
    # Few distinct values, so that ties are common, including across the cut-off.
    scores = rng.integers(0, 6, size=(num_users, num_items)).astype(dtype)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    exclude = (rng.random((num_users, num_items)) < 0.3).astype(np.float32)
    holdout = ((rng.random((num_users, num_items)) < 0.15) & (exclude == 0)).astype(np.float32)
    holdout[:3] = 0  # users without relevant items
    exclude[3, :28] = 1  # fewer rankable items than k
    ks = (1, 5, 10, 29, 30)
    results = ranking_metrics(
        scores, scipy.sparse.csr_matrix(holdout), ks, exclude=scipy.sparse.csr_matrix(exclude)
    )
    relevant_results = ranking_metrics(
        scores, holdout, ks, exclude=exclude, recall_normalization="relevant"
    )
    for k in ks:
        precision, recall_min, recall_relevant, ndcg = _reference_metrics(
            scores, holdout, exclude, k
        )
        np.testing.assert_allclose(results[f"precision@{k}"], precision, rtol=0, atol=1e-12)
        np.testing.assert_allclose(results[f"recall@{k}"], recall_min, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            relevant_results[f"recall@{k}"], recall_relevant, rtol=0, atol=1e-12
        )
        np.testing.assert_allclose(results[f"ndcg@{k}"], ndcg, rtol=0, atol=1e-12)


def test_top_k_agrees_with_stable_sort_on_random_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(64, 100)).astype(np.float32)
    expected = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 7, 50, 99, 100):
        np.testing.assert_array_equal(top_k_indices(scores, k), expected[:, :k])


@pytest.mark.parametrize("k", [0, -1, 7, 2.0, True, None])
def test_invalid_k(k):
    message = (
        "`k` should be a positive integer no larger than the number of items (6). "
        f"Received: k={k!r}"
    )
    with pytest.raises(ValueError) as error:
        precision_at_k(SCORES, HOLDOUT, k)
    assert str(error.value) == message
    with pytest.raises(ValueError, match="`k` should be a positive integer"):
        top_k_indices(SCORES, k)


def test_invalid_ks_metrics_and_normalization():
    with pytest.raises(ValueError, match="`k` should be"):
        ranking_metrics(SCORES, HOLDOUT, ks=(5, 10))
    with pytest.raises(ValueError, match="`ks` should contain at least one"):
        ranking_metrics(SCORES, HOLDOUT, ks=())
    with pytest.raises(ValueError, match="`metrics` should be"):
        ranking_metrics(SCORES, HOLDOUT, ks=3, metrics=("map",))
    with pytest.raises(ValueError, match="`normalization` should be one of"):
        recall_at_k(SCORES, HOLDOUT, 3, normalization="max")
    with pytest.raises(ValueError, match="`recall_normalization` should be one of"):
        ranking_metrics(SCORES, HOLDOUT, ks=3, recall_normalization="max")


def test_shape_mismatch_and_nan():
    with pytest.raises(
        ValueError, match=r"`holdout` should have the same shape as `scores` \(3, 6\)"
    ):
        precision_at_k(SCORES, HOLDOUT[:2], 3)
    with pytest.raises(ValueError, match="`exclude` should have the same shape"):
        precision_at_k(SCORES, HOLDOUT, 3, exclude=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="`scores` should be a 2D array"):
        top_k_indices(SCORES[0], 3)
    with pytest.raises(ValueError, match="`scores` should be a dense array"):
        top_k_indices(scipy.sparse.csr_matrix(SCORES), 3)
    scores = SCORES.copy()
    scores[1, 2] = np.nan
    with pytest.raises(ValueError, match="`scores` should not contain NaN. Received: 1 NaN"):
        ndcg_at_k(scores, HOLDOUT, 3)
