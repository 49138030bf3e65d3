"""`DeepRecHyperModel`: the search space of DeepRec."""

from keras_aerec.hypermodels.base import (
    AutoencoderHyperModel,
    choices_with,
    decode_widths,
    encode_widths,
    set_rating_space,
)
from keras_aerec.models.deep_rec import DeepRec

HIDDEN_UNITS = ("512,512,1024", "512,512", "256,256,512", "128,128,256", "1024")


class DeepRecHyperModel(AutoencoderHyperModel):
    """DeepRec search space, selected on the validation RMSE by default.

    Hyperparameters (defaults are the paper's): `hidden_units` (encoder widths written
    `"512,512,1024"`), `activation` (`"selu"`), `dropout` on the code (0.8), `l2` (0),
    `tied` (False), `refeeds` (1), `learning_rate` (1e-3) and the training knob
    `batch_size` (the recipe's, 128).

    Args:
        num_users: number of users of the ratings matrix.
        num_items: number of items of the ratings matrix.
        variant: `"user"` (the paper's: rows are users) or `"item"`.
        user_ids: optional original user ids (one per user).
        item_ids: optional original item ids (one per item).
        **options: `objective`, `epochs`, `patience`, `seed`, ... (see
            `AutoencoderHyperModel`).

    Reference:
        Kuchaiev, Ginsburg. Training Deep AutoEncoders for Collaborative Filtering.
        arXiv:1708.01715, 2017.
    """

    model_class = DeepRec
    recipe_name = "deeprec"

    def __init__(
        self, num_users, num_items, variant="user", user_ids=None, item_ids=None, **options
    ):
        set_rating_space(self, num_users, num_items, variant, user_ids, item_ids)
        super().__init__(**options)

    def build_model(self, hp):
        default_units = encode_widths(self.default("hidden_units"))
        return DeepRec(
            num_inputs=self.num_items if self.variant == "user" else self.num_users,
            hidden_units=decode_widths(
                hp.Choice(
                    "hidden_units", choices_with(HIDDEN_UNITS, default_units), default=default_units
                )
            ),
            activation=hp.Choice(
                "activation",
                choices_with(("selu", "elu", "relu", "sigmoid"), self.default("activation")),
                default=self.default("activation"),
            ),
            dropout=hp.Float("dropout", 0.0, 0.9, step=0.1, default=self.default("dropout")),
            l2=hp.Choice(
                "l2",
                choices_with((0.0, 1e-5, 1e-4, 1e-3), self.default("l2")),
                default=self.default("l2"),
            ),
            tied=hp.Boolean("tied", default=self.default("tied")),
            refeeds=hp.Choice(
                "refeeds",
                choices_with((0, 1, 2), self.default("refeeds")),
                default=self.default("refeeds"),
            ),
            variant=self.variant,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
        )
