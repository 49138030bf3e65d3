"""keras_aerec.export: TF Serving SavedModels with `serving_default` and `recommend`."""

from keras_aerec.export.saved_model import (
    DEFAULT_DIRECTORY,
    SIGNATURES,
    export_saved_model,
)

__all__ = ["DEFAULT_DIRECTORY", "SIGNATURES", "export_saved_model"]
