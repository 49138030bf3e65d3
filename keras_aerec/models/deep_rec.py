"""DeepRec: a deep rating autoencoder with SELU, a dropped-out code and dense re-feeding."""

import keras
from keras import ops

from keras_aerec.api_export import keras_aerec_export
from keras_aerec.distribute import scale_loss_for_replicas
from keras_aerec.losses.masked_mse import MaskedMSE
from keras_aerec.models.rating_autoencoder import RatingAutoencoder, check_rating_config
from keras_aerec.validation import check_non_negative_float, check_positive_int, check_rate


@keras_aerec_export
class TiedDense(keras.layers.Layer):
    """A linear layer that can also be applied transposed, with its own bias.

    `layer(x)` computes `x K + b`; `layer(h, transpose=True)` computes
    `h K[:transpose_units]^T + b_t`, which makes the decoder of a constrained autoencoder
    (decoder kernels = transposed encoder kernels, separate biases). No activation: apply
    one after each call.

    Args:
        units: output width of the forward call.
        transpose_units: output width of the transposed call (the first `transpose_units`
            input features are reconstructed); defaults to the input width.
        kernel_initializer: initializer of the shared kernel.
        **kwargs: forwarded to `keras.layers.Layer`.
    """

    def __init__(self, units, transpose_units=None, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units")
        self.transpose_units = (
            None
            if transpose_units is None
            else check_positive_int(transpose_units, "transpose_units")
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        transpose_units = self.transpose_units or input_dim
        if transpose_units > input_dim:
            raise ValueError(
                f"`transpose_units` should be at most the input width {input_dim}. "
                f"Received: transpose_units={transpose_units}"
            )
        self.kernel = self.add_weight(
            shape=(input_dim, self.units), initializer=self.kernel_initializer, name="kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.transpose_bias = self.add_weight(
            shape=(transpose_units,), initializer="zeros", name="transpose_bias"
        )

    def call(self, inputs, transpose=False):
        if not transpose:
            return ops.matmul(inputs, self.kernel) + self.bias
        kernel = ops.convert_to_tensor(self.kernel)
        if self.transpose_bias.shape[0] != kernel.shape[0]:
            kernel = ops.slice(kernel, (0, 0), (self.transpose_bias.shape[0], self.units))
        return ops.matmul(inputs, ops.transpose(kernel)) + self.transpose_bias

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "transpose_units": self.transpose_units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras_aerec_export
class DeepRec(RatingAutoencoder):
    """Deep rating autoencoder of Kuchaiev & Ginsburg (2017), "DeepRec".

    The encoder maps a rating vector through `hidden_units` (paper:
    n-512-512-1024), dropout is applied to the code (the last encoder layer), and the
    decoder mirrors the encoder (1024-512-512-n). Every layer uses `activation` (SELU)
    except the last, which is linear. With `tied=True` the decoder is constrained: its
    kernels are the transposed encoder kernels (separate biases).

    Training minimizes the masked MSE (squared error over the observed ratings of the
    batch divided by their number) plus `l2 * sum ||K||^2` over the kernels (the
    article's Keras `l2` regularizer). Dense re-feeding: after the masked term on
    `f(x)`, `refeeds` further terms treat the dense output as a fully observed example,
    `mean((f(y) - y)^2)` with `y = stop_gradient(f(x))` (then `y = f(y)` again). The
    paper takes a separate optimizer step for each re-feed; here the terms are summed
    into one step, whose gradient is the sum of the steps' gradients at the same weights.
    Re-feeding only applies in training.

    Side information (the article's `side_infor_size`): a model built with
    `side_information_size=s` reads `num_inputs + s` columns, the ratings followed by
    the side features (e.g. one-hot user attributes), and reconstructs the ratings only;
    `rating_rows(R, side_information)` appends them. A re-fed example keeps the side
    features of its row.

    The paper's sizes suit Netflix (about 480k users). On ML-1M (6k users) the
    benchmarked setting is item-based, `hidden_units=(128, 128, 256)` with `l2=3e-4`;
    the paper's user-based n-512-512-1024 is compared there
    (`benchmarks/results/rating_models.md`).

    Orientation and prediction are as for `AutoRec`: `variant="user"` (the paper's) reads
    a user's ratings over the items (`num_inputs` = number of items), `variant="item"`
    an item's ratings over the users; `rating_rows`, `score` and `predict_ratings`
    (original ids, unseen users/items -> `default_rating`, clipped to `rating_range`)
    behave the same.

    Args:
        num_inputs: width of a rating vector: the number of items for `variant="user"`,
            of users for `variant="item"`.
        hidden_units: encoder widths, the last one being the code (paper:
            `(512, 512, 1024)`); the decoder uses them in reverse.
        activation: activation of every layer but the output (paper: `"selu"`).
        dropout: dropout rate on the code (paper: 0.8).
        l2: weight of the squared L2 norm of the kernels.
        tied: whether the decoder kernels are the transposed encoder kernels.
        refeeds: number of dense re-feeding terms per step (paper: 1; 0 disables).
        side_information_size: number of side-information columns after the ratings.
        variant: `"user"` or `"item"`.
        rating_range: `(min, max)` of the ratings.
        default_rating: a number, or `"mean"`, for pairs of unseen users or items.
        user_ids: optional original user ids, for `predict_ratings`.
        item_ids: optional original item ids, for `predict_ratings`.
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`).

    Example:

    >>> import numpy as np, scipy.sparse as sp
    >>> from keras_aerec.data.batching import RowBatches
    >>> train = sp.random(30, 50, density=0.2, format="csr", dtype="float32",
    ...                   random_state=0, data_rvs=lambda n: np.random.randint(1, 6, n))
    >>> model = DeepRec(num_inputs=50, hidden_units=(16, 8), dropout=0.5)
    >>> model.compile()
    >>> rows = model.rating_rows(train)  # users x items
    >>> _ = model.fit(RowBatches(rows, y="x", batch_size=8, seed=0), epochs=1, verbose=0)
    >>> model.predict_ratings([0, 1], [2, 3], train).shape
    (2,)

    Reference:
        Kuchaiev, Ginsburg. Training Deep AutoEncoders for Collaborative Filtering.
        arXiv:1708.01715, 2017.
    """

    def __init__(
        self,
        num_inputs: int,
        hidden_units=(512, 512, 1024),
        activation="selu",
        dropout: float = 0.8,
        l2: float = 0.0,
        tied: bool = False,
        refeeds: int = 1,
        side_information_size: int = 0,
        variant: str = "user",
        rating_range: tuple[float, float] = (1.0, 5.0),
        default_rating: float | str = 3.0,
        user_ids=None,
        item_ids=None,
        **kwargs,
    ):
        num_inputs = check_positive_int(num_inputs, "num_inputs")
        if isinstance(hidden_units, int) or not hidden_units:
            raise ValueError(
                "`hidden_units` should be a non-empty sequence of positive integers. "
                f"Received: hidden_units={hidden_units!r}"
            )
        hidden_units = [check_positive_int(units, "hidden_units") for units in hidden_units]
        dropout = check_rate(dropout, "dropout")
        l2 = check_non_negative_float(l2, "l2")
        if isinstance(refeeds, bool) or not isinstance(refeeds, int) or refeeds < 0:
            raise ValueError(
                f"`refeeds` should be a non-negative integer. Received: refeeds={refeeds!r}"
            )
        if side_information_size != 0:
            side_information_size = check_positive_int(
                side_information_size, "side_information_size"
            )
        keras.activations.get(activation)  # fails early on an unknown activation
        variant, rating_range, default_rating, user_ids, item_ids = check_rating_config(
            variant, rating_range, default_rating, user_ids, item_ids, num_inputs
        )

        # === Layers ===
        if tied:
            encoders = [
                TiedDense(
                    units,
                    transpose_units=num_inputs if depth == 0 else None,
                    name=f"encoder_{depth}",
                )
                for depth, units in enumerate(hidden_units)
            ]
            decoders = []
        else:
            encoders = [
                keras.layers.Dense(units, activation=activation, name=f"encoder_{depth}")
                for depth, units in enumerate(hidden_units)
            ]
            widths = hidden_units[-2::-1] + [num_inputs]
            decoders = [
                keras.layers.Dense(
                    units,
                    activation=activation if depth < len(widths) - 1 else None,
                    name=f"decoder_{depth}",
                )
                for depth, units in enumerate(widths)
            ]
        code_dropout = keras.layers.Dropout(dropout, name="code_dropout")

        # === Functional Model ===
        inputs = keras.Input(shape=(num_inputs + side_information_size,), name="ratings")
        x = inputs
        for encoder in encoders:
            x = encoder(x)
            if tied:
                x = keras.layers.Activation(activation, name=f"{encoder.name}_activation")(x)
        x = code_dropout(x)
        if tied:
            for depth, encoder in enumerate(reversed(encoders)):
                x = encoder(x, transpose=True)
                if depth < len(encoders) - 1:
                    x = keras.layers.Activation(activation, name=f"decoder_{depth}_activation")(x)
        else:
            for decoder in decoders:
                x = decoder(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)

        # === Config ===
        self.num_inputs = num_inputs
        self.hidden_units = hidden_units
        self.activation = activation
        self.dropout = dropout
        self.l2 = l2
        self.tied = bool(tied)
        self.refeeds = refeeds
        self.side_information_size = side_information_size
        self.variant = variant
        self.rating_range = rating_range
        self.default_rating = default_rating
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.reconstruction_loss = MaskedMSE(normalization="ratings")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Masked MSE, L2 on the kernels and, in training, the dense re-feeding terms."""
        # The penalty and the re-feeding means are per-replica terms under tf.distribute,
        # divided by the replicas as Keras does for its own mean losses.
        extra = 0.0
        if self.l2:
            kernels = [layer.kernel for layer in self.layers if hasattr(layer, "kernel")]
            extra = self.l2 * sum(ops.sum(ops.square(kernel)) for kernel in kernels)
        if training and self.refeeds:
            side = x[:, self.num_inputs :] if self.side_information_size else None
            # float32 under a mixed precision policy, as Keras computes its losses.
            output = ops.cast(y_pred, "float32")
            for _ in range(self.refeeds):
                target = ops.stop_gradient(output)
                refed = target if side is None else ops.concatenate([target, side], axis=-1)
                output = ops.cast(self(refed, training=True), "float32")
                extra = extra + ops.mean(ops.square(output - target))
        for layer_loss in self.losses:
            extra = extra + ops.sum(layer_loss)
        loss = self.reconstruction_loss(y, y_pred, sample_weight)
        return loss + scale_loss_for_replicas(ops.convert_to_tensor(extra, loss.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_inputs": self.num_inputs,
                "hidden_units": list(self.hidden_units),
                "activation": keras.activations.serialize(keras.activations.get(self.activation)),
                "dropout": self.dropout,
                "l2": self.l2,
                "tied": self.tied,
                "refeeds": self.refeeds,
                "side_information_size": self.side_information_size,
                **self._rating_config(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
