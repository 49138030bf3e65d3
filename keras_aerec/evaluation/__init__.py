"""keras_aerec.evaluation."""
