"""`EASE`: closed form against a direct inverse, memory refusal, fallback, saving."""

import logging
import mmap
import os

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.models import ease as ease_module
from keras_aerec.models.ease import EASE

NUM_ITEMS = 8


def rows(num_rows=25, seed=0):
    matrix = sp.random(num_rows, NUM_ITEMS, density=0.4, format="csr", random_state=seed)
    matrix.data[:] = 1.0
    return matrix.astype("float32")


def direct_weights(x, l2):
    precision = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


@pytest.mark.backend
def test_weights_match_the_direct_inverse_and_have_a_zero_diagonal():
    x = rows()
    model = EASE(NUM_ITEMS, l2=3.0).fit(x)
    weights = np.asarray(keras.ops.convert_to_numpy(model.get_layer("item_weights").kernel))
    expected = direct_weights(x.toarray().astype("float64"), 3.0)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    solved = ease_module.closed_form_weights(sp.csr_matrix(x), 3.0)
    # Stored as float32 in the solve buffer itself (no extra copy).
    assert solved.dtype == np.float32 and isinstance(solved.base, mmap.mmap)
    np.testing.assert_allclose(solved, expected, rtol=1e-5, atol=1e-7)
    assert model.solve_dtype == "float32"  # condition bound (bound + 3) / 3 is small
    np.testing.assert_allclose(model.score(x), x.toarray() @ expected, rtol=1e-5, atol=1e-6)
    assert not model.trainable_weights


def test_ill_conditioned_problems_are_solved_in_float64():
    x = rows()
    bound = ease_module._largest_eigenvalue_bound(x)
    eigenvalues = np.linalg.eigvalsh(x.T.toarray() @ x.toarray())
    assert eigenvalues.max() <= bound + 1e-9
    assert ease_module.solve_dtype(bound, 1e-3) == np.float64
    model = EASE(NUM_ITEMS, l2=1e-3).fit(x)
    assert model.solve_dtype == "float64"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.get_layer("item_weights").kernel),
        direct_weights(x.toarray().astype("float64"), 1e-3),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.backend
def test_fit_is_a_closed_form_that_ignores_keras_fit_arguments(caplog):
    model = EASE(NUM_ITEMS, l2=3.0)
    with caplog.at_level(logging.WARNING, logger="keras_aerec"):
        assert model.fit(rows(), epochs=10, batch_size=4) is model
    assert "ignoring ['batch_size', 'epochs']" in caplog.text
    refit = model.fit(rows(seed=2).toarray())
    np.testing.assert_allclose(
        refit.score(rows()), EASE(NUM_ITEMS, l2=3.0).fit(rows(seed=2)).score(rows()), rtol=1e-6
    )


@pytest.mark.backend
def test_rows_without_interactions_are_ranked_by_popularity():
    x = rows()
    model = EASE(NUM_ITEMS, l2=3.0).fit(x)
    scores = model.score(np.zeros((2, NUM_ITEMS)))
    popularity = np.asarray((x != 0).sum(axis=0)).ravel() / x.shape[0]
    np.testing.assert_allclose(scores, np.tile(popularity, (2, 1)), rtol=1e-6)
    assert not np.allclose(model.score(np.eye(NUM_ITEMS)[:1]), popularity)


def test_refuses_catalogues_whose_gram_matrix_does_not_fit(monkeypatch):
    with pytest.raises(ValueError, match=r"EASE needs \d+\.\d GiB .* num_items=10000000"):
        EASE(num_items=10_000_000)
    model = EASE(NUM_ITEMS)
    monkeypatch.setattr(ease_module, "available_memory_bytes", lambda: 100)
    with pytest.raises(ValueError, match="more than the 0.0 GiB of available memory"):
        model.fit(rows())


