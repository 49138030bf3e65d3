"""Synthetic explicit-feedback data with popularity skew, latent tastes and temporal drift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_aerec.data.interactions import Interactions, _csr_from_sorted

# Users are generated in batches so that no more than this many user x item scores exist
# at once (about 32 MB of float64).
_MAX_SCORES_PER_BATCH = 4_000_000
_START_TIME = 946_684_800  # 2000-01-01 UTC
_NUM_GENRES = 8


def synthetic(
    num_users: int = 1000,
    num_items: int = 500,
    density: float = 0.05,
    latent_dim: int = 16,
    seed: int = 0,
    popularity_exponent: float = 1.0,
    preference_strength: float = 1.5,
    drift: float = 1.5,
    rating_noise: float = 0.5,
    name: str = "synthetic",
) -> Interactions:
    """Generates MovieLens-like ratings (1..5) with timestamps, deterministic for a seed.

    - Item popularity follows a Zipf-like power law (`rank ** -popularity_exponent`,
      ranks shuffled over item ids).
    - Users and items have Gaussian latent factors; a user picks an item with
      probability proportional to `popularity * exp(preference_strength * affinity)`,
      scaled to the user's activity (log-normal, mean `density * num_items`).
    - Ratings are the standardized affinity of the picked pairs plus a user bias and
      Gaussian noise, rounded and clipped to 1..5.
    - Time: each user's taste turns, over their history, from a start taste `a` to
      `cos(drift) * a + sin(drift) * b` (`b` a second random taste). Each picked item
      is consumed around the moment the moving taste likes it most, so a user's
      consecutive items are similar and recent items predict the next ones better than
      old ones. Timestamps increase strictly per user.

    Args:
        num_users: number of users (rows).
        num_items: number of items (columns); unpicked items stay as empty columns.
        density: target fraction of the matrix that is filled (0 < density <= 1).
        latent_dim: dimension of the latent factors.
        seed: random seed; the same arguments give the same data.
        popularity_exponent: Zipf exponent of item popularity (0: uniform).
        preference_strength: how much latent affinity (vs popularity) drives choices.
        drift: angle (radians, 0..pi) the taste turns over a user's history
            (0: a fixed taste and a random order, no sequential signal).
        rating_noise: standard deviation of the rating noise (in rating points).
        name: dataset name stored on the result.

    Returns:
        `Interactions` with ratings, timestamps and `.items` (`title` "Item 17",
        `genres` a one-element list such as `["Genre 3"]`), item ids `0..num_items-1`
        and user ids `0..num_users-1`.

    Example:

    >>> data = synthetic(num_users=50, num_items=40, density=0.1, seed=1)
    >>> data.num_users, data.num_items
    (50, 40)
    """
    for argument, value in (
        ("num_users", num_users),
        ("num_items", num_items),
        ("latent_dim", latent_dim),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"`{argument}` should be a positive integer. Received: {argument}={value!r}"
            )
    if not 0 < density <= 1:
        raise ValueError(f"`density` should be in (0, 1]. Received: density={density!r}")
    for argument, value in (
        ("popularity_exponent", popularity_exponent),
        ("preference_strength", preference_strength),
        ("drift", drift),
        ("rating_noise", rating_noise),
    ):
        if not value >= 0:
            raise ValueError(f"`{argument}` should be >= 0. Received: {argument}={value!r}")
    if drift > np.pi:
        raise ValueError(f"`drift` should be at most pi (radians). Received: drift={drift!r}")

    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(latent_dim)
    # The scale is folded into the item factors, so affinities have unit variance.
    item_factors = rng.standard_normal((num_items, latent_dim)).astype(np.float32)
    item_factors_t = np.ascontiguousarray(item_factors.T * np.float32(scale))
    start_tastes = rng.standard_normal((num_users, latent_dim)).astype(np.float32)
    end_tastes = rng.standard_normal((num_users, latent_dim)).astype(np.float32)
    user_bias = rng.normal(0.0, 0.35, num_users)
    ranks = rng.permutation(num_items) + 1.0
    log_popularity = (-popularity_exponent * np.log(ranks)).astype(np.float32)

    mean_count = density * num_items
    sigma = 0.8
    counts = rng.lognormal(np.log(mean_count) - sigma**2 / 2, sigma, num_users)
    counts = np.clip(counts, 1.0, num_items)

    batch_size = max(1, _MAX_SCORES_PER_BATCH // num_items)
    rows_parts, cols_parts, affinity_parts, angle_parts = [], [], [], []
    for start in range(0, num_users, batch_size):
        stop = min(start + batch_size, num_users)
        start_affinity = start_tastes[start:stop] @ item_factors_t
        end_affinity = end_tastes[start:stop] @ item_factors_t
        affinity = _best_affinity(start_affinity, end_affinity, drift)
        log_weight = preference_strength * affinity + log_popularity
        log_weight -= log_weight.max(axis=1, keepdims=True)
        probability = _inclusion_probabilities(np.exp(log_weight), counts[start:stop])
        chosen = rng.random(probability.shape, dtype=np.float32) < probability
        # Every user gets at least one interaction: their Gumbel-max item.
        empty = np.flatnonzero(~chosen.any(axis=1))
        if len(empty):
            gumbel = log_weight[empty] - np.log(-np.log(rng.random((len(empty), num_items))))
            chosen[empty, gumbel.argmax(axis=1)] = True
        rows, cols = np.nonzero(chosen)  # row-major: sorted by (row, col)
        rows_parts.append(rows + start)
        cols_parts.append(cols)
        affinity_parts.append(affinity[rows, cols])
        angle_parts.append(_best_angle(start_affinity[rows, cols], end_affinity[rows, cols], drift))
    rows = np.concatenate(rows_parts)
    cols = np.concatenate(cols_parts)
    affinity = np.concatenate(affinity_parts).astype(np.float64)

    # Position in the user's history: where along the taste trajectory the item is best
    # liked (0: start, 1: end), jittered; random order without drift.
    if drift > 0:
        position = np.concatenate(angle_parts) / drift
        position = position + 0.05 * rng.standard_normal(len(rows))
    else:
        position = rng.random(len(rows))
    timestamps = _timestamps(rng, rows, position, num_users)

    standardized = (affinity - affinity.mean()) / max(affinity.std(), 1e-12)
    ratings = 3.6 + standardized + user_bias[rows] + rating_noise * rng.standard_normal(len(rows))
    ratings = np.clip(np.rint(ratings), 1, 5).astype(np.float32)

    matrix = _csr_from_sorted(rows, cols, ratings, (num_users, num_items))
    genre = np.argmax(item_factors[:, :_NUM_GENRES], axis=1)
    items = pd.DataFrame(
        {
            "title": [f"Item {i}" for i in range(num_items)],
            "genres": [[f"Genre {g}"] for g in genre],
        },
        index=pd.Index(np.arange(num_items), name="item_id"),
    )
    return Interactions(
        matrix,
        np.arange(num_users),
        np.arange(num_items),
        timestamps=timestamps,
        items=items,
        name=name,
    )


def _inclusion_probabilities(weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-row probabilities proportional to `weights`, capped at 1, summing to ~`counts`."""
    probability = weights
    probability *= (counts / weights.sum(axis=1, dtype=np.float64)).astype(np.float32)[:, None]
    for _ in range(2):  # redistribute the mass lost to the cap over the uncapped items
        capped = probability >= 1.0
        if not capped.any():
            break
        probability[capped] = 1.0
        uncapped_mass = probability.sum(axis=1, dtype=np.float64) - capped.sum(axis=1)
        factor = np.where(
            uncapped_mass > 0, (counts - capped.sum(axis=1)) / np.maximum(uncapped_mass, 1e-12), 1.0
        )
        probability *= np.maximum(factor, 1.0).astype(np.float32)[:, None]
        probability[capped] = 1.0
    return np.minimum(probability, 1.0, out=probability)


