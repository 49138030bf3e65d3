"""keras_aerec.metrics."""
