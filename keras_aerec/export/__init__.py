"""keras_aerec.export: TF Serving SavedModels (score, top-k and id-list signatures, vocabulary,
warm-up) and the `models.config` of a folder of them."""

from keras_aerec.export.saved_model import (
    DEFAULT_DIRECTORY,
    SIGNATURES,
    export_saved_model,
    write_models_config,
)

__all__ = ["DEFAULT_DIRECTORY", "SIGNATURES", "export_saved_model", "write_models_config"]
