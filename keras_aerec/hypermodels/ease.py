"""`EASEHyperModel`: the search over EASE's L2 penalty (closed form, no epochs)."""

from keras_aerec.hypermodels.base import ClosedFormHyperModel, ItemSpaceMixin
from keras_aerec.models.ease import EASE


class EASEHyperModel(ItemSpaceMixin, ClosedFormHyperModel):
    """EASE search space: `l2` (lambda, log-uniform in [1, 1e4], default 500 as the paper).

    Each trial computes B in closed form on the training matrix and evaluates the
    validation part once: there are no epochs, batches or optimizer (so no Hyperband).

    Args:
        num_items: number of items.
        item_ids: optional original item ids (one per item).
        **options: `objective`, `ks`, `recall_normalization`, ... (see
            `AutoencoderHyperModel`).

    Reference:
        Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.
    """

    model_class = EASE
    recipe_name = "ease"

    def build_model(self, hp):
        return EASE(
            num_items=self.num_items,
            l2=hp.Float("l2", 1.0, 1e4, sampling="log", default=self.default("l2")),
            item_ids=self.item_ids,
        )
