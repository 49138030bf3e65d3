"""Shared layers."""

from keras_aerec.layers.gru import GRU
from keras_aerec.layers.sampling import Sampling

__all__ = ["GRU", "Sampling"]
