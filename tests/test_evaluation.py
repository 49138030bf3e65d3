import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse

from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.evaluation.rating import evaluate_rating
from keras_aerec.metrics.ranking import ranking_metrics


class FixedScores:
    """A fake model whose `score` returns precomputed rows and records its calls."""

    def __init__(self, scores):
        self.scores = scores
        self.calls = []

    def score(self, rows, users=None):
        self.calls.append((rows.shape[0], None if users is None else users.copy()))
        return self.scores[users]


def _random_part(num_users=37, num_items=25, seed=0):
    rng = np.random.default_rng(seed)
    fold_in = rng.random((num_users, num_items)) < 0.2
    holdout = (rng.random((num_users, num_items)) < 0.15) & ~fold_in
    holdout[[0, 5, 6]] = False  # users without holdout items
    part = SimpleNamespace(
        fold_in=scipy.sparse.csr_matrix(fold_in.astype(np.float32)),
        holdout=scipy.sparse.csr_matrix(holdout.astype(np.float32)),
        train_rows=np.arange(num_users),
    )
    scores = rng.random((num_users, num_items)).astype(np.float32)
    return part, scores


def test_evaluate_ranking_matches_metrics_on_the_whole_matrix():
    part, scores = _random_part()
    model = FixedScores(scores)
    results, per_user = evaluate_ranking(
        model, part, ks=(1, 5, 10), batch_size=8, return_per_user=True
    )
    expected = ranking_metrics(scores, part.holdout, (1, 5, 10), exclude=part.fold_in)
    assert list(results) == [*expected, "num_users", "num_skipped"]
    assert results["num_users"] == 34
    assert results["num_skipped"] == 3
    for name, values in expected.items():
        np.testing.assert_array_equal(per_user[name], values)  # NaN for skipped users
        assert results[name] == pytest.approx(np.nanmean(values), abs=1e-12)
    # Skipped users are never scored; evaluated ones are passed with their train rows.
    scored_users = np.concatenate([users for _, users in model.calls])
    np.testing.assert_array_equal(scored_users, np.setdiff1d(np.arange(37), [0, 5, 6]))
    assert [size for size, _ in model.calls] == [8, 8, 8, 8, 2]


def test_evaluate_ranking_is_batch_size_invariant():
    part, scores = _random_part(seed=1)
    small = evaluate_ranking(FixedScores(scores), part, ks=(3, 25), batch_size=1)
    large = evaluate_ranking(FixedScores(scores), part, ks=(3, 25), batch_size=1000)
    assert small == large


def test_evaluate_ranking_with_function_and_no_train_rows():
    # Strong generalization: users are unseen, `users` is None and the function scores
    # from the fold-in rows alone (here: item popularity within the batch, a tie-heavy
    # score).
    part, _ = _random_part(seed=2)
    part.train_rows = None
    seen_users = []

    def score_fn(rows, users=None):
        seen_users.append(users)
        return np.tile(np.asarray(part.fold_in.sum(axis=0)), (rows.shape[0], 1))

    results = evaluate_ranking(
        score_fn, part, ks=(5,), metrics=("recall",), recall_normalization="relevant"
    )
    assert seen_users == [None]
    assert list(results) == ["recall@5", "num_users", "num_skipped"]
    popularity = np.tile(np.asarray(part.fold_in.sum(axis=0)), (37, 1))
    expected = ranking_metrics(
        popularity,
        part.holdout,
        5,
        exclude=part.fold_in,
        metrics=("recall",),
        recall_normalization="relevant",
    )["recall@5"]
    assert results["recall@5"] == pytest.approx(np.nanmean(expected), abs=1e-12)


def test_evaluate_ranking_hand_example():
    # Two users x four items, k = 2. Fold-in: user 0 saw item 0; user 1 saw nothing.
    # user 0 ranking after exclusion: 1 (0.8), 3 (0.5), 2 (0.1); holdout {3}
    #   -> precision 1/2, recall 1/min(2, 1) = 1, ndcg (1/log2(3)) / 1
    # user 1 ranking: 2 (0.9), 0 (0.7), 1, 3; holdout {2, 1}
    #   -> precision 1/2, recall 1/2, ndcg 1 / (1 + 1/log2(3))
    fold_in = scipy.sparse.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    holdout = scipy.sparse.csr_matrix(np.array([[0, 0, 0, 1], [0, 1, 1, 0]], dtype=np.float32))
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.7, 0.2, 0.9, 0.1]])
    part = SimpleNamespace(fold_in=fold_in, holdout=holdout, train_rows=np.array([4, 2]))
    calls = []

    def score_fn(rows, users=None):
        calls.append(users.tolist())
        return scores

    results = evaluate_ranking(score_fn, part, ks=(2,))
    assert calls == [[4, 2]]
    assert results["precision@2"] == pytest.approx(0.5, abs=1e-12)
    assert results["recall@2"] == pytest.approx((1 + 1 / 2) / 2, abs=1e-12)
    ndcg = (1 / math.log2(3) + 1 / (1 + 1 / math.log2(3))) / 2
    assert results["ndcg@2"] == pytest.approx(ndcg, abs=1e-12)
    assert results["num_users"] == 2 and results["num_skipped"] == 0


