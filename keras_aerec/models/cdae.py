"""`CDAE`: collaborative denoising autoencoder with a per-user embedding (Wu et al. 2016)."""

import math

import keras
import numpy as np
from keras import ops

from keras_aerec.api_export import keras_aerec_export
from keras_aerec.data.batching import RowBatches
from keras_aerec.distribute import predict_batch
from keras_aerec.models.recommender import ReconstructionObjective, TopNRecommender, is_matrix
from keras_aerec.validation import (
    check_item_ids,
    check_l2,
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    check_rate,
    item_ids_config,
)

RECONSTRUCTION_LOSSES = ("binary_crossentropy", "squared_error")
UNKNOWN_USER = -1
_PROBABILITY_EPSILON = 1e-7
_DERIVATIVE_STEP = 1e-3  # central difference of the hidden activation in the fold-in


@keras_aerec_export
class CDAE(TopNRecommender, ReconstructionObjective, keras.Model):
    """Collaborative denoising autoencoder for top-N recommendation.

    The user's 0/1 interaction row `x` is corrupted by dropout (entries zeroed with
    probability `corruption_ratio`, the others scaled by `1 / (1 - corruption_ratio)`),
    then `h = activation(x_corrupted @ W + V_u + b)` with a learned vector `V_u` per
    training user, and the output is `sigmoid(h @ W' + b')`. The loss, summed over items
    and averaged over users, is the binary cross-entropy or squared error between the
    clean row and the output, plus `l2 * sum(p**2)` over W, W' and V. With
    `negative_sample_ratio`, each user's loss only covers their positives and a random
    subset of about `negative_sample_ratio` x #positives of their zero entries, redrawn at
    every update (the paper's negative sampling).

    Inputs are `[user_index, user_items]` (or a dict with those names). Train on the
    training matrix itself, `model.fit(train, batch_size=...)` (row i is user i), on
    `{"user_index": ..., "user_items": train}`, or on
    `RowBatches(train, batch_size=..., user_index=True)`, whose `user_index` is the row
    position in `train`. `compile()` needs no `loss`.

    Users without a trained embedding (new users: `users=None` or `users[i] == -1` in
    `score()` / `recommend()`) are folded in: their `V_u` is fitted to their row with
    every weight frozen, by `fold_in_steps` Adam steps from `V_u = 0` on the training
    loss (clean input, the expected negative-sampling weights, `l2 * |V_u|^2`). The
    result is a deterministic function of the row. With `fold_in_steps=0` a new user
    keeps `V_u = 0` (the prior mean of the L2 penalty), the paper's behaviour, which
    ranked far below Mult-DAE for new users (benchmarks/results/cdae_foldin.json). An
    all-zero row of an unknown user gets `sigmoid(activation(b + V_u) @ W' + b')`, a
    fixed popularity-like ranking.

    Args:
        num_users: number of training users (rows of the user embedding).
        num_items: number of items (input and output width).
        hidden_dim: hidden width K. Defaults to `50` (the paper's K).
        corruption_ratio: dropout rate of the input corruption. Defaults to `0.5`.
        activation: activation of the hidden layer (any Keras activation name).
            Defaults to `"relu"`: the paper's sigmoid (or identity) hidden layer stalled
            at a popularity-like ranking for many epochs on MovieLens 1M, where relu
            trained quickly (see benchmarks/results/topn_models.md).
        reconstruction_loss: `"binary_crossentropy"` (default) or `"squared_error"`.
        negative_sample_ratio: `None` (default: every zero entry counts) or a positive
            number of sampled zeros per positive.
        l2: L2 penalty weight on the kernels and the user embedding. Defaults to `1e-5`.
        fold_in_steps: Adam steps fitting a new user's vector at inference (0: zero
            vector). Defaults to `30`.
        fold_in_learning_rate: Adam learning rate of the fold-in. Defaults to `0.1`.
        item_ids: original id of each item position (default: the positions).
        seed: optional integer seed of the corruption and negative sampling.
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, `trainable`).

    Example:

    >>> import numpy as np, scipy.sparse as sp
    >>> from keras_aerec.data.batching import RowBatches
    >>> x = sp.random(64, 30, density=0.2, format="csr", dtype="float32", random_state=0)
    >>> x.data[:] = 1.0
    >>> model = CDAE(num_users=64, num_items=30, hidden_dim=8, seed=0)
    >>> model.compile(optimizer="adam")
    >>> batches = RowBatches(x, batch_size=32, seed=0, user_index=True)
    >>> _ = model.fit(batches, epochs=1, verbose=0)
    >>> item_ids, scores = model.recommend(x[:2], k=5, users=np.array([0, 1]))

    Reference:
        Wu, DuBois, Zheng and Ester, "Collaborative Denoising Auto-Encoders for Top-N
        Recommender Systems", WSDM 2016.
    """

    def __init__(
        self,
        num_users,
        num_items,
        hidden_dim=50,
        corruption_ratio=0.5,
        activation="relu",
        reconstruction_loss="binary_crossentropy",
        negative_sample_ratio=None,
        l2=1e-5,
        fold_in_steps=30,
        fold_in_learning_rate=0.1,
        item_ids=None,
        seed=None,
        **kwargs,
    ):
        num_users = check_positive_int(num_users, "num_users")
        num_items = check_positive_int(num_items, "num_items")
        hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        corruption_ratio = check_rate(corruption_ratio, "corruption_ratio")
        if reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(
                f"`reconstruction_loss` should be one of {RECONSTRUCTION_LOSSES}. "
                f"Received: reconstruction_loss={reconstruction_loss!r}"
            )
        if negative_sample_ratio is not None and (
            isinstance(negative_sample_ratio, bool)
            or not isinstance(negative_sample_ratio, int | float)
            or negative_sample_ratio <= 0
        ):
            raise ValueError(
                "`negative_sample_ratio` should be None or a positive number. "
                f"Received: negative_sample_ratio={negative_sample_ratio!r}"
            )
        l2 = check_l2(l2)
        fold_in_steps = check_non_negative_int(fold_in_steps, "fold_in_steps")
        fold_in_learning_rate = check_non_negative_float(
            fold_in_learning_rate, "fold_in_learning_rate"
        )
        item_id_array = check_item_ids(item_ids, num_items)
        regularizer = keras.regularizers.L2(l2) if l2 > 0 else None

        # === Layers ===
        corruption = keras.layers.Dropout(corruption_ratio, seed=seed, name="corruption")
        item_encoder = keras.layers.Dense(
            hidden_dim, kernel_regularizer=regularizer, name="item_encoder"
        )
        user_embedding = keras.layers.Embedding(
            num_users, hidden_dim, embeddings_regularizer=regularizer, name="user_embedding"
        )
        hidden_activation = keras.layers.Activation(activation, name="hidden_activation")
        decoder = keras.layers.Dense(
            num_items, activation="sigmoid", kernel_regularizer=regularizer, name="decoder"
        )

        # === Functional Model ===
        user_index = keras.Input(shape=(), dtype="int32", name="user_index")
        user_items = keras.Input(shape=(num_items,), name="user_items")
        # Unknown users (index -1) look up row 0 and zero it: V_u = 0.
        known = ops.expand_dims(ops.cast(ops.greater_equal(user_index, 0), "float32"), -1)
        user_vector = user_embedding(ops.maximum(user_index, 0)) * known
        hidden = hidden_activation(item_encoder(corruption(user_items)) + user_vector)
        outputs = decoder(hidden)
        super().__init__(inputs=[user_index, user_items], outputs=outputs, **kwargs)

        # === Config ===
        self.num_users = num_users
        self.num_items = num_items
        self.hidden_dim = hidden_dim
        self.corruption_ratio = corruption_ratio
        self.activation = activation
        self.reconstruction_loss = reconstruction_loss
        self.negative_sample_ratio = negative_sample_ratio
        self.l2 = l2
        self.fold_in_steps = fold_in_steps
        self.fold_in_learning_rate = fold_in_learning_rate
        self.item_ids = item_id_array
        self.seed = seed
        if negative_sample_ratio is not None:
            self.negative_sampling_seed = keras.random.SeedGenerator(seed)

    def per_user_loss(self, target, y_pred, training=True):
        target = ops.cast(target, y_pred.dtype)
        if self.reconstruction_loss == "binary_crossentropy":
            probabilities = ops.clip(y_pred, _PROBABILITY_EPSILON, 1.0 - _PROBABILITY_EPSILON)
            item_losses = -(
                target * ops.log(probabilities) + (1.0 - target) * ops.log(1.0 - probabilities)
            )
        else:
            item_losses = ops.square(target - y_pred)
        if training and self.negative_sample_ratio is not None:
            item_losses = item_losses * self._sampled_entries(target)
        return ops.sum(item_losses, axis=-1)

    def _sampled_entries(self, target):
        """0/1 mask: every positive and a random share of each user's zero entries."""
        positive, keep_probability = self._keep_probability(target)
        uniform = keras.random.uniform(
            ops.shape(target), dtype=target.dtype, seed=self.negative_sampling_seed
        )
        sampled = ops.cast(ops.less(uniform, keep_probability), target.dtype)
        return ops.maximum(positive, sampled)

    def _reconstruction_target(self, x):
        return x["user_items"] if isinstance(x, dict) else x[1]

    def _row_batches(self, x, y, batch_size, shuffle, rows, training):
        """Matrix inputs: `{"user_index": ..., "user_items": X}`, `[user_index, X]` or `X`.

        A bare `X` holds the training users in order (row i is user i), so in `fit` it
        must have `num_users` rows; elsewhere a bare `X` with another number of rows holds
        users without an embedding (index -1).
        """
        if isinstance(x, dict):
            unknown = sorted(set(x) - {"user_index", "user_items"})
            if unknown or "user_items" not in x:
                raise ValueError(
                    '`x` should be a dict with the keys "user_items" and (optionally) '
                    f'"user_index". Received keys: {sorted(x)}'
                )
            user_index, user_items = x.get("user_index"), x["user_items"]
        elif isinstance(x, list | tuple) and len(x) == 2 and is_matrix(x[1]):
            user_index, user_items = x
        else:
            user_index, user_items = None, x
        if not is_matrix(user_items):
            return None
        user_items = self._check_user_items(user_items)
        num_rows = user_items.shape[0]
        if user_index is None:
            if num_rows == self.num_users:
                user_index = True
            elif training:
                raise ValueError(
                    f"`x` should have one row per training user (num_users={self.num_users}; "
                    'row i is user i), or pass {"user_index": ..., "user_items": x}. '
                    f"Received: x with {num_rows} rows"
                )
            else:
                user_index = np.full(num_rows, UNKNOWN_USER)
        else:
            user_index = self._check_users(user_index, num_rows)
        return RowBatches(
            user_items,
            y=y,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=self.seed,
            user_index=user_index,
            rows=rows,
        )

    def _score_batch(self, x, users):
        if users is None:
            users = np.full(x.shape[0], UNKNOWN_USER)
        users = users.astype("int32")
        new = users == UNKNOWN_USER
        if self.fold_in_steps == 0 or not new.any():
            return np.asarray(predict_batch(self, [users, x]), dtype="float32")
        scores = np.empty(x.shape, dtype="float32")
        if not new.all():
            scores[~new] = np.asarray(predict_batch(self, [users[~new], x[~new]]))
        scores[new] = self._fold_in_scores(x[new])
        return scores

    def _fold_in_scores(self, x):
        """Outputs (numpy) for new users after fitting their `V_u` with the weights frozen."""
        frozen = [ops.convert_to_tensor(ops.convert_to_numpy(w)) for w in self.fold_in_weights()]
        output = self.fold_in_outputs(ops.convert_to_tensor(x, dtype="float32"), frozen)
        return np.asarray(ops.convert_to_numpy(output), dtype="float32")

    def fold_in_weights(self):
        """The weights a new user's fold-in reads: encoder and decoder kernels and biases."""
        encoder, decoder = self.get_layer("item_encoder"), self.get_layer("decoder")
        return [encoder.kernel, encoder.bias, decoder.kernel, decoder.bias]

    def fold_in_outputs(self, target, weights):
        """Outputs for the rows `target` of new users, their `V_u` fitted with `weights` frozen.

        Gradients are written out (the output is `sigmoid(logits)`, so the loss gradient
        w.r.t. the logits is closed-form) and the hidden activation's derivative is a
        central difference, so this runs on every backend with `keras.ops` alone, and
        traces into a graph (the TF Serving export computes the same fold-in).
        """
        encoder_kernel, encoder_bias, decoder_kernel, decoder_bias = weights
        activation = self.get_layer("hidden_activation").activation
        item_weights = self._expected_item_weights(target)
        base = ops.matmul(target, encoder_kernel) + encoder_bias
        vector = ops.zeros_like(base)
        first_moment, second_moment = ops.zeros_like(base), ops.zeros_like(base)
        beta_1, beta_2, epsilon, step_size = 0.9, 0.999, 1e-7, _DERIVATIVE_STEP
        for step in range(1, self.fold_in_steps + 1):
            pre_activation = base + vector
            output = ops.sigmoid(
                ops.matmul(activation(pre_activation), decoder_kernel) + decoder_bias
            )
            if self.reconstruction_loss == "binary_crossentropy":
                logit_gradient = (output - target) * item_weights
            else:
                logit_gradient = 2.0 * (output - target) * output * (1.0 - output) * item_weights
            derivative = (
                activation(pre_activation + step_size) - activation(pre_activation - step_size)
            ) / (2.0 * step_size)
            gradient = ops.matmul(logit_gradient, ops.transpose(decoder_kernel)) * derivative
            gradient = gradient + 2.0 * self.l2 * vector
            first_moment = beta_1 * first_moment + (1.0 - beta_1) * gradient
            second_moment = beta_2 * second_moment + (1.0 - beta_2) * ops.square(gradient)
            corrected = (
                self.fold_in_learning_rate * math.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
            )
            vector = vector - corrected * first_moment / (ops.sqrt(second_moment) + epsilon)
        hidden = activation(base + vector)
        return ops.sigmoid(ops.matmul(hidden, decoder_kernel) + decoder_bias)

    def _expected_item_weights(self, target):
        """1 per item, or with negative sampling its expected sampling mask (positives: 1)."""
        if self.negative_sample_ratio is None:
            return ops.ones_like(target)
        positive, keep_probability = self._keep_probability(target)
        return ops.maximum(positive, keep_probability * ops.ones_like(target))

    def _keep_probability(self, target):
        """Positives (0/1) and each row's probability of sampling one of its zeros."""
        positive = ops.cast(ops.greater(target, 0), target.dtype)
        num_positive = ops.sum(positive, axis=-1, keepdims=True)
        num_zero = ops.maximum(float(self.num_items) - num_positive, 1.0)
        return positive, ops.minimum(1.0, self.negative_sample_ratio * num_positive / num_zero)

    def _check_users(self, users, num_rows: int):
        users = super()._check_users(users, num_rows)
        if (
            users is not None
            and users.size
            and (users.min() < UNKNOWN_USER or users.max() >= self.num_users)
        ):
            raise ValueError(
                f"`users` should hold training-user positions in [0, {self.num_users}) or "
                f"-1 for users without an embedding. Received: users in "
                f"[{users.min()}, {users.max()}]"
            )
        return users

    def get_config(self):
        return {
            **self._base_config(),
            "num_users": self.num_users,
            "num_items": self.num_items,
            "hidden_dim": self.hidden_dim,
            "corruption_ratio": self.corruption_ratio,
            "activation": self.activation,
            "reconstruction_loss": self.reconstruction_loss,
            "negative_sample_ratio": self.negative_sample_ratio,
            "l2": self.l2,
            "fold_in_steps": self.fold_in_steps,
            "fold_in_learning_rate": self.fold_in_learning_rate,
            "item_ids": item_ids_config(self.item_ids, self.num_items),
            "seed": self.seed,
        }
