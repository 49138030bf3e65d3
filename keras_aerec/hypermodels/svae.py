"""`SVAEHyperModel`: the search space of SVAE, KL annealing included."""

from keras_aerec.hypermodels.base import ItemSpaceMixin, choices_with
from keras_aerec.hypermodels.mult_vae import KLAnnealingHyperModel
from keras_aerec.models.svae import SVAE

# Candidate values of each constructor argument; the paper's default is always added.
CHOICES = {
    "item_embedding_dim": (64, 128, 256),
    "rnn_units": (100, 200, 400),
    "hidden_units": (100, 150, 300),
    "latent_dim": (32, 64, 128),
    "next_k": (1, 2, 4, 8),
    "max_len": (50, 100, 200),
    "l2": (0.0, 1e-6, 1e-5, 1e-4),
}


class SVAEHyperModel(ItemSpaceMixin, KLAnnealingHyperModel):
    """SVAE search space, selected on the validation NDCG@100 by default.

    Hyperparameters (defaults are the model's, i.e. the paper's sizes):
    `item_embedding_dim` (256), `rnn_units` (200), `hidden_units` (150), `latent_dim`
    (64), `next_k` (4), `max_len` (200), `l2` (0), `learning_rate` (1e-3); training
    knobs: `batch_size` (16 sequences), `anneal_cap` (0.2) and `total_anneal_steps`
    (20000), set on the model's `Sampling` layer in `fit`.

    `fit(hp, model, train, validation)` takes the training interactions' timestamps
    (`RankingSplit.train_timestamps` of a `temporal` split) as `train`, and a validation
    part with `fold_in_timestamps`; the model reads both in time order.

    Takes `num_items` and `item_ids` (see `ItemSpaceMixin`) and the options of
    `AutoencoderHyperModel` (`objective`, `epochs`, `patience`, `seed`, ...).

    Example:

    >>> import keras_tuner
    >>> hp = keras_tuner.HyperParameters()
    >>> SVAEHyperModel(num_items=100).build(hp).rnn_units
    200

    Reference:
        Sachdeva, Manco, Ritacco and Pudi, "Sequential Variational Autoencoders for
        Collaborative Filtering", WSDM 2019.
    """

    model_class = SVAE
    recipe_name = "svae"

    def build_model(self, hp):
        hyperparameters = {}
        for name, values in CHOICES.items():
            default = self.default(name)
            hyperparameters[name] = hp.Choice(name, choices_with(values, default), default=default)
        return SVAE(
            num_items=self.num_items, item_ids=self.item_ids, seed=self.seed, **hyperparameters
        )