def test_evaluate_ranking_validation():
    part, scores = _random_part()
    with pytest.raises(ValueError, match=r"should have shape \(batch rows, columns\) = \(8, 25\)"):
        evaluate_ranking(
            lambda rows, users=None: scores[users][:, :24], part, ks=(5,), batch_size=8
        )
    bad = scores.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="should not contain NaN"):
        evaluate_ranking(FixedScores(bad), part, ks=(5,))
    # Invalid arguments fail before the model is called.
    model = FixedScores(scores)
    with pytest.raises(ValueError, match=r"no larger than the number of items \(25\)"):
        evaluate_ranking(model, part)  # default ks go up to 100
    with pytest.raises(ValueError, match="`batch_size` should be a positive integer"):
        evaluate_ranking(model, part, ks=(5,), batch_size=0)
    with pytest.raises(ValueError, match="`recall_normalization` should be one of"):
        evaluate_ranking(model, part, ks=(5,), recall_normalization="all")
    assert model.calls == []
    with pytest.raises(ValueError, match="`model_or_score_fn` should have a `score` method"):
        evaluate_ranking(object(), part, ks=(5,))
    with pytest.raises(ValueError, match="`part.train_rows` should have one entry per row"):
        evaluate_ranking(model, SimpleNamespace(**{**vars(part), "train_rows": [0]}), ks=(5,))


def test_evaluate_ranking_without_evaluable_users():
    part, scores = _random_part()
    part.holdout = scipy.sparse.csr_matrix(part.holdout.shape, dtype=np.float32)
    results = evaluate_ranking(FixedScores(scores), part, ks=(5,))
    assert math.isnan(results["ndcg@5"])
    assert results["num_users"] == 0 and results["num_skipped"] == 37


# Rating evaluation: 3 rows x 4 columns, in the model's orientation.
#   inputs:  row 0 = [5, 0, 3, 0]   (mean 4)
#            row 1 = [0, 0, 0, 0]   (empty: its targets get the default)
#            row 2 = [4, 2, 0, 0]   (mean 3)
#            column 3 has no input rating at all (its targets get the default)
RATING_INPUTS = scipy.sparse.csr_matrix(
    np.array([[5, 0, 3, 0], [0, 0, 0, 0], [4, 2, 0, 0]], dtype=np.float32)
)
RATING_TARGETS = scipy.sparse.csr_matrix(
    np.array([[5, 4, 0, 2], [5, 0, 0, 0], [0, 0, 3, 0]], dtype=np.float32)
)
COLUMN_OFFSETS = np.array([0.0, 1.5, -2.5, 0.0])


def row_mean_plus_offset(rows):
    """Fake model: each row's mean input rating plus a per-column offset."""
    rows = scipy.sparse.csr_matrix(rows)
    means = np.asarray(rows.sum(axis=1)).ravel() / np.diff(rows.indptr)
    return means[:, None] + COLUMN_OFFSETS[None, :]


def test_evaluate_rating_hand_example():
    # target     prediction                         error
    # (0,0) = 5  4 + 0   = 4                         -1
    # (0,1) = 4  4 + 1.5 = 5.5 -> clipped to 5       +1
    # (0,3) = 2  column 3 unseen -> default 3        +1
    # (1,0) = 5  row 1 empty -> default 3            -2
    # (2,2) = 3  3 - 2.5 = 0.5 -> clipped to 1       -2
    # RMSE = sqrt((1 + 1 + 1 + 4 + 4) / 5) = sqrt(2.2); MAE = 7 / 5
    results = evaluate_rating(row_mean_plus_offset, RATING_INPUTS, RATING_TARGETS)
    assert results["rmse"] == pytest.approx(math.sqrt(2.2), abs=1e-12)
    assert results["mae"] == pytest.approx(1.4, abs=1e-12)
    assert results["num_ratings"] == 5
    assert results["num_defaulted"] == 2


