"""Top-k ranking metrics per user: Precision@k, Recall@k and NDCG@k (numpy).

All functions take a dense score matrix (users x items), a binary relevance matrix of the
same shape (`holdout`, CSR or dense; any nonzero entry is relevant) and an optional
exclusion matrix (`exclude`, CSR or dense; any nonzero entry is excluded, typically the
fold-in items). They return one float64 value per user, NaN for users without relevant
items (average with `np.nanmean`, or drop those users as `evaluate_ranking` does).

Ranking rules, shared by every metric through `top_k_indices`:

- Items are ranked by decreasing score; equal scores are ranked by increasing item index,
  so results never depend on the sorting algorithm.
- Excluded items, and items scored `-inf`, are never ranked. When a user has fewer than
  `k` rankable items, the remaining positions are empty (index -1) and count as misses.
- Scores must not contain NaN.
- Relevant items that are also excluded can never be hit but still count in |relevant|.
"""

import numpy as np
import scipy.sparse

METRIC_NAMES = ("precision", "recall", "ndcg")
RECALL_NORMALIZATIONS = ("min", "relevant")


def top_k_indices(scores, k: int, exclude=None) -> np.ndarray:
    """Indices of the `k` best-scored items of each user, best first.

    The k candidates are found with `np.argpartition` and only those are sorted. Ties are
    broken by the lower item index: when items tie with the k-th best score and only some
    of them fit, the lowest indices are kept (those rows are re-ranked with a stable sort).

    Args:
        scores: dense float array (users x items). Must not contain NaN.
        k: number of items to return, a positive integer no larger than the number of items.
        exclude: optional CSR or dense array of the same shape; nonzero entries are set to
            `-inf` and never ranked.

    Returns:
        int64 array (users x k) of item indices, best first. Positions beyond a user's
        number of rankable items (neither excluded nor scored `-inf`) hold -1.

    Example:
        >>> top_k_indices(np.array([[0.2, 0.9, 0.2, 0.5]]), k=3, exclude=np.array([[0, 0, 0, 1]]))
        array([[1, 0, 2]])
    """
    scores = _check_scores(scores)
    _check_k(k, scores.shape[1])
    return _top_k(_exclude(scores, exclude), k)


def precision_at_k(scores, holdout, k: int, exclude=None) -> np.ndarray:
    """Precision@k per user.

    Precision@k = hits@k / k, where hits@k is the number of relevant items among the top k.

    Args:
        scores: dense float array (users x items). Must not contain NaN.
        holdout: CSR or dense array of the same shape; nonzero entries are relevant.
        k: cut-off, a positive integer no larger than the number of items.
        exclude: optional CSR or dense array; nonzero entries are never ranked.

    Returns:
        float64 array (users,), NaN for users without relevant items.

    Example:
        >>> precision_at_k(np.array([[0.9, 0.1, 0.5]]), np.array([[1, 1, 0]]), k=2)
        array([0.5])
    """
    return ranking_metrics(scores, holdout, (k,), exclude=exclude, metrics=("precision",))[
        f"precision@{k}"
    ]


def recall_at_k(scores, holdout, k: int, exclude=None, normalization: str = "min") -> np.ndarray:
    """Recall@k per user.

    With `normalization="min"` (Liang et al. 2018):
        Recall@k = hits@k / min(k, |relevant|),
    so a user with more than k relevant items can still reach 1. With
    `normalization="relevant"` (RecBole's Recall): Recall@k = hits@k / |relevant|.

    Args:
        scores: dense float array (users x items). Must not contain NaN.
        holdout: CSR or dense array of the same shape; nonzero entries are relevant.
        k: cut-off, a positive integer no larger than the number of items.
        exclude: optional CSR or dense array; nonzero entries are never ranked.
        normalization: `"min"` or `"relevant"`, the denominator as above.

    Returns:
        float64 array (users,), NaN for users without relevant items.

    Example:
        >>> recall_at_k(np.array([[0.9, 0.1, 0.5]]), np.array([[0, 1, 1]]), k=2)
        array([0.5])

    Reference:
        Liang, Krishnan, Hoffman, Jebara. Variational Autoencoders for Collaborative
        Filtering. WWW 2018. https://arxiv.org/abs/1802.05814
    """
    _check_recall_normalization(normalization, name="normalization")
    return ranking_metrics(
        scores,
        holdout,
        (k,),
        exclude=exclude,
        metrics=("recall",),
        recall_normalization=normalization,
    )[f"recall@{k}"]


