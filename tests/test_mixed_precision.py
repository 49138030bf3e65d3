"""Every model under Keras' mixed precision policies: same losses as float32, no NaN."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.data.sequences import SequenceBatches
from keras_aerec.models import CDAE, SVAE, AutoRec, DeepRec, MultDAE, MultVAE

NUM_USERS, NUM_ITEMS = 48, 20


def implicit_rows():
    matrix = sp.random(NUM_USERS, NUM_ITEMS, density=0.2, format="csr", random_state=0)
    matrix.data[:] = 1.0
    matrix = matrix.tolil()
    matrix[3] = 0  # an empty row: 0 / 0 in a float16 L2 normalisation
    return matrix.tocsr().astype("float32")


def rating_rows():
    ratings = sp.random(NUM_ITEMS, NUM_USERS, density=0.3, format="csr", random_state=0)
    ratings.data = np.ceil(ratings.data * 5).astype("float32")
    return ratings


def sequences():
    rng = np.random.default_rng(0)
    return [rng.integers(0, NUM_ITEMS, rng.integers(3, 12)) for _ in range(16)]


# name: (build, training data, batch size)
MODELS = {
    "multvae": (lambda: MultVAE(NUM_ITEMS, (8,), 4, total_anneal_steps=4, seed=0), implicit_rows),
    "multdae": (lambda: MultDAE(NUM_ITEMS, (), 4, seed=0), implicit_rows),
    "cdae": (lambda: CDAE(NUM_USERS, NUM_ITEMS, hidden_dim=4, seed=0), implicit_rows),
    "autorec": (lambda: AutoRec(NUM_USERS, hidden_units=4, num_rows=NUM_ITEMS), rating_rows),
    "deeprec": (lambda: DeepRec(NUM_USERS, (6, 4), dropout=0.0, refeeds=1), rating_rows),
    "svae": (
        lambda: SVAE(
            NUM_ITEMS,
            item_embedding_dim=8,
            rnn_units=8,
            hidden_units=8,
            latent_dim=4,
            next_k=2,
            max_len=16,
            total_anneal_steps=4,
            seed=0,
        ),
        sequences,
    ),
}


@pytest.fixture
def policy():
    """Sets Keras' global dtype policy for one test and restores float32 after it."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


def train_and_evaluate(name, weights=None):
    """(starting weights, evaluation loss at them, per-epoch training losses from them)."""
    build, data = MODELS[name]
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = data()
    if name == "svae":
        data = SequenceBatches(data, 8, max_len=16, next_k=2, shuffle=False, length_multiple=None)
    fit_args = {} if name == "svae" else {"batch_size": 8, "shuffle": False}
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0, **fit_args)  # builds everything
    if weights is not None:
        model.set_weights(weights)
    weights = model.get_weights()
    before = model.evaluate(data, verbose=0, **({} if name == "svae" else {"batch_size": 8}))
    history = model.fit(data, epochs=2, verbose=0, **fit_args)
    return model, weights, before, history.history["loss"]


# Every model on TensorFlow (the strictest about dtypes); the variational and the
# normalised models on every backend too.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.backend] if name in ("multvae", "multdae") else [])
        for name in sorted(MODELS)
    ],
)
def test_mixed_precision_trains_with_the_float32_losses(name, policy):
    _, weights, reference_before, reference_losses = train_and_evaluate(name)
    for dtype_policy, tolerance in (("mixed_bfloat16", 0.03), ("mixed_float16", 0.01)):
        policy(dtype_policy)
        # Variables stay float32 under a mixed policy: the same starting weights.
        model, _, before, losses = train_and_evaluate(name, weights=weights)
        assert model.dtype_policy.name == dtype_policy
        np.testing.assert_allclose(before, reference_before, rtol=tolerance)
        assert np.all(np.isfinite(losses)), (dtype_policy, losses)
        # Loss-scaled float16 may skip its first updates: training drifts a little further.
        np.testing.assert_allclose(losses, reference_losses, rtol=0.15)


def test_a_dtype_given_to_a_model_reaches_its_layers_and_survives_saving(tmp_path):
    # A functional keras.Model alone would keep its layers at the global policy.
    model = MultVAE(NUM_ITEMS, (8,), 4, seed=0, dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    assert policies["encoder_0"] == policies["logits"] == policies["sampling"] == "mixed_bfloat16"
    assert policies["l2_normalization"] == "float32"  # kept float32 on purpose
    model.compile(optimizer="adam")
    model.fit(implicit_rows(), batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert {layer.name: layer.dtype_policy.name for layer in reloaded.layers} == policies
    np.testing.assert_allclose(
        reloaded.score(implicit_rows()[:4]), model.score(implicit_rows()[:4]), rtol=1e-6
    )
    with pytest.raises(ValueError, match="mixed_bfloat"):
        MultVAE(NUM_ITEMS, dtype="mixed_bfloat")