def test_evaluate_rating_mean_default_and_no_clipping():
    # default = mean input rating = (5 + 3 + 4 + 2) / 4 = 3.5: defaulted errors -1.5, +1.5
    # RMSE = sqrt((1 + 1 + 2.25 + 2.25 + 4) / 5) = sqrt(2.1); MAE = (1 + 1 + 1.5 + 1.5 + 2) / 5
    results = evaluate_rating(
        row_mean_plus_offset, RATING_INPUTS, RATING_TARGETS, default_rating="mean"
    )
    assert results["rmse"] == pytest.approx(math.sqrt(2.1), abs=1e-12)
    assert results["mae"] == pytest.approx(1.4, abs=1e-12)
    # No clipping: errors -1, +1.5, +1, -2, -2.5 -> sqrt((1 + 2.25 + 1 + 4 + 6.25) / 5)
    results = evaluate_rating(
        row_mean_plus_offset, RATING_INPUTS, RATING_TARGETS, rating_range=None
    )
    assert results["rmse"] == pytest.approx(math.sqrt(14.5 / 5), abs=1e-12)
    assert results["mae"] == pytest.approx(8.0 / 5, abs=1e-12)


def test_evaluate_rating_scores_only_rows_with_predictable_targets():
    calls = []

    class Model:
        def score(self, rows):
            calls.append(rows.shape[0])
            return row_mean_plus_offset(rows)

    evaluate_rating(Model(), RATING_INPUTS, RATING_TARGETS, batch_size=1)
    assert calls == [1, 1]  # rows 0 and 2; row 1 is empty


def test_evaluate_rating_is_batch_size_invariant():
    rng = np.random.default_rng(0)
    ratings = rng.integers(1, 6, size=(60, 30)) * (rng.random((60, 30)) < 0.3)
    is_target = rng.random((60, 30)) < 0.3
    inputs = scipy.sparse.csr_matrix(np.where(is_target, 0, ratings).astype(np.float32))
    targets = scipy.sparse.csr_matrix(np.where(is_target, ratings, 0).astype(np.float32))
    weights = rng.normal(size=(30, 30)).astype(np.float32) * 0.1

    def linear(rows):
        return 3.0 + rows @ weights

    small = evaluate_rating(linear, inputs, targets, batch_size=1)
    large = evaluate_rating(linear, inputs, targets, batch_size=1000)
    assert small == large
    assert small["num_ratings"] == targets.nnz


def test_evaluate_rating_validation():
    targets = RATING_TARGETS.copy()
    targets.data[0] = np.nan
    with pytest.raises(ValueError, match="`targets` should not contain NaN"):
        evaluate_rating(row_mean_plus_offset, RATING_INPUTS, targets)
    with pytest.raises(ValueError, match="`targets` should have the same shape"):
        evaluate_rating(row_mean_plus_offset, RATING_INPUTS, RATING_TARGETS[:2])
    with pytest.raises(ValueError, match=r"should have shape \(batch rows, columns\) = \(2, 4\)"):
        evaluate_rating(lambda rows: np.zeros((2, 3)), RATING_INPUTS, RATING_TARGETS)
    with pytest.raises(ValueError, match="`rating_range` should be a pair"):
        evaluate_rating(row_mean_plus_offset, RATING_INPUTS, RATING_TARGETS, rating_range=(5, 1))
    with pytest.raises(ValueError, match="`default_rating` should be a number or 'mean'"):
        evaluate_rating(
            row_mean_plus_offset, RATING_INPUTS, RATING_TARGETS, default_rating="median"
        )
    with pytest.raises(ValueError, match="`targets` should contain at least one rating"):
        evaluate_rating(
            row_mean_plus_offset, RATING_INPUTS, scipy.sparse.csr_matrix((3, 4), dtype=np.float32)
        )


@pytest.mark.backend
@pytest.mark.parametrize(
    "name, reads_entries",
    [("autorec", True), ("deeprec", True), ("deeprec_tied", False)],
)
def test_evaluate_rating_from_entries_equals_whole_rows(name, reads_entries):
    from keras_aerec.models.auto_rec import AutoRec
    from keras_aerec.models.deep_rec import DeepRec

    rng = np.random.default_rng(0)
    ratings = rng.integers(1, 6, (40, 30)) * (rng.random((40, 30)) < 0.3)
    inputs = scipy.sparse.csr_matrix(
        np.where(rng.random((40, 30)) < 0.8, ratings, 0).astype("float32")
    )
    targets = scipy.sparse.csr_matrix(ratings - inputs.toarray(), dtype="float32")
    if name == "autorec":
        model = AutoRec(30, hidden_units=6, variant="user")
    else:
        model = DeepRec(30, hidden_units=(6, 4), variant="user", tied=name == "deeprec_tied")
    model.set_weights(model.get_weights())  # random weights count as trained
    assert (model._code_model() is not None) == reads_entries
    # Batches of 7 rows: the last batch is partial and the entries' rows repeat.
    fast = evaluate_rating(model, inputs, targets, rating_range=None, batch_size=7)
    whole = evaluate_rating(model.score, inputs, targets, rating_range=None, batch_size=7)
    assert fast["num_ratings"] == whole["num_ratings"] == targets.nnz
    assert fast["rmse"] == pytest.approx(whole["rmse"], rel=1e-5)
    assert fast["mae"] == pytest.approx(whole["mae"], rel=1e-5)