@pytest.mark.backend
def test_save_and_load_give_identical_scores(tmp_path):
    model = EASE(NUM_ITEMS, l2=2.0, item_ids=np.arange(NUM_ITEMS) + 1000).fit(rows())
    path = tmp_path / "ease.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, EASE)
    assert restored.get_config() == model.get_config()
    x = rows(6, seed=4)
    np.testing.assert_array_equal(restored.score(x), model.score(x))
    np.testing.assert_array_equal(restored.recommend(x, k=3)[0], model.recommend(x, k=3)[0])
    np.testing.assert_array_equal(
        restored.score(np.zeros((1, NUM_ITEMS))), model.score(np.zeros((1, NUM_ITEMS)))
    )


@pytest.mark.parametrize("l2", [0, -1.0, "500", True, float("nan"), float("inf")])
def test_rejects_a_non_positive_or_non_finite_l2(l2):
    with pytest.raises(ValueError, match='`l2` should be a positive float or "auto"'):
        EASE(NUM_ITEMS, l2=l2)


@pytest.mark.parametrize("l2_grid", [[], [1.0, -2.0], "100", [float("nan")]])
def test_rejects_a_bad_l2_grid(l2_grid):
    with pytest.raises(ValueError, match="`l2_grid` should be a non-empty sequence"):
        EASE(NUM_ITEMS, l2="auto", l2_grid=l2_grid)


def test_scoring_before_fit_and_fitting_nothing_are_refused():
    with pytest.raises(ValueError, match="not fitted yet: call `fit"):
        EASE(NUM_ITEMS).recommend(rows(2))
    with pytest.raises(ValueError, match="not fitted yet"):
        EASE().score(rows(2))
    with pytest.raises(ValueError, match="at least one interaction"):
        EASE(NUM_ITEMS).fit(sp.csr_matrix((0, NUM_ITEMS), dtype="float32"))
    with pytest.raises(ValueError, match="at least one interaction"):
        EASE(NUM_ITEMS).fit(np.zeros((3, NUM_ITEMS)))
    with pytest.raises(ValueError, match="should be a CSR matrix or dense array"):
        EASE(NUM_ITEMS).fit(iter([rows(2)]))
    with pytest.raises(ValueError, match="should be a 2D matrix"):
        EASE().fit(np.ones(NUM_ITEMS))


@pytest.mark.backend
def test_num_items_is_inferred_at_fit_and_survives_saving(tmp_path):
    x = rows()
    model = EASE(l2=3.0, name="inferred").fit(x)
    assert model.num_items == NUM_ITEMS and model.name == "inferred"
    np.testing.assert_allclose(model.score(x), EASE(NUM_ITEMS, l2=3.0).fit(x).score(x), rtol=1e-6)
    path = tmp_path / "ease.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.get_config() == model.get_config()
    np.testing.assert_array_equal(restored.score(x), model.score(x))
    with pytest.raises(ValueError, match=f"should have {NUM_ITEMS} columns"):
        model.fit(sp.random(5, NUM_ITEMS + 1, density=0.5, format="csr"))


@pytest.mark.backend
def test_compiled_fit_on_row_batches_is_the_closed_form():
    from keras_aerec.data.batching import RowBatches
    from keras_aerec.export._plan import _check_fitted

    x = rows()
    model = EASE(NUM_ITEMS, l2=3.0)
    model.compile()
    model.fit(RowBatches(x, y="x", batch_size=4, seed=0))
    np.testing.assert_allclose(model.score(x), EASE(NUM_ITEMS, l2=3.0).fit(x).score(x), rtol=1e-6)
    _check_fitted(model)  # export takes it although the optimizer made no step


