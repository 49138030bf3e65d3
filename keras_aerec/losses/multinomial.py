"""Multinomial negative log-likelihood of a user's interactions (Mult-VAE, Mult-DAE)."""

import keras
from keras import ops

from keras_aerec.api_export import keras_aerec_export


def multinomial_nll(y_true, logits):
    """Per-user multinomial negative log-likelihood from unnormalised logits.

    Each user's interaction row `x_u` is modelled as a draw from a multinomial over the
    catalogue with probabilities `softmax(logits_u)`; dropping the constant multinomial
    coefficient, the negative log-likelihood is `-sum_i x_ui * log_softmax(logits_u)_i`.

    Args:
        y_true: float tensor (batch, num_items) of interaction counts or 0/1 values.
        logits: float tensor (batch, num_items) of unnormalised scores.

    Returns:
        Float tensor (batch,): one loss per user.

    Reference:
        Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018,
        eq. 2.
    """
    y_true = ops.cast(y_true, logits.dtype)
    return -ops.sum(ops.log_softmax(logits, axis=-1) * y_true, axis=-1)


@keras_aerec_export
class MultinomialNLL(keras.losses.Loss):
    """Multinomial negative log-likelihood loss, from logits, averaged over users.

    The models of this package compute this objective themselves (no `loss` is needed in
    `compile()`); this class makes it usable with any Keras model whose output is one
    logit per item.

    Args:
        reduction: Keras loss reduction (default `"sum_over_batch_size"`: mean over users).
        name: name of the loss.
        **kwargs: forwarded to `keras.losses.Loss` (e.g. `dtype`).

    Example:

    >>> import numpy as np
    >>> loss = MultinomialNLL()
    >>> float(loss(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])))  # doctest: +ELLIPSIS
    0.6931...

    Reference:
        Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018.
    """

    def __init__(self, reduction="sum_over_batch_size", name="multinomial_nll", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def call(self, y_true, y_pred):
        return multinomial_nll(y_true, y_pred)
