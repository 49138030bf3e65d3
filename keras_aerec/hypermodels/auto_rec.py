"""`AutoRecHyperModel`: the search space of AutoRec (I-AutoRec and U-AutoRec)."""

from keras_aerec.hypermodels.base import AutoencoderHyperModel, set_rating_space
from keras_aerec.models.auto_rec import AutoRec


class AutoRecHyperModel(AutoencoderHyperModel):
    """AutoRec search space, selected on the validation RMSE by default.

    Hyperparameters (defaults are the paper's): `hidden_units` (500), `l2` (the paper's
    lambda, 1.0, log-uniform in [1e-3, 1e3] as the paper's grid), `learning_rate` (Adam,
    1e-3) and the training knob `batch_size`.

    Args:
        num_users: number of users of the ratings matrix.
        num_items: number of items of the ratings matrix.
        variant: `"item"` (I-AutoRec, rows are items) or `"user"` (U-AutoRec).
        user_ids: optional original user ids (one per user).
        item_ids: optional original item ids (one per item).
        **options: `objective`, `epochs`, `patience`, `seed`, ... (see
            `AutoencoderHyperModel`).

    Example:

    >>> import keras_tuner
    >>> hypermodel = AutoRecHyperModel(num_users=50, num_items=30)
    >>> model = hypermodel.build(keras_tuner.HyperParameters())  # the paper's defaults
    >>> model.hidden_units
    500

    Reference:
        Sedhain, Menon, Sanner, Xie. AutoRec: Autoencoders Meet Collaborative Filtering.
        WWW 2015.
    """

    model_class = AutoRec

    def __init__(
        self, num_users, num_items, variant="item", user_ids=None, item_ids=None, **options
    ):
        set_rating_space(self, num_users, num_items, variant, user_ids, item_ids)
        super().__init__(**options)

    @property
    def recipe_name(self):
        return "i-autorec" if self.variant == "item" else "u-autorec"

    def build_model(self, hp):
        item_based = self.variant == "item"
        return AutoRec(
            num_inputs=self.num_users if item_based else self.num_items,
            hidden_units=hp.Int(
                "hidden_units", 100, 1000, step=100, default=self.default("hidden_units")
            ),
            l2=hp.Float("l2", 1e-3, 1e3, sampling="log", default=self.default("l2")),
            variant=self.variant,
            num_rows=self.num_items if item_based else self.num_users,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
        )
