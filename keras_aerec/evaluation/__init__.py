"""Batched evaluation of the protocols' held-out parts, and callbacks that log it."""

from keras_aerec.evaluation.callbacks import RankingEvaluation, RatingEvaluation
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.evaluation.rating import evaluate_rating

__all__ = ["RankingEvaluation", "RatingEvaluation", "evaluate_ranking", "evaluate_rating"]
