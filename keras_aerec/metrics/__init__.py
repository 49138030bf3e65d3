"""Ranking metrics (per user) and masked rating metrics."""

from keras_aerec.metrics.ranking import (
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    top_k_indices,
)
from keras_aerec.metrics.rating import MaskedRMSE, masked_rmse

__all__ = [
    "MaskedRMSE",
    "masked_rmse",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "top_k_indices",
]
