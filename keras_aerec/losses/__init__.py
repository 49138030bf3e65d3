"""keras_aerec.losses."""
