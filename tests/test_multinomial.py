"""Multinomial negative log-likelihood, hand-computed."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_aerec.losses.multinomial import MultinomialNLL, multinomial_nll

# softmax([0, ln 3]) = [1/4, 3/4]; softmax([0, 0]) = [1/2, 1/2].
LOGITS = np.array([[0.0, math.log(3.0)], [0.0, 0.0]], dtype="float32")
TARGETS = np.array([[1.0, 2.0], [0.0, 1.0]], dtype="float32")
PER_USER = np.array([-(math.log(0.25) + 2.0 * math.log(0.75)), math.log(2.0)])


@pytest.mark.backend
def test_per_user_values_hand_computed():
    values = ops.convert_to_numpy(multinomial_nll(TARGETS, LOGITS))
    np.testing.assert_allclose(values, PER_USER, rtol=1e-6)


@pytest.mark.backend
def test_loss_averages_over_users_with_sample_weights():
    loss = MultinomialNLL()
    np.testing.assert_allclose(float(loss(TARGETS, LOGITS)), PER_USER.mean(), rtol=1e-6)
    weighted = float(loss(TARGETS, LOGITS, sample_weight=np.array([1.0, 0.0])))
    np.testing.assert_allclose(weighted, PER_USER[0] / 2.0, rtol=1e-6)


@pytest.mark.backend
def test_loss_is_invariant_to_a_shift_of_the_logits():
    shifted = ops.convert_to_numpy(multinomial_nll(TARGETS, LOGITS + 100.0))
    np.testing.assert_allclose(shifted, PER_USER, rtol=1e-5)


def test_serialization_round_trip():
    restored = keras.losses.deserialize(keras.losses.serialize(MultinomialNLL(name="nll")))
    assert isinstance(restored, MultinomialNLL)
    assert restored.get_config() == {"name": "nll", "reduction": "sum_over_batch_size"}
