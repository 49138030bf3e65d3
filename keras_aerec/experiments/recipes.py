"""How each model family is built and trained by the benchmark runner.

The hyperparameters here are the papers' defaults where they transfer to MovieLens 1M,
and otherwise the settings measured in BENCHMARKS.md; `quick` ones are the demo's.
"""

import dataclasses
from collections.abc import Callable

import keras


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Build and training schedule of one model family.

    Attributes:
        name: CLI name (`i-autorec`, `multvae`, ...).
        kind: `"rating"` (RMSE on a ratings split) or `"ranking"` (top-N metrics).
        factory: `factory(split, **hyperparameters)` returns a compiled model.
        defaults: constructor / optimiser hyperparameters for a full run.
        quick: overrides for the demo's short run.
        epochs: epoch budget of a full run (early stopping may end it sooner).
        quick_epochs: epoch budget of the demo.
        batch_size: rows per training batch.
        patience: early-stopping patience in epochs.
        user_index: whether batches carry the user positions (CDAE).
        closed_form: trained by `model.fit(train)` without epochs (EASE).
    """

    name: str
    kind: str
    factory: Callable
    defaults: dict
    quick: dict = dataclasses.field(default_factory=dict)
    epochs: int = 100
    quick_epochs: int = 5
    batch_size: int = 256
    patience: int = 10
    user_index: bool = False
    closed_form: bool = False

    def hyperparameters(self, quick: bool) -> dict:
        return {**self.defaults, **(self.quick if quick else {})}

    def build(self, split, hyperparameters: dict):
        return self.factory(split, **hyperparameters)


def _adam(learning_rate):
    return keras.optimizers.Adam(learning_rate=learning_rate)


def _autorec(variant):
    def factory(split, learning_rate=1e-3, **hyperparameters):
        from keras_aerec.models.auto_rec import AutoRec

        num_users, num_items = split.train.shape
        model = AutoRec(
            num_inputs=num_users if variant == "item" else num_items,
            variant=variant,
            num_rows=num_items if variant == "item" else num_users,
            user_ids=split.user_ids,
            item_ids=split.item_ids,
            **hyperparameters,
        )
        model.compile(optimizer=_adam(learning_rate))
        return model

    return factory


def _deeprec(split, learning_rate=1e-3, variant="user", **hyperparameters):
    from keras_aerec.models.deep_rec import DeepRec

    num_users, num_items = split.train.shape
    model = DeepRec(
        num_inputs=num_users if variant == "item" else num_items,
        variant=variant,
        user_ids=split.user_ids,
        item_ids=split.item_ids,
        **hyperparameters,
    )
    model.compile(optimizer=_adam(learning_rate))
    return model


def _cdae(split, learning_rate=1e-3, **hyperparameters):
    from keras_aerec.models.cdae import CDAE

    model = CDAE(
        num_users=split.train.shape[0],
        num_items=split.num_items,
        item_ids=split.item_ids,
        **hyperparameters,
    )
    model.compile(optimizer=_adam(learning_rate))
    return model


def _mult_vae(split, learning_rate=1e-3, **hyperparameters):
    from keras_aerec.models.mult_vae import MultVAE

    model = MultVAE(num_items=split.num_items, item_ids=split.item_ids, **hyperparameters)
    model.compile(optimizer=_adam(learning_rate))
    return model


def _mult_dae(split, learning_rate=1e-3, **hyperparameters):
    from keras_aerec.models.mult_dae import MultDAE

    model = MultDAE(num_items=split.num_items, item_ids=split.item_ids, **hyperparameters)
    model.compile(optimizer=_adam(learning_rate))
    return model


def _ease(split, **hyperparameters):
    from keras_aerec.models.ease import EASE

    return EASE(num_items=split.num_items, item_ids=split.item_ids, **hyperparameters)


MODELS = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "i-autorec",
            "rating",
            _autorec("item"),
            defaults={"hidden_units": 500, "l2": 1.0, "learning_rate": 1e-3},
            quick={"hidden_units": 100, "learning_rate": 1e-2},
            epochs=200,
            quick_epochs=20,
            batch_size=256,
        ),
        Recipe(
            "u-autorec",
            "rating",
            _autorec("user"),
            defaults={"hidden_units": 500, "l2": 1.0, "learning_rate": 1e-3},
            quick={"hidden_units": 100, "learning_rate": 1e-2},
            epochs=200,
            quick_epochs=20,
            batch_size=256,
        ),
        Recipe(
            "deeprec",
            "rating",
            _deeprec,
            defaults={"learning_rate": 1e-3},
            quick={"hidden_units": (64, 64, 128)},
            epochs=200,
            quick_epochs=8,
            batch_size=128,
        ),
        Recipe(
            "cdae",
            "ranking",
            _cdae,
            defaults={"hidden_dim": 50, "learning_rate": 1e-3},
            epochs=100,
            quick_epochs=10,
            batch_size=256,
            user_index=True,
        ),
        Recipe(
            "multvae",
            "ranking",
            _mult_vae,
            defaults={"learning_rate": 1e-3},
            quick={"hidden_dims": (100,), "latent_dim": 50},
            epochs=100,
            quick_epochs=10,
            batch_size=500,
        ),
        Recipe(
            "multdae",
            "ranking",
            _mult_dae,
            defaults={"learning_rate": 1e-3},
            quick={"hidden_dims": (100,), "latent_dim": 50},
            epochs=100,
            quick_epochs=10,
            batch_size=500,
        ),
        Recipe("ease", "ranking", _ease, defaults={"l2": 500.0}, closed_form=True),
    )
}
