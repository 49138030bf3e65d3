"""keras_aerec: autoencoder recommenders for Keras 3 (TensorFlow, JAX, PyTorch)."""

import importlib
import logging

__version__ = "0.1.0"

logging.getLogger("keras_aerec").addHandler(logging.NullHandler())

__all__ = ["__version__", "data", "evaluation", "layers", "losses", "metrics", "models"]


def __getattr__(name):
    # Subpackages load on first use: `keras-aerec --help` must not import a backend.
    if name in __all__:
        module = importlib.import_module(f"keras_aerec.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_aerec' has no attribute {name!r}")
