"""keras_aerec: autoencoder recommenders for Keras 3 (TensorFlow, JAX, PyTorch)."""

import logging

from keras_aerec import data, evaluation, layers, losses, metrics, models

__version__ = "0.1.0"

logging.getLogger("keras_aerec").addHandler(logging.NullHandler())

__all__ = ["__version__", "data", "evaluation", "layers", "losses", "metrics", "models"]
