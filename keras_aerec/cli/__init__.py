"""keras_aerec.cli."""
