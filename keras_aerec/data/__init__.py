"""Datasets, evaluation protocols and batching."""

from keras_aerec.data.batching import RowBatches
from keras_aerec.data.interactions import Interactions
from keras_aerec.data.io import read_ratings
from keras_aerec.data.movielens import load_movielens
from keras_aerec.data.sequences import (
    SequenceBatches,
    time_ordered_part,
    time_ordered_sequences,
)
from keras_aerec.data.splits import (
    HeldOutPart,
    RankingSplit,
    RatingSplit,
    rating_holdout,
    strong_generalization,
    temporal,
    weak_generalization,
)
from keras_aerec.data.synthetic import synthetic

__all__ = [
    "HeldOutPart",
    "Interactions",
    "RankingSplit",
    "RatingSplit",
    "RowBatches",
    "SequenceBatches",
    "load_movielens",
    "rating_holdout",
    "read_ratings",
    "strong_generalization",
    "synthetic",
    "temporal",
    "time_ordered_part",
    "time_ordered_sequences",
    "weak_generalization",
]
