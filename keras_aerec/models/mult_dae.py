"""`MultDAE`: denoising autoencoder with a multinomial likelihood (Liang et al. 2018)."""

import keras

from keras_aerec.api_export import keras_aerec_export
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
class MultDAE(TopNRecommender, ReconstructionObjective, keras.Model):
    """Denoising autoencoder for implicit feedback with a multinomial likelihood.

    `MultVAE` without the variational part: the L2-normalised, dropout-corrupted
    interaction row goes through a tanh MLP to a `latent_dim` tanh code and back to one
    logit per item; the loss is the multinomial negative log-likelihood of the row under
    `softmax(logits)` plus the L2 penalty. Dropout is the only noise, so scores are
    deterministic at inference.

    `compile()` needs no `loss`; train on the rows themselves:
    `model.fit(train, batch_size=500, epochs=...)` with a CSR matrix or numpy array
    (wrapped in `RowBatches`, as is `validation_data`), or
    `model.fit(RowBatches(train, batch_size=500, seed=0), epochs=...)`.

    Scores are the decoder's logits. An all-zero row gets the decoder's prior ranking.

    Args:
        num_items: number of items (input and output width).
        hidden_dims: widths of the encoder's hidden tanh layers before the code; the
            decoder mirrors them. Defaults to `(600,)` (I-600-200-600-I, as `MultVAE`;
            the paper's ML-20M Mult-DAE is `hidden_dims=()`: I-200-I).
        latent_dim: width of the code layer. Defaults to `200`.
        dropout: input dropout rate. Defaults to `0.5`.
        l2: L2 penalty on the dense kernels, added as `l2 * sum(w**2)`. Defaults to
            `2e-5` (the paper's code: 0.01 / batch size 500).
        item_ids: original id of each item position (default: the positions).
        seed: optional integer seed of the dropout noise.
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, `trainable`).

    Example:

    >>> import numpy as np, scipy.sparse as sp
    >>> from keras_aerec.data.batching import RowBatches
    >>> x = sp.random(64, 30, density=0.2, format="csr", dtype="float32", random_state=0)
    >>> x.data[:] = 1.0
    >>> model = MultDAE(num_items=30, hidden_dims=(), latent_dim=8, seed=0)
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
        l2=2e-5,
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
        code_layer = keras.layers.Dense(
            latent_dim, activation="tanh", kernel_regularizer=regularizer, name="code"
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
        for layer in [*encoder_layers, code_layer, *decoder_layers]:
            x = layer(x)
        outputs = output_layer(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_items = num_items
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.dropout = dropout
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
            "l2": self.l2,
            "item_ids": item_ids_config(self.item_ids, self.num_items),
            "seed": self.seed,
        }