def _best_affinity(start: np.ndarray, end: np.ndarray, drift: float) -> np.ndarray:
    """Max over angles t in [0, drift] of cos(t) * start + sin(t) * end, elementwise.

    With phi = atan2(end, start), the curve is hypot(start, end) * cos(t - phi): the
    maximum is at t = phi when phi lies in [0, drift], else at one of the end points
    (valid for 0 <= drift <= pi).
    """
    if drift == 0:
        return start
    cos, sin = np.float32(np.cos(drift)), np.float32(np.sin(drift))
    inside = (end >= 0) & (end * cos - start * sin <= 0)  # phi in [0, drift]
    return np.where(inside, np.hypot(start, end), np.maximum(start, cos * start + sin * end))


def _best_angle(start: np.ndarray, end: np.ndarray, drift: float) -> np.ndarray:
    """The angle in [0, drift] where `_best_affinity` is reached."""
    if drift == 0:
        return np.zeros(start.shape)
    phi = np.arctan2(end, start).astype(np.float64)
    at_end = np.cos(drift) * start + np.sin(drift) * end
    outside = np.where(start >= at_end, 0.0, drift)
    return np.where((phi >= 0) & (phi <= drift), phi, outside)


def _timestamps(rng, rows, position, num_users) -> np.ndarray:
    """Strictly increasing per-user times, in the order of `position` within each user."""
    # One argsort instead of a lexsort: the row plus the position squashed into [0, 1).
    order = np.argsort(rows + 0.5 + 0.499 * np.tanh(position - 0.5), kind="stable")
    gaps = np.rint(rng.exponential(6 * 3600.0, len(rows))).astype(np.int64) + 1
    user_start = _START_TIME + rng.integers(0, 3 * 365 * 86400, num_users)
    # Cumulative gaps restarted at every user: subtract the running total before the user.
    elapsed = np.cumsum(gaps[order])
    row_starts = np.searchsorted(rows[order], np.arange(num_users))
    before = np.concatenate([[0], elapsed])[row_starts]
    times_sorted = user_start[rows[order]] + elapsed - before[rows[order]]
    timestamps = np.empty(len(rows), dtype=np.int64)
    timestamps[order] = times_sorted
    return timestamps
