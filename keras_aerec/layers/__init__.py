"""keras_aerec.layers."""
