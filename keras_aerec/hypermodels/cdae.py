"""`CDAEHyperModel`: the search space of CDAE."""

from keras_aerec.hypermodels.base import AutoencoderHyperModel, choices_with
from keras_aerec.models.cdae import CDAE, RECONSTRUCTION_LOSSES


class CDAEHyperModel(AutoencoderHyperModel):
    """CDAE search space, selected on the validation NDCG@100 by default.

    Hyperparameters (defaults are the paper's): `hidden_dim` (K = 50),
    `corruption_ratio` (0.5), `activation` of the hidden layer (`"sigmoid"`; the paper
    compares sigmoid and identity), `reconstruction_loss` (binary cross-entropy), `l2`
    (1e-5, log-uniform), `learning_rate` (1e-3) and the training knob `batch_size`.
    CDAE learns one vector per training user, so it is searched on protocols whose
    validation users are training users (weak generalization, e.g. `recbole`).

    Args:
        num_users: number of training users (rows of the user embedding).
        num_items: number of items.
        item_ids: optional original item ids (one per item).
        **options: `objective`, `epochs`, `patience`, `seed`, ... (see
            `AutoencoderHyperModel`).

    Reference:
        Wu, DuBois, Zheng and Ester, "Collaborative Denoising Auto-Encoders for Top-N
        Recommender Systems", WSDM 2016.
    """

    model_class = CDAE
    recipe_name = "cdae"

    def __init__(self, num_users, num_items, item_ids=None, **options):
        self.num_users = num_users
        self.num_items = num_items
        self.item_ids = item_ids
        super().__init__(**options)

    def build_model(self, hp):
        default_dim = self.default("hidden_dim")
        return CDAE(
            num_users=self.num_users,
            num_items=self.num_items,
            hidden_dim=hp.Choice(
                "hidden_dim", choices_with((25, 50, 100, 200), default_dim), default=default_dim
            ),
            corruption_ratio=hp.Float(
                "corruption_ratio", 0.0, 0.9, step=0.1, default=self.default("corruption_ratio")
            ),
            activation=hp.Choice(
                "activation",
                choices_with(("sigmoid", "linear", "relu", "tanh"), self.default("activation")),
                default=self.default("activation"),
            ),
            reconstruction_loss=hp.Choice(
                "reconstruction_loss",
                list(RECONSTRUCTION_LOSSES),
                default=self.default("reconstruction_loss"),
            ),
            l2=hp.Float("l2", 1e-7, 1e-3, sampling="log", default=self.default("l2")),
            item_ids=self.item_ids,
            seed=self.seed,
        )
