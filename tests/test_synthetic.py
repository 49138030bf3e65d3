import numpy as np
import pytest

from keras_aerec.data.synthetic import _best_affinity, synthetic


def test_deterministic_for_a_seed():
    a = synthetic(num_users=200, num_items=100, seed=3)
    b = synthetic(num_users=200, num_items=100, seed=3)
    c = synthetic(num_users=200, num_items=100, seed=4)
    assert (a.matrix != b.matrix).nnz == 0
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert a.matrix.nnz != c.matrix.nnz or (a.matrix != c.matrix).nnz > 0


def test_shapes_density_and_metadata():
    x = synthetic(num_users=300, num_items=200, density=0.05, seed=0)
    assert (x.num_users, x.num_items) == (300, 200)
    assert x.user_ids.tolist() == list(range(300))
    assert 0.03 < x.num_interactions / (300 * 200) < 0.07
    assert np.diff(x.matrix.indptr).min() >= 1  # every user has an interaction
    assert x.items.loc[17, "title"] == "Item 17"
    assert x.items.loc[17, "genres"][0].startswith("Genre ")
    assert x.name == "synthetic"


def test_ratings_are_whole_stars_with_a_spread():
    x = synthetic(num_users=300, num_items=200, seed=0)
    values, counts = np.unique(x.matrix.data, return_counts=True)
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert counts.max() / counts.sum() < 0.5
    assert 3.0 < x.matrix.data.mean() < 4.2


def test_popularity_is_skewed():
    x = synthetic(num_users=500, num_items=400, seed=0)
    counts = np.sort(np.bincount(x.matrix.indices, minlength=x.num_items))[::-1]
    assert counts[:40].sum() / counts.sum() > 0.3  # top 10% of items
    flat = synthetic(num_users=500, num_items=400, seed=0, popularity_exponent=0.0)
    flat_counts = np.sort(np.bincount(flat.matrix.indices, minlength=flat.num_items))[::-1]
    assert flat_counts[:40].sum() / flat_counts.sum() < counts[:40].sum() / counts.sum()


def test_timestamps_aligned_and_strictly_increasing_per_user():
    x = synthetic(num_users=100, num_items=80, seed=1)
    assert x.timestamps.shape == x.matrix.data.shape
    assert x.timestamps.dtype == np.int64
    for row in range(x.num_users):
        times = np.sort(x.timestamps[x.matrix.indptr[row] : x.matrix.indptr[row + 1]])
        assert np.all(np.diff(times) > 0)
    assert len(x.sequences()) == 100


def consecutive_minus_distant_similarity(data):
    binary = data.matrix.copy()
    binary.data[:] = 1.0
    columns = binary.T.tocsr().astype(np.float64)
    norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=1))).ravel()
    similarity = (columns @ columns.T).toarray() / np.outer(norms, norms).clip(1e-12)
    gaps = []
    for sequence in data.sequences():
        if len(sequence) < 12:
            continue
        quarter = len(sequence) // 4
        consecutive = similarity[sequence[:-1], sequence[1:]].mean()
        distant = similarity[sequence[:quarter][:, None], sequence[-quarter:][None, :]].mean()
        gaps.append(consecutive - distant)
    return float(np.mean(gaps))


def test_drift_gives_sequential_signal():
    drifting = synthetic(num_users=600, num_items=300, density=0.06, seed=2, drift=1.5)
    static = synthetic(num_users=600, num_items=300, density=0.06, seed=2, drift=0.0)
    # Consecutive items are more alike than a user's first and last items only with drift.
    assert consecutive_minus_distant_similarity(drifting) > 0.008
    assert abs(consecutive_minus_distant_similarity(static)) < 0.005


def test_best_affinity_matches_a_grid_search():
    rng = np.random.default_rng(0)
    start, end = rng.standard_normal((2, 2000)).astype(np.float32)
    for drift in (0.0, 0.7, 1.5, 3.0):
        angles = np.linspace(0.0, drift, 1001)[:, None]
        grid = (np.cos(angles) * start + np.sin(angles) * end).max(axis=0)
        np.testing.assert_allclose(_best_affinity(start, end, drift), grid, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_users": 0}, "`num_users` should be a positive integer"),
        ({"latent_dim": 2.5}, "`latent_dim` should be a positive integer"),
        ({"density": 0.0}, r"`density` should be in \(0, 1\]"),
        ({"drift": 4.0}, "`drift` should be at most pi"),
        ({"rating_noise": -1.0}, "`rating_noise` should be >= 0"),
    ],
)
def test_argument_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic(**kwargs)
