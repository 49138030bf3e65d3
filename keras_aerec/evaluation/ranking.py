"""Batched top-k evaluation of a recommender on a held-out part of a ranking split."""

import logging

import numpy as np
import scipy.sparse

from keras_aerec.metrics.ranking import (
    METRIC_NAMES,
    _check_ks,
    _check_metrics,
    _check_recall_normalization,
    ranking_metrics,
)
from keras_aerec.validation import check_positive_int

logger = logging.getLogger(__name__)


def evaluate_ranking(
    model_or_score_fn,
    part,
    ks=(10, 20, 50, 100),
    batch_size: int = 1024,
    metrics=METRIC_NAMES,
    recall_normalization: str = "min",
    return_per_user: bool = False,
):
    """Precision@k, Recall@k and NDCG@k of a model on a held-out part, averaged over users.

    Users are scored in batches of `batch_size` rows: for each batch the model is called as
    `model.score(fold_in_batch, users=train_rows_batch)` (or `score_fn(fold_in_batch,
    users=train_rows_batch)` for a plain function), where `fold_in_batch` is the CSR batch
    of `part.fold_in` and `train_rows_batch` the matching entries of `part.train_rows`
    (None when the part's users were not in training). Fold-in items are excluded from the
    ranking. Users without holdout items are skipped (never scored) and counted.

    Metrics, with hits@k the relevant items among the top k:
        Precision@k = hits@k / k
        Recall@k = hits@k / min(k, |relevant|)  (or hits@k / |relevant| with
            `recall_normalization="relevant"`)
        NDCG@k = DCG@k / IDCG@k, DCG@k = sum_{r=1..k} rel_r / log2(r + 1)
    See `keras_aerec.metrics.ranking` for the tie and exclusion rules.

    Args:
        model_or_score_fn: an object with a `score(rows, users=None)` method, or a function
            with the same signature, returning dense scores (batch users x items).
        part: a `HeldOutPart` (or any object) with `.fold_in` and `.holdout` CSR matrices
            (part users x items) and `.train_rows` (int array or None). A `RankingSplit`
            stands for its test part (`split.test`); pass `split.validation` to tune.
        ks: cut-offs.
        batch_size: users scored per call.
        metrics: names among `"precision"`, `"recall"`, `"ndcg"`.
        recall_normalization: `"min"` (Liang et al. 2018) or `"relevant"` (RecBole).
        return_per_user: also return the per-user values.

    Returns:
        dict `{"precision@10": mean, "recall@10": ..., "ndcg@10": ..., ...,
        "num_users": evaluated users, "num_skipped": users without holdout items}` (metric
        entries ordered by k, then by `metrics`; NaN when no user is evaluated). With
        `return_per_user=True`, a tuple `(results, per_user)` where `per_user` maps each
        metric name to a float64 array with one value per row of the part (NaN for
        skipped users).

    Example:
        ```python
        results = evaluate_ranking(model, split.test, ks=(20, 50))
        results["recall@20"], results["num_users"]
        ```

    Reference:
        Liang, Krishnan, Hoffman, Jebara. Variational Autoencoders for Collaborative
        Filtering. WWW 2018. https://arxiv.org/abs/1802.05814
    """
    score_fn = _resolve_score_fn(model_or_score_fn)
    part = _held_out_part(part)
    fold_in = _as_csr(part.fold_in, "part.fold_in")
    holdout = _as_csr(part.holdout, "part.holdout")
    if fold_in.shape != holdout.shape:
        raise ValueError(
            f"`part.holdout` should have the same shape as `part.fold_in` {fold_in.shape}. "
            f"Received: part.holdout.shape={holdout.shape}"
        )
    num_rows, num_items = fold_in.shape
    train_rows = getattr(part, "train_rows", None)
    if train_rows is not None:
        train_rows = np.asarray(train_rows)
        if train_rows.shape != (num_rows,):
            raise ValueError(
                f"`part.train_rows` should have one entry per row of the part ({num_rows},). "
                f"Received: part.train_rows.shape={train_rows.shape}"
            )
    ks = _check_ks(ks, num_items)
    metrics = _check_metrics(metrics)
    _check_recall_normalization(recall_normalization)
    check_positive_int(batch_size, "batch_size")

    rows = np.flatnonzero(_count_nonzero_per_row(holdout) > 0)
    num_skipped = num_rows - rows.size
    names = [f"{name}@{k}" for k in ks for name in metrics]
    per_user = {name: np.full(num_rows, np.nan) for name in names}
    for start in range(0, rows.size, batch_size):
        batch = rows[start : start + batch_size]
        fold_in_batch = fold_in[batch]
        users = None if train_rows is None else train_rows[batch]
        scores = _batch_scores(score_fn, (batch.size, num_items), fold_in_batch, users=users)
        batch_results = ranking_metrics(
            scores,
            holdout[batch],
            ks,
            exclude=fold_in_batch,
            metrics=metrics,
            recall_normalization=recall_normalization,
        )
        for name in names:
            per_user[name][batch] = batch_results[name]

    if rows.size == 0:
        logger.warning("No user of the part has holdout items; all metrics are NaN.")
    logger.debug("Evaluated %d users, skipped %d without holdout items.", rows.size, num_skipped)
    results = {
        name: float(np.mean(values[rows])) if rows.size else float("nan")
        for name, values in per_user.items()
    }
    results["num_users"] = int(rows.size)
    results["num_skipped"] = int(num_skipped)
    if return_per_user:
        return results, per_user
    return results


