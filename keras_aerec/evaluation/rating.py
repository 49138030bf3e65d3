"""Batched rating-prediction evaluation (RMSE, MAE) on held-out ratings."""

import logging
from numbers import Real

import numpy as np
import scipy.sparse

from keras_aerec.evaluation.ranking import (
    _as_csr,
    _batch_scores,
    _resolve_score_fn,
)
from keras_aerec.validation import check_positive_int

logger = logging.getLogger(__name__)


def evaluate_rating(
    model_or_fn,
    inputs,
    targets,
    rating_range: tuple[float, float] | None = (1.0, 5.0),
    default_rating: float | str = 3.0,
    batch_size: int = 512,
) -> dict:
    """RMSE and MAE of predicted ratings on the stored entries of `targets`.

    `inputs` and `targets` are CSR matrices in the model's orientation: rows are what the
    model reconstructs (users x items for U-AutoRec, items x users for I-AutoRec). Rows
    with at least one target are scored in batches by `model.score(inputs_batch)` (or
    `fn(inputs_batch)`), and only the target entries are gathered from each batch. A
    target whose input row is empty, or whose column has no input rating at all, gets
    `default_rating` instead (counted in `num_defaulted`). Every prediction is then
    clipped to `rating_range`.

        RMSE = sqrt(mean((prediction - target)^2)), MAE = mean(|prediction - target|)

    over the stored nonzero entries of `targets`. The errors are summed once over all
    targets in CSR order, so the result does not depend on `batch_size`. A model with a
    `score_entries(rows, row_positions, columns)` method (the rating autoencoders) is
    asked for the target entries only, which can skip computing the rest of the rows.

    Args:
        model_or_fn: an object with a `score(rows)` method, or a function, returning dense
            predictions (batch rows x columns).
        inputs: CSR matrix of the ratings the model sees; nonzero entries are ratings.
        targets: CSR matrix of the same shape; nonzero entries are the ratings to predict.
        rating_range: `(low, high)` to clip predictions to, or None for no clipping.
        default_rating: the prediction for targets without input, or `"mean"` for the mean
            of the input ratings.
        batch_size: rows scored per call.

    Returns:
        dict `{"rmse": float, "mae": float, "num_ratings": int, "num_defaulted": int}`.

    Example:
        ```python
        # I-AutoRec reconstructs item rows: pass items x users matrices.
        evaluate_rating(model, split.train.T.tocsr(), split.test.T.tocsr())
        ```

    Reference:
        Sedhain, Menon, Sanner, Xie. AutoRec: Autoencoders Meet Collaborative Filtering.
        WWW 2015. https://doi.org/10.1145/2740908.2742726
    """
    score_fn = _resolve_score_fn(model_or_fn)
    inputs = _observed(_as_csr(inputs, "inputs"), "inputs")
    targets = _observed(_as_csr(targets, "targets"), "targets")
    if inputs.shape != targets.shape:
        raise ValueError(
            f"`targets` should have the same shape as `inputs` {inputs.shape}. "
            f"Received: targets.shape={targets.shape}"
        )
    if targets.nnz == 0:
        raise ValueError("`targets` should contain at least one rating. Received: no ratings")
    _check_rating_range(rating_range)
    check_positive_int(batch_size, "batch_size")
    default_rating = _resolve_default_rating(default_rating, inputs)

    num_rows, num_columns = targets.shape
    row_has_input = np.diff(inputs.indptr) > 0
    column_has_input = np.bincount(inputs.indices, minlength=num_columns) > 0
    target_rows = np.repeat(np.arange(num_rows), np.diff(targets.indptr))
    defaulted = ~row_has_input[target_rows] | ~column_has_input[targets.indices]

    predictions = np.full(targets.nnz, default_rating, dtype=np.float64)
    # Positions (in CSR order, hence sorted by row) of the targets the model predicts.
    scored = np.flatnonzero(~defaulted)
    scored_rows = target_rows[scored]
    rows = np.unique(scored_rows)
    score_entries = getattr(model_or_fn, "score_entries", None)
    for start in range(0, rows.size, batch_size):
        batch = rows[start : start + batch_size]
        low = np.searchsorted(scored_rows, batch[0], side="left")
        high = np.searchsorted(scored_rows, batch[-1], side="right")
        positions = scored[low:high]
        local_rows = np.searchsorted(batch, scored_rows[low:high])
        columns = targets.indices[positions]
        if callable(score_entries):
            values = np.asarray(score_entries(inputs[batch], local_rows, columns))
            if values.shape != positions.shape or np.isnan(values).any():
                raise ValueError(
                    "`score_entries` should return one non-NaN value per entry "
                    f"({positions.size}). Received: shape {values.shape}, "
                    f"{np.count_nonzero(np.isnan(values))} NaN"
                )
            predictions[positions] = values
        else:
            scores = _batch_scores(score_fn, (batch.size, num_columns), inputs[batch])
            predictions[positions] = scores[local_rows, columns]

    if rating_range is not None:
        np.clip(predictions, rating_range[0], rating_range[1], out=predictions)
    errors = predictions - targets.data.astype(np.float64)
    num_defaulted = int(np.count_nonzero(defaulted))
    logger.debug(
        "Scored %d rows; %d of %d targets got the default rating %g.",
        rows.size,
        num_defaulted,
        targets.nnz,
        default_rating,
    )
    return {
        "rmse": float(np.sqrt(np.mean(np.square(errors)))),
        "mae": float(np.mean(np.abs(errors))),
        "num_ratings": int(targets.nnz),
        "num_defaulted": num_defaulted,
    }


def _observed(matrix: scipy.sparse.csr_matrix, name: str) -> scipy.sparse.csr_matrix:
    """Canonical CSR with explicit zeros dropped (copied only when needed); rejects NaN."""
    if not matrix.has_canonical_format or not np.all(matrix.data != 0):
        matrix = matrix.copy()
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
    if np.isnan(matrix.data).any():
        raise ValueError(
            f"`{name}` should not contain NaN. Received: "
            f"{np.count_nonzero(np.isnan(matrix.data))} NaN ratings"
        )
    return matrix


def _resolve_default_rating(default_rating, inputs: scipy.sparse.csr_matrix) -> float:
    if isinstance(default_rating, str):
        if default_rating != "mean":
            raise ValueError(
                "`default_rating` should be a number or 'mean'. "
                f"Received: default_rating={default_rating!r}"
            )
        if inputs.nnz == 0:
            raise ValueError(
                "`default_rating='mean'` needs at least one input rating. Received: no ratings"
            )
        return float(np.mean(inputs.data, dtype=np.float64))
    if isinstance(default_rating, bool) or not isinstance(default_rating, Real):
        raise ValueError(
            "`default_rating` should be a number or 'mean'. "
            f"Received: default_rating={default_rating!r}"
        )
    if np.isnan(default_rating):
        raise ValueError("`default_rating` should not be NaN. Received: default_rating=nan")
    return float(default_rating)


def _check_rating_range(rating_range) -> None:
    if rating_range is None:
        return
    try:
        low, high = (float(value) for value in rating_range)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not low <= high:
        raise ValueError(
            "`rating_range` should be a pair (low, high) with low <= high, or None. "
            f"Received: rating_range={rating_range!r}"
        )
