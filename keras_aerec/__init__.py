"""keras_aerec: autoencoder recommenders for Keras 3 (TensorFlow, JAX, PyTorch)."""

import importlib
import logging
import os

__version__ = "0.1.0"

logging.getLogger("keras_aerec").addHandler(logging.NullHandler())

__all__ = ["__version__", "data", "evaluation", "layers", "losses", "metrics", "models"]

if os.environ.get("KERAS_AEREC_DEFER_IMPORTS") != "1":
    # Registers every model, layer and loss with Keras: `import keras_aerec` then
    # `keras.saving.load_model("model.keras")` works, as with keras_hub.
    from keras_aerec import data, evaluation, layers, losses, metrics, models  # noqa: F401


def __getattr__(name):
    # Only reached when the `keras-aerec` command deferred the imports (keras_aerec_cli.py).
    if name in __all__:
        module = importlib.import_module(f"keras_aerec.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_aerec' has no attribute {name!r}")
