"""keras_aerec: autoencoder recommenders for Keras 3 (TensorFlow, JAX, PyTorch)."""

import importlib
import logging
import os
import sys

__version__ = "0.1.0"

logging.getLogger("keras_aerec").addHandler(logging.NullHandler())

# Before any backend is imported, so that its threads share the arena that keeps freed
# memory (keras_aerec/allocator.py: training epochs up to 1.4x faster on TF and torch).
from keras_aerec import allocator  # noqa: E402

allocator.apply_configured()

__all__ = ["__version__", "data", "evaluation", "layers", "losses", "metrics", "models"]


def _run_as_command() -> bool:
    """Whether this import is Python locating `python -m keras_aerec` (the command).

    Python sets `sys.argv[0]` to "-m" while it imports the package that holds `__main__`;
    the command then defers the backend's import as `keras-aerec` does.
    """
    if sys.argv[:1] != ["-m"]:
        return False
    argv = list(getattr(sys, "orig_argv", []))
    pairs = zip(argv, argv[1:] + [""], strict=True)
    return any(arg == "-mkeras_aerec" or (arg, nxt) == ("-m", "keras_aerec") for arg, nxt in pairs)


if os.environ.get("KERAS_AEREC_DEFER_IMPORTS") != "1" and not _run_as_command():
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