def ndcg_at_k(scores, holdout, k: int, exclude=None) -> np.ndarray:
    """NDCG@k per user with binary relevance.

    DCG@k = sum_{r=1..k} rel_r / log2(r + 1), with rel_r = 1 when the item at rank r is
    relevant and 0 otherwise; IDCG@k is the DCG of an ideal ranking, i.e.
    sum_{r=1..min(k, |relevant|)} 1 / log2(r + 1); NDCG@k = DCG@k / IDCG@k.

    Args:
        scores: dense float array (users x items). Must not contain NaN.
        holdout: CSR or dense array of the same shape; nonzero entries are relevant.
        k: cut-off, a positive integer no larger than the number of items.
        exclude: optional CSR or dense array; nonzero entries are never ranked.

    Returns:
        float64 array (users,), NaN for users without relevant items.

    Example:
        >>> ndcg_at_k(np.array([[0.9, 0.1, 0.5]]), np.array([[0, 0, 1]]), k=2)  # 1/log2(3)
        array([0.63092975])

    Reference:
        Järvelin, Kekäläinen. Cumulated gain-based evaluation of IR techniques. ACM TOIS
        20(4), 2002. https://doi.org/10.1145/582415.582418
    """
    return ranking_metrics(scores, holdout, (k,), exclude=exclude, metrics=("ndcg",))[f"ndcg@{k}"]


def ranking_metrics(
    scores,
    holdout,
    ks,
    exclude=None,
    metrics=METRIC_NAMES,
    recall_normalization: str = "min",
) -> dict[str, np.ndarray]:
    """Several ranking metrics at several cut-offs from one top-max(ks) selection.

    Formulas as in `precision_at_k`, `recall_at_k` and `ndcg_at_k`; the top max(ks) items
    are selected and sorted once, and every cut-off reads prefix sums of the hits.

    Args:
        scores: dense float array (users x items). Must not contain NaN.
        holdout: CSR or dense array of the same shape; nonzero entries are relevant.
        ks: a cut-off or a sequence of cut-offs (positive integers no larger than the
            number of items).
        exclude: optional CSR or dense array; nonzero entries are never ranked.
        metrics: names among `"precision"`, `"recall"`, `"ndcg"`.
        recall_normalization: `"min"` (hits / min(k, |relevant|)) or `"relevant"`
            (hits / |relevant|).

    Returns:
        dict mapping `"name@k"` (ordered by k, then by `metrics`) to float64 arrays
        (users,), NaN for users without relevant items.

    Example:
        >>> results = ranking_metrics(np.array([[0.9, 0.1, 0.5]]), np.array([[0, 1, 1]]), ks=(1, 2))
        >>> list(results)
        ['precision@1', 'recall@1', 'ndcg@1', 'precision@2', 'recall@2', 'ndcg@2']
        >>> results["ndcg@2"]  # (1 / log2(3)) / (1 + 1 / log2(3))
        array([0.38685281])
    """
    scores = _check_scores(scores)
    num_items = scores.shape[1]
    ks = _check_ks(ks, num_items)
    metrics = _check_metrics(metrics)
    _check_recall_normalization(recall_normalization)
    relevant = _nonzero_mask(holdout, scores.shape, "holdout")

    top = _top_k(_exclude(scores, exclude), max(ks))
    hits = np.take_along_axis(relevant, np.maximum(top, 0), axis=1) & (top >= 0)
    num_relevant = np.count_nonzero(relevant, axis=1)
    no_relevant = num_relevant == 0

    cumulative_hits = np.cumsum(hits, axis=1, dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2, dtype=np.float64))
    if "ndcg" in metrics:
        cumulative_dcg = np.cumsum(hits * discounts, axis=1)
        cumulative_idcg = np.cumsum(discounts)

    results = {}
    # Errors for users without relevant items are masked to NaN below.
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in ks:
            hits_at_k = cumulative_hits[:, k - 1]
            ideal_length = np.minimum(k, num_relevant)
            for name in metrics:
                if name == "precision":
                    values = hits_at_k / k
                elif name == "recall":
                    denominator = ideal_length if recall_normalization == "min" else num_relevant
                    values = hits_at_k / denominator
                else:
                    idcg = cumulative_idcg[np.maximum(ideal_length, 1) - 1]
                    values = cumulative_dcg[:, k - 1] / idcg
                values[no_relevant] = np.nan
                results[f"{name}@{k}"] = values
    return results


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """`top_k_indices` on validated scores where exclusions are already `-inf`."""
    num_items = scores.shape[1]
    if k < num_items:
        candidates = np.argpartition(scores, num_items - k, axis=1)[:, num_items - k :]
        kth_best = np.take_along_axis(scores, candidates, axis=1).min(axis=1)
        # argpartition picks arbitrarily among items tied with the k-th best score; rows
        # where such a tie straddles the cut-off are re-ranked with a stable sort so the
        # lower item indices win. A tie at -inf does not matter: those positions are empty.
        num_at_least = np.count_nonzero(scores >= kth_best[:, None], axis=1)
        tied = np.flatnonzero((num_at_least > k) & (kth_best > -np.inf))
        if tied.size:
            candidates[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(num_items), scores.shape)
    # Sorting the candidates by index first makes the stable sort by score break ties by
    # the lower index.
    candidates = np.sort(candidates, axis=1)
    values = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    top = np.take_along_axis(candidates, order, axis=1).astype(np.int64, copy=False)
    top[np.take_along_axis(values, order, axis=1) == -np.inf] = -1
    return top


