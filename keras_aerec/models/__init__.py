"""keras_aerec.models."""
