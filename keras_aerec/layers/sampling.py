"""`Sampling`: reparameterised Gaussian sample that adds its annealed KL term as a loss."""

import keras
from keras import ops

from keras_aerec.api_export import keras_aerec_export


def gaussian_kl(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) summed over the last axis.

    Args:
        mean: float tensor (..., latent_dim).
        log_var: float tensor of the same shape, log-variances.

    Returns:
        Float tensor (...): one KL value per row (per user, or per time step).
    """
    return 0.5 * ops.sum(ops.exp(log_var) + ops.square(mean) - 1.0 - log_var, axis=-1)


def _masked_mean(values, mask):
    """Mean of `values` over the entries where `mask` is nonzero (0 when there are none)."""
    mask = ops.cast(ops.not_equal(mask, 0), values.dtype)
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras_aerec_export
class Sampling(keras.layers.Layer):
    """Reparameterised sample `z = mean + exp(log_var / 2) * eps` with an annealed KL loss.

    During training the layer draws `eps ~ N(0, I)` and adds `beta * KL` to the model's
    losses (`add_loss`), where KL is the divergence of `N(mean, exp(log_var))` from the
    standard normal prior, summed over the latent axis and averaged over every other axis
    (users, or users x time steps for sequence models). Outside training it returns `mean`
    (the mean of q(z|x)) and adds nothing, so inference is deterministic.

    KL annealing: `beta = min(anneal_cap, step / total_anneal_steps)`, where `step` counts
    the training calls (one per gradient update under `model.fit`) made before the current
    one. `step` lives in the non-trainable weight `anneal_step`, updated inside `call`, so
    the schedule works the same on TensorFlow, JAX and PyTorch and resumes correctly from
    a saved model. `total_anneal_steps=0` uses `beta = anneal_cap` from the first update.
    A fixed `beta` is `total_anneal_steps=0, anneal_cap=beta`.

    Args:
        anneal_cap: the largest KL weight beta, a float >= 0. Defaults to `0.2`.
        total_anneal_steps: number of updates over which beta grows linearly from 0, an
            integer >= 0. Defaults to `200000`.
        seed: optional integer seed of the noise.
        **kwargs: forwarded to `keras.layers.Layer`.

    Call arguments:
        inputs: a list `[mean, log_var]` of two float tensors of the same shape, or
            `[mean, log_var, mask]` where `mask` has the shape of `mean` without its last
            axis (e.g. `(batch, time)` for `(batch, time, latent_dim)` inputs): the KL is
            then averaged over the positions where `mask` is nonzero only (padded time
            steps of sequence models add nothing), and is 0 when the mask is all zero.
        training: whether to sample (and add the KL loss) or return `mean`.

    Example:

    >>> import numpy as np
    >>> layer = Sampling(anneal_cap=0.2, total_anneal_steps=10)
    >>> z = layer([np.zeros((2, 3)), np.zeros((2, 3))])  # inference: returns the mean
    >>> tuple(z.shape)
    (2, 3)

    Reference:
        Kingma and Welling, "Auto-Encoding Variational Bayes", ICLR 2014;
        Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018
        (KL annealing, section 2.2.2).
    """

    def __init__(self, anneal_cap=0.2, total_anneal_steps=200000, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(anneal_cap, bool) or not isinstance(anneal_cap, int | float):
            raise ValueError(
                f"`anneal_cap` should be a non-negative float. Received: anneal_cap={anneal_cap!r}"
            )
        if anneal_cap < 0:
            raise ValueError(
                f"`anneal_cap` should be a non-negative float. Received: anneal_cap={anneal_cap}"
            )
        if (
            isinstance(total_anneal_steps, bool)
            or not isinstance(total_anneal_steps, int)
            or total_anneal_steps < 0
        ):
            raise ValueError(
                "`total_anneal_steps` should be a non-negative integer. "
                f"Received: total_anneal_steps={total_anneal_steps!r}"
            )
        self.anneal_cap = float(anneal_cap)
        self.total_anneal_steps = int(total_anneal_steps)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        # float32 counts exactly up to 2**24 updates, far beyond any annealing schedule.
        self.anneal_step = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            autocast=False,
            name="anneal_step",
        )

    def kl_weight(self):
        """The KL weight beta that the next training update will use (a scalar tensor)."""
        if self.total_anneal_steps == 0:
            return ops.convert_to_tensor(self.anneal_cap, dtype="float32")
        return ops.minimum(
            ops.convert_to_tensor(self.anneal_cap, dtype="float32"),
            ops.divide(self.anneal_step, float(self.total_anneal_steps)),
        )

    def call(self, inputs, training=None):
        mean, log_var = inputs[0], inputs[1]
        if not training:
            return mean
        # The KL term is a loss: float32 under a mixed precision policy, as Keras' losses.
        kl = gaussian_kl(ops.cast(mean, "float32"), ops.cast(log_var, "float32"))
        kl = _masked_mean(kl, inputs[2]) if len(inputs) > 2 else ops.mean(kl)
        self.add_loss(self.kl_weight() * kl)
        self.anneal_step.assign(self.anneal_step + 1.0)
        noise = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * noise

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "anneal_cap": self.anneal_cap,
                "total_anneal_steps": self.total_anneal_steps,
                "seed": self.seed,
            }
        )
        return config
