"""`MultDAEHyperModel`: the search space of Mult-DAE."""

from keras_aerec.hypermodels.base import AutoencoderHyperModel
from keras_aerec.hypermodels.mult_vae import multinomial_autoencoder_hyperparameters
from keras_aerec.models.mult_dae import MultDAE


class MultDAEHyperModel(AutoencoderHyperModel):
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

    def __init__(self, num_items, item_ids=None, **options):
        self.num_items = num_items
        self.item_ids = item_ids
        super().__init__(**options)

    def build_model(self, hp):
        return MultDAE(
            num_items=self.num_items,
            item_ids=self.item_ids,
            seed=self.seed,
            **multinomial_autoencoder_hyperparameters(self, hp, l2_choices=(0.0, 2e-6, 2e-5, 2e-4)),
        )
