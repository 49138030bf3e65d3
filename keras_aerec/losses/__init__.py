"""Shared losses."""

from keras_aerec.losses.masked_mse import MaskedMSE
from keras_aerec.losses.multinomial import MultinomialNLL

__all__ = ["MaskedMSE", "MultinomialNLL"]
