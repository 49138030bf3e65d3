"""`MultVAE`: variational autoencoder with a multinomial likelihood (Liang et al. 2018)."""

import keras

from keras_aerec.api_export import keras_aerec_export
from keras_aerec.layers.sampling import Sampling
from keras_aerec.losses.multinomial import multinomial_nll
from keras_aerec.models.recommender import ReconstructionObjective, TopNRecommender
from keras_aerec.validation import (
    check_hidden_dims,
    check_item_ids,
    check_l2,
    check_positive_int,
    check_rate,
    item_ids_config,
)


@keras_aerec_export
class MultVAE(TopNRecommender, ReconstructionObjective, keras.Model):
    """Variational autoencoder for implicit feedback with a multinomial likelihood.

    A user's interaction row is L2-normalised, corrupted by dropout and encoded by a tanh
    MLP into the mean and log-variance of q(z|x); `Sampling` draws z (reparameterisation)
    and adds the annealed KL term; a tanh MLP decodes z into one logit per item. The loss
    is the multinomial negative log-likelihood of the row under `softmax(logits)` plus
    `beta * KL`, with `beta = min(anneal_cap, update / total_anneal_steps)`. At inference
    z is the mean of q(z|x), so scores are deterministic.

    `compile()` needs no `loss`; train on the rows themselves:
    `model.fit(train, batch_size=500, epochs=...)` with a CSR matrix or numpy array
    (wrapped in `RowBatches`, as is `validation_data`), or
    `model.fit(RowBatches(train, batch_size=500, seed=0), epochs=...)`.

    Scores are the decoder's logits (a monotone function of the predicted multinomial
    probabilities). An all-zero row is encoded as the zero vector and gets the decoder's
    prior ranking (no NaN).

    Args:
        num_items: number of items (input and output width).
        hidden_dims: widths of the encoder's hidden tanh layers; the decoder mirrors them.
            Defaults to `(600,)` (the paper's I-600-200-600-I).
        latent_dim: dimension of z. Defaults to `200`.
        dropout: input dropout rate. Defaults to `0.5`.
        anneal_cap: largest KL weight beta. Defaults to `0.2`.
        total_anneal_steps: beta is `min(anneal_cap, update / total_anneal_steps)`, so
            it reaches the cap after `anneal_cap * total_anneal_steps` updates.
            Defaults to `200000` (the paper's ML-20M setting; on ML-1M's ~10 updates per
            epoch at batch 500, beta would stay near 0).
        l2: L2 penalty on the dense kernels, added to the loss as `l2 * sum(w**2)`.
            Defaults to `0.0` (as in the paper's code for Mult-VAE).
        item_ids: original id of each item position (default: the positions).
        seed: optional integer seed of dropout and sampling noise.
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, `trainable`).

    Example:

    >>> import numpy as np, scipy.sparse as sp
    >>> from keras_aerec.data.batching import RowBatches
    >>> x = sp.random(64, 30, density=0.2, format="csr", dtype="float32", random_state=0)
    >>> x.data[:] = 1.0
    >>> model = MultVAE(num_items=30, hidden_dims=(16,), latent_dim=8, seed=0)
    >>> model.compile(optimizer="adam")
    >>> _ = model.fit(RowBatches(x, batch_size=32, seed=0), epochs=1, verbose=0)
    >>> item_ids, scores = model.recommend(x[:2], k=5)

    Reference:
        Liang, Krishnan, Hoffman and Jebara, "Variational Autoencoders for Collaborative
        Filtering", WWW 2018.
    """

    # float32 whatever the dtype policy: its 1e-12 floor is 0 in float16, and an empty row
    # would become 0 / 0 = NaN.
    _float32_layers = ("l2_normalization",)

    def __init__(
        self,
        num_items,
        hidden_dims=(600,),
        latent_dim=200,
        dropout=0.5,
        anneal_cap=0.2,
        total_anneal_steps=200000,
        l2=0.0,
        item_ids=None,
        seed=None,
        **kwargs,
    ):
        num_items = check_positive_int(num_items, "num_items")
        hidden_dims = check_hidden_dims(hidden_dims)
        latent_dim = check_positive_int(latent_dim, "latent_dim")
        dropout = check_rate(dropout, "dropout")
        l2 = check_l2(l2)
        item_id_array = check_item_ids(item_ids, num_items)
        regularizer = keras.regularizers.L2(l2) if l2 > 0 else None

        # === Layers ===
        normalization = keras.layers.UnitNormalization(name="l2_normalization", dtype="float32")
        input_dropout = keras.layers.Dropout(dropout, seed=seed, name="input_dropout")
        encoder_layers = [
            keras.layers.Dense(
                units, activation="tanh", kernel_regularizer=regularizer, name=f"encoder_{i}"
            )
            for i, units in enumerate(hidden_dims)
        ]
        z_mean = keras.layers.Dense(latent_dim, kernel_regularizer=regularizer, name="z_mean")
        z_log_var = keras.layers.Dense(latent_dim, kernel_regularizer=regularizer, name="z_log_var")
        sampling = Sampling(
            anneal_cap=anneal_cap,
            total_anneal_steps=total_anneal_steps,
            seed=seed,
            name="sampling",
        )
        decoder_layers = [
            keras.layers.Dense(
                units, activation="tanh", kernel_regularizer=regularizer, name=f"decoder_{i}"
            )
            for i, units in enumerate(reversed(hidden_dims))
        ]
        output_layer = keras.layers.Dense(num_items, kernel_regularizer=regularizer, name="logits")

        # === Functional Model ===
        inputs = keras.Input(shape=(num_items,), name="user_items")
        x = input_dropout(normalization(inputs))
        for layer in encoder_layers:
            x = layer(x)
        z = sampling([z_mean(x), z_log_var(x)])
        for layer in decoder_layers:
            z = layer(z)
        outputs = output_layer(z)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_items = num_items
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.anneal_cap = sampling.anneal_cap
        self.total_anneal_steps = sampling.total_anneal_steps
        self.l2 = l2
        self.item_ids = item_id_array
        self.seed = seed

    def per_user_loss(self, target, y_pred, training=True):
        return multinomial_nll(target, y_pred)

    def get_config(self):
        return {
            **self._base_config(),
            "num_items": self.num_items,
            "hidden_dims": list(self.hidden_dims),
            "latent_dim": self.latent_dim,
            "dropout": self.dropout,
            "anneal_cap": self.anneal_cap,
            "total_anneal_steps": self.total_anneal_steps,
            "l2": self.l2,
            "item_ids": item_ids_config(self.item_ids, self.num_items),
            "seed": self.seed,
        }
