"""keras_aerec: autoencoder recommenders for Keras 3 (TensorFlow, JAX, PyTorch)."""

import logging

__version__ = "0.1.0"

logging.getLogger("keras_aerec").addHandler(logging.NullHandler())
