"""AutoRec: a one-hidden-layer autoencoder of rating vectors (I-AutoRec and U-AutoRec)."""

import keras
from keras import ops

from keras_aerec.api_export import keras_aerec_export
from keras_aerec.distribute import scale_loss_for_replicas
from keras_aerec.losses.masked_mse import MaskedMSE
from keras_aerec.models.rating_autoencoder import RatingAutoencoder, check_rating_config
from keras_aerec.validation import check_non_negative_float, check_positive_int


@keras_aerec_export
class AutoRec(RatingAutoencoder):
    """AutoRec rating autoencoder (Sedhain et al. 2015).

    A rating vector `r` (an item's ratings over the users for I-AutoRec,
    `variant="item"`; a user's ratings over the items for U-AutoRec, `variant="user"`) is
    encoded as `h = sigmoid(r V + mu)` and decoded as `r_hat = h W + b` (identity). The
    paper's objective over the `N` training vectors is

        sum_r ||(r - r_hat) * mask_r||^2 + (l2 / 2) (||W||^2 + ||V||^2),   mask = r != 0.

    Each batch of `B` vectors minimizes an estimate of that objective divided by `N`:

        (1 / B) sum_batch ||(r - r_hat) * mask||^2 + l2 / (2 N) (||W||^2 + ||V||^2)

    with `N = num_rows`, so `l2` is the paper's lambda whatever the batch size. With
    `num_rows=None` the batch cost is the article's code's instead: the plain sum over the
    batch plus `(l2 / 2)(||W||^2 + ||V||^2)`, i.e. the paper's lambda is
    `l2 * N / batch_size`.

    Orientation: the model reads rating vectors, so for I-AutoRec its rows are items and
    its inputs are the users' ratings (`num_inputs` = number of users). `rating_rows(R)`
    builds those rows from a users x items matrix `R` (it transposes for I-AutoRec), and
    `predict_ratings(user_ids, item_ids, R)` predicts `(user, item)` pairs in original ids
    for either variant. Pairs whose user or item has no rating in `R` get
    `default_rating` (the paper uses 3; `"mean"` takes the mean of `R`); predictions
    are clipped to `rating_range`. `score(rows)` returns the unclipped reconstruction.

    Train with `model.compile()` (Adam, learning rate 1e-3; pass e.g.
    `keras.optimizers.RMSprop(1e-3, clipvalue=5.0)` for the article's RMSProp with
    gradient clipping at +-5) and `model.fit(RowBatches(rows, y="x"))`.

    Args:
        num_inputs: width of a rating vector: the number of users for `variant="item"`,
            of items for `variant="user"`.
        hidden_units: size of the sigmoid code layer (paper: 500).
        l2: the paper's lambda, weight of `(||W||^2 + ||V||^2) / 2` (see above). On
            ML-1M with `num_rows` set, the benchmarked setting is 300 for both variants
            (`benchmarks/results/rating_models.md`).
        variant: `"item"` (I-AutoRec) or `"user"` (U-AutoRec).
        num_rows: number of training rating vectors `N` (items for I-AutoRec, users for
            U-AutoRec), or None for the article's per-batch cost (see above).
        rating_range: `(min, max)` of the ratings; inputs outside it are rejected and
            predictions are clipped to it.
        default_rating: a number, or `"mean"`, for pairs of unseen users or items.
        user_ids: optional original user ids (one per user), for `predict_ratings`.
        item_ids: optional original item ids (one per item), for `predict_ratings`.
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`).

    Example:

    >>> import numpy as np, scipy.sparse as sp
    >>> from keras_aerec.data.batching import RowBatches
    >>> train = sp.random(50, 30, density=0.2, format="csr", dtype="float32",
    ...                   random_state=0, data_rvs=lambda n: np.random.randint(1, 6, n))
    >>> model = AutoRec(num_inputs=50, hidden_units=8, l2=1.0, num_rows=30)
    >>> model.compile()
    >>> rows = model.rating_rows(train)  # items x users
    >>> _ = model.fit(RowBatches(rows, y="x", batch_size=8, seed=0), epochs=1, verbose=0)
    >>> model.predict_ratings([0, 1], [2, 3], train).shape
    (2,)

    Reference:
        Sedhain, Menon, Sanner, Xie. AutoRec: Autoencoders Meet Collaborative Filtering.
        WWW 2015. https://doi.org/10.1145/2740908.2742726
    """

    def __init__(
        self,
        num_inputs: int,
        hidden_units: int = 500,
        l2: float = 1.0,
        variant: str = "item",
        num_rows: int | None = None,
        rating_range: tuple[float, float] = (1.0, 5.0),
        default_rating: float | str = 3.0,
        user_ids=None,
        item_ids=None,
        **kwargs,
    ):
        num_inputs = check_positive_int(num_inputs, "num_inputs")
        hidden_units = check_positive_int(hidden_units, "hidden_units")
        l2 = check_non_negative_float(l2, "l2")
        if num_rows is not None:
            num_rows = check_positive_int(num_rows, "num_rows")
        variant, rating_range, default_rating, user_ids, item_ids = check_rating_config(
            variant, rating_range, default_rating, user_ids, item_ids, num_inputs
        )
        row_ids = item_ids if variant == "item" else user_ids
        if num_rows is not None and row_ids is not None and len(row_ids) != num_rows:
            raise ValueError(
                f"`num_rows` should equal the number of {'items' if variant == 'item' else 'users'}"
                f" in the ids ({len(row_ids)}). Received: num_rows={num_rows}"
            )

        # === Layers ===
        initializer = keras.initializers.TruncatedNormal(mean=0.0, stddev=0.03)
        encoder = keras.layers.Dense(
            hidden_units, activation="sigmoid", kernel_initializer=initializer, name="encoder"
        )
        decoder = keras.layers.Dense(num_inputs, kernel_initializer=initializer, name="decoder")

        # === Functional Model ===
        ratings = keras.Input(shape=(num_inputs,), name="ratings")
        outputs = decoder(encoder(ratings))
        super().__init__(inputs=ratings, outputs=outputs, **kwargs)
        self.encoder = encoder
        self.decoder = decoder

        # === Config ===
        self.num_inputs = num_inputs
        self.hidden_units = hidden_units
        self.l2 = l2
        self.num_rows = num_rows
        self.variant = variant
        self.rating_range = rating_range
        self.default_rating = default_rating
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.side_information_size = 0
        self.reconstruction_loss = MaskedMSE(normalization="none" if num_rows is None else "rows")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Masked reconstruction cost plus the L2 penalty on both kernels (see the class)."""
        del x, training
        weight_scale = 0.5 * self.l2 / (1 if self.num_rows is None else self.num_rows)
        penalty = ops.sum(ops.square(self.encoder.kernel)) + ops.sum(
            ops.square(self.decoder.kernel)
        )
        extra = weight_scale * penalty
        for layer_loss in self.losses:
            extra = extra + ops.sum(layer_loss)
        # Every tf.distribute replica adds the whole penalty and their gradients are
        # summed, so it is divided by the replicas as Keras does for `add_loss` terms.
        return self.reconstruction_loss(y, y_pred, sample_weight) + scale_loss_for_replicas(extra)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_inputs": self.num_inputs,
                "hidden_units": self.hidden_units,
                "l2": self.l2,
                "num_rows": self.num_rows,
                **self._rating_config(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
