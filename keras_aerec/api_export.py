"""One decorator that registers a class as Keras-serializable and marks it public."""

import keras

PACKAGE = "keras_aerec"


def keras_aerec_export(cls):
    """Registers `cls` with Keras serialization under the `keras_aerec` package."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
