"""`MultVAEHyperModel`: the search space of Mult-VAE, KL annealing included."""

from keras_aerec.hypermodels.base import (
    AutoencoderHyperModel,
    ItemSpaceMixin,
    choices_with,
    decode_widths,
    encode_widths,
)
from keras_aerec.models.mult_vae import MultVAE

HIDDEN_DIMS = ("300", "600", "900")
LATENT_DIMS = (50, 100, 200, 400)


class KLAnnealingHyperModel(AutoencoderHyperModel):
    """Base of the VAEs' HyperModels: the KL annealing schedule is a training knob.

    `anneal_cap` and `total_anneal_steps` default to the model's constructor defaults;
    they only act in training, so `fit` sets them on the model's `Sampling` layer rather
    than rebuilding them into the graph.
    """

    anneal_steps_choices = (200, 2000, 20000)

    def fit_hyperparameters(self, hp):
        default_steps = self.default("total_anneal_steps")
        return {
            **super().fit_hyperparameters(hp),
            "anneal_cap": hp.Float(
                "anneal_cap", 0.0, 1.0, step=0.1, default=self.default("anneal_cap")
            ),
            "total_anneal_steps": hp.Choice(
                "total_anneal_steps",
                choices_with(self.anneal_steps_choices, default_steps),
                default=default_steps,
            ),
        }

    def fit(self, hp, model, *args, **kwargs):
        knobs = self.fit_hyperparameters(hp)
        set_annealing(model, knobs["anneal_cap"], knobs["total_anneal_steps"])
        return super().fit(hp, model, *args, **kwargs)


class MultinomialAutoencoderMixin:
    """HyperModel mixin building Mult-VAE / Mult-DAE: widths, dropout and `l2_choices`."""

    l2_choices = (0.0,)

    def build_model(self, hp):
        return self.model_class(
            num_items=self.num_items,
            item_ids=self.item_ids,
            seed=self.seed,
            **multinomial_autoencoder_hyperparameters(self, hp, l2_choices=self.l2_choices),
        )


class MultVAEHyperModel(MultinomialAutoencoderMixin, ItemSpaceMixin, KLAnnealingHyperModel):
    """Mult-VAE search space, selected on the validation NDCG@100 by default.

    Hyperparameters (defaults are the paper's I-600-200-600-I): `hidden_dims` (one
    hidden layer, written `"600"`), `latent_dim` (200), `dropout` (0.5), `l2` (0),
    `learning_rate` (1e-3); training knobs: `batch_size` (500), `anneal_cap` (0.2) and
    `total_anneal_steps` (200000). The annealing schedule only acts in training, so it
    is set on the model's `Sampling` layer in `fit` rather than rebuilt into the graph.

    Args:
        num_items: number of items.
        item_ids: optional original item ids (one per item).
        **options: `objective`, `epochs`, `patience`, `seed`, ... (see
            `AutoencoderHyperModel`).

    Example:

    >>> import keras_tuner
    >>> hypermodel = MultVAEHyperModel(num_items=100)
    >>> hypermodel.build(keras_tuner.HyperParameters()).latent_dim
    200

    Reference:
        Liang, Krishnan, Hoffman and Jebara, "Variational Autoencoders for Collaborative
        Filtering", WWW 2018.
    """

    model_class = MultVAE
    recipe_name = "multvae"
    l2_choices = (0.0, 1e-6, 1e-5, 1e-4)


def set_annealing(model, anneal_cap: float, total_anneal_steps: int) -> None:
    """Sets the KL annealing schedule of a model with a `Sampling` layer before training.

    `Sampling` reads the schedule when the training step is traced, so this takes effect
    for a model that has not been trained yet (what a trial's `fit` receives).
    """
    sampling = model.get_layer("sampling")
    sampling.anneal_cap = model.anneal_cap = float(anneal_cap)
    sampling.total_anneal_steps = model.total_anneal_steps = int(total_anneal_steps)


def multinomial_autoencoder_hyperparameters(hypermodel, hp, l2_choices) -> dict:
    """The architecture shared by Mult-VAE and Mult-DAE: widths, dropout and L2."""
    default_hidden = encode_widths(hypermodel.default("hidden_dims"))
    default_latent = hypermodel.default("latent_dim")
    default_l2 = hypermodel.default("l2")
    hidden = hp.Choice(
        "hidden_dims", choices_with(HIDDEN_DIMS, default_hidden), default=default_hidden
    )
    return {
        "hidden_dims": decode_widths(hidden),
        "latent_dim": hp.Choice(
            "latent_dim", choices_with(LATENT_DIMS, default_latent), default=default_latent
        ),
        "dropout": hp.Float("dropout", 0.0, 0.8, step=0.1, default=hypermodel.default("dropout")),
        "l2": hp.Choice("l2", choices_with(l2_choices, default_l2), default=default_l2),
    }