def _exclude(scores: np.ndarray, exclude) -> np.ndarray:
    if exclude is None:
        return scores
    return np.where(_nonzero_mask(exclude, scores.shape, "exclude"), -np.inf, scores)


def _nonzero_mask(matrix, shape: tuple[int, int], name: str) -> np.ndarray:
    """Dense bool array of the nonzero entries of a CSR (any sparse) or dense matrix."""
    if tuple(matrix.shape) != tuple(shape):
        raise ValueError(
            f"`{name}` should have the same shape as `scores` {tuple(shape)}. "
            f"Received: {name}.shape={tuple(matrix.shape)}"
        )
    if not scipy.sparse.issparse(matrix):
        return np.asarray(matrix) != 0
    matrix = scipy.sparse.csr_matrix(matrix)
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()
    rows = np.repeat(np.arange(shape[0]), np.diff(matrix.indptr))
    stored = matrix.data != 0
    mask = np.zeros(shape, dtype=bool)
    mask[rows[stored], matrix.indices[stored]] = True
    return mask


def _check_scores(scores) -> np.ndarray:
    if scipy.sparse.issparse(scores):
        raise ValueError(
            "`scores` should be a dense array (users x items). Received: a sparse matrix"
        )
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(
            f"`scores` should be a 2D array (users x items). Received: scores.shape={scores.shape}"
        )
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError(
            f"`scores` should not contain NaN. Received: {np.count_nonzero(np.isnan(scores))} "
            "NaN values"
        )
    return scores


def _check_k(k, num_items: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 < k <= num_items:
        raise ValueError(
            f"`{name}` should be a positive integer no larger than the number of items "
            f"({num_items}). Received: {name}={k!r}"
        )


def _check_ks(ks, num_items: int) -> tuple[int, ...]:
    """Validated cut-offs as a tuple of distinct ints, in the given order."""
    if isinstance(ks, int | np.integer):
        ks = (ks,)
    ks = tuple(ks)
    if not ks:
        raise ValueError("`ks` should contain at least one cut-off. Received: ks=()")
    for k in ks:
        _check_k(k, num_items)
    return tuple(dict.fromkeys(int(k) for k in ks))


def _check_metrics(metrics) -> tuple[str, ...]:
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not metrics or any(name not in METRIC_NAMES for name in metrics):
        raise ValueError(
            f"`metrics` should be a non-empty sequence of names among {METRIC_NAMES}. "
            f"Received: metrics={metrics!r}"
        )
    return tuple(dict.fromkeys(metrics))


def _check_recall_normalization(normalization, name: str = "recall_normalization") -> None:
    if normalization not in RECALL_NORMALIZATIONS:
        raise ValueError(
            f"`{name}` should be one of {RECALL_NORMALIZATIONS}. Received: {name}={normalization!r}"
        )
