"""keras_aerec.data."""