def _held_out_part(part):
    """`part` itself, or the test part of a ranking split; a clear error for anything else."""
    if hasattr(part, "fold_in") and hasattr(part, "holdout"):
        return part
    test = getattr(part, "test", None)
    if hasattr(test, "fold_in") and hasattr(test, "holdout"):
        logger.info("evaluate_ranking: evaluating the split's test part (`split.test`).")
        return test
    raise ValueError(
        "`part` should be the held-out part of a ranking split, e.g. `split.test` or "
        "`split.validation` of `strong_generalization(...)`, `weak_generalization(...)` or "
        f"`temporal(...)`. Received: {type(part).__name__}"
    )


def _resolve_score_fn(model_or_score_fn):
    """The `score` method of a model, or the function itself."""
    score = getattr(model_or_score_fn, "score", None)
    if callable(score):
        return score
    if callable(model_or_score_fn):
        return model_or_score_fn
    raise ValueError(
        "`model_or_score_fn` should have a `score` method or be callable. "
        f"Received: {type(model_or_score_fn).__name__}"
    )


def _batch_scores(score_fn, expected_shape: tuple[int, int], *args, **kwargs) -> np.ndarray:
    """Calls `score_fn` on one batch and returns its scores as a validated numpy array."""
    scores = score_fn(*args, **kwargs)
    if not isinstance(scores, np.ndarray):
        import keras  # only needed when a model returns backend tensors

        scores = keras.ops.convert_to_numpy(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float32)
    if scores.shape != tuple(expected_shape):
        raise ValueError(
            "The model's scores should have shape (batch rows, columns) = "
            f"{tuple(expected_shape)}. Received: scores.shape={scores.shape}"
        )
    if np.isnan(scores).any():
        raise ValueError(
            f"The model's scores should not contain NaN. Received: "
            f"{np.count_nonzero(np.isnan(scores))} NaN values in a batch of shape {scores.shape}"
        )
    return scores


def _as_csr(matrix, name: str) -> scipy.sparse.csr_matrix:
    if not scipy.sparse.issparse(matrix) and np.ndim(matrix) != 2:
        raise ValueError(
            f"`{name}` should be a 2D CSR matrix. Received: {name} with shape {np.shape(matrix)}"
        )
    return scipy.sparse.csr_matrix(matrix)


def _count_nonzero_per_row(matrix: scipy.sparse.csr_matrix) -> np.ndarray:
    """Number of stored nonzero entries per row (explicit zeros do not count)."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return np.bincount(rows[matrix.data != 0], minlength=matrix.shape[0])
