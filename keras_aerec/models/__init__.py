"""The autoencoder recommenders: one model per file, all `keras.Model`s."""

from keras_aerec.models.auto_rec import AutoRec
from keras_aerec.models.cdae import CDAE
from keras_aerec.models.deep_rec import DeepRec
from keras_aerec.models.ease import EASE
from keras_aerec.models.mult_dae import MultDAE
from keras_aerec.models.mult_vae import MultVAE
from keras_aerec.models.svae import SVAE

__all__ = ["CDAE", "EASE", "SVAE", "AutoRec", "DeepRec", "MultDAE", "MultVAE"]