def planted_clusters(num_users, seed):
    """Users of 4 item clusters plus popularity-skewed noise: a middle l2 ranks best."""
    rng = np.random.default_rng(seed)
    num_items = 40
    cluster = rng.integers(0, 4, num_users)
    dense = rng.random((num_users, num_items)) < np.linspace(0.3, 0.0, num_items)
    in_cluster = (np.arange(num_items)[None, :] // 10) == cluster[:, None]
    dense |= in_cluster & (rng.random((num_users, num_items)) < 0.5)
    return sp.csr_matrix(dense.astype("float32"))


def test_auto_l2_keeps_the_grid_value_with_the_best_validation_ndcg():
    from keras_aerec.metrics.ranking import ndcg_at_k

    train = planted_clusters(60, seed=0)
    held = planted_clusters(60, seed=1).tocoo()
    fold = np.random.default_rng(2).random(held.nnz) < 0.7
    split = [
        sp.csr_matrix((held.data[m], (held.row[m], held.col[m])), shape=held.shape)
        for m in (fold, ~fold)
    ]
    grid = [0.01, 30.0, 1e5]
    expected = {
        l2: np.nanmean(
            ndcg_at_k(
                split[0] @ direct_weights(train.toarray(), l2), split[1], 40, exclude=split[0]
            )
        )
        for l2 in grid
    }
    best = max(expected, key=expected.get)
    assert expected[best] > min(expected.values()) + 0.01  # the grid values really differ
    model = EASE(l2="auto", l2_grid=grid).fit(train, validation_data=tuple(split))
    assert model.selected_l2 == best
    np.testing.assert_allclose(
        model.score(split[0]), EASE(l2=best).fit(train).score(split[0]), rtol=1e-5, atol=1e-6
    )
    # Without validation data, 10 % of the training users are held out internally.
    assert EASE(l2="auto", l2_grid=grid).fit(train).selected_l2 in grid
    with pytest.raises(ValueError, match="needs validation users"):
        EASE(l2="auto").fit(rows(5))


def test_large_catalogue_refusal_names_the_bytes_and_max_items(monkeypatch):
    monkeypatch.setattr(ease_module, "available_memory_bytes", lambda: 24 * 2**30)
    with pytest.raises(ValueError, match=r"160,000,000,000 bytes.*`max_items`"):
        EASE(num_items=100_000)
    model = EASE(num_items=100_000, max_items=20_000)
    assert model.get_config()["max_items"] == 20_000


@pytest.mark.backend
def test_max_items_keeps_the_most_popular_items_and_scores_the_others_minus_inf(tmp_path):
    x = rows(40, seed=1)
    popularity = np.asarray((x != 0).sum(axis=0)).ravel()
    kept = np.sort(np.argsort(-popularity, kind="stable")[:5])
    model = EASE(NUM_ITEMS, l2=2.0, max_items=5).fit(x)
    scores = model.score(x[:6])
    unkept = np.setdiff1d(np.arange(NUM_ITEMS), kept)
    assert np.all(np.isneginf(scores[:, unkept]))
    full = x[:6].toarray()[:, kept] @ direct_weights(x.toarray()[:, kept], 2.0)
    np.testing.assert_allclose(scores[:, kept], full, rtol=1e-4, atol=1e-6)
    # -1 pads the lists of rows with fewer than k unseen kept items.
    assert set(model.recommend(x[:6], k=2)[0].ravel()) - {-1} <= set(kept)
    path = tmp_path / "ease.keras"
    model.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path).score(x[:6]), scores)


@pytest.mark.large
@pytest.mark.skipif(
    not os.environ.get("KERAS_AEREC_LARGE_TESTS"), reason="set KERAS_AEREC_LARGE_TESTS=1 (minutes)"
)
def test_sixteen_thousand_items_fit_without_crashing():
    # OpenBLAS' threaded Cholesky segfaulted here (SkylakeX kernels on AMD).
    from benchmarks.bench_ease_large import power_law_catalogue

    x = power_law_catalogue(50_000, 16_000)
    scores = EASE(num_items=16_000).fit(x).score(x[:10])
    assert np.isfinite(scores).all()


def test_an_indefinite_float32_solve_falls_back_to_float64_then_names_l2(monkeypatch):
    monkeypatch.setattr(ease_module, "_FLOAT32_MAX_CONDITION", float("inf"))
    attempts = []
    solve = ease_module._weights_in_place
    monkeypatch.setattr(
        ease_module,
        "_weights_in_place",
        lambda matrix, l2: attempts.append(matrix.dtype.name) or solve(matrix, l2),
    )
    x = rows(3)  # 3 users, 8 items: X^T X is singular
    with pytest.raises(ValueError, match="`l2` is too small.*l2=1e-30"):
        ease_module.closed_form_weights(x, 1e-30)
    assert attempts == ["float32", "float64"]
