"""The benchmark runner behind `keras-aerec benchmark` and `keras-aerec demo`."""

from keras_aerec.experiments.recipes import MODELS, Recipe
from keras_aerec.experiments.runner import (
    PROTOCOLS,
    ModelResult,
    get_protocol,
    needs_timestamped_data,
    run_benchmark,
)

__all__ = [
    "MODELS",
    "PROTOCOLS",
    "ModelResult",
    "Recipe",
    "get_protocol",
    "needs_timestamped_data",
    "run_benchmark",
]
