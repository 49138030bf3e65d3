"""`MultDAEHyperModel`: the search space of Mult-DAE."""

from keras_aerec.hypermodels.base import AutoencoderHyperModel, ItemSpaceMixin
from keras_aerec.hypermodels.mult_vae import MultinomialAutoencoderMixin
from keras_aerec.models.mult_dae import MultDAE


class MultDAEHyperModel(MultinomialAutoencoderMixin, ItemSpaceMixin, AutoencoderHyperModel):
    """Mult-DAE search space, selected on the validation NDCG@100 by default.

    Hyperparameters (defaults are the model's): `hidden_dims` (`"600"`), `latent_dim`
    (200), `dropout` (0.5), `l2` (2e-5, the paper's code: 0.01 / batch 500),
    `learning_rate` (1e-3) and the training knob `batch_size` (500).

    Args:
        num_items: number of items.
        item_ids: optional original item ids (one per item).
        **options: `objective`, `epochs`, `patience`, `seed`, ... (see
            `AutoencoderHyperModel`).

    Reference:
        Liang, Krishnan, Hoffman and Jebara, "Variational Autoencoders for Collaborative
        Filtering", WWW 2018.
    """

    model_class = MultDAE
    recipe_name = "multdae"
    l2_choices = (0.0, 2e-6, 2e-5, 2e-4)
