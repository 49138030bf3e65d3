"""Shared layers."""

from keras_aerec.layers.sampling import Sampling

__all__ = ["Sampling"]
