"""Train and evaluate models under a named evaluation protocol (the article's table).

`run_benchmark(interactions, protocol, models)` prepares the protocol's split once per
kind of model (ratings for AutoRec / DeepRec, implicit feedback for the others), trains each
model with `model.fit` on `RowBatches`, selects the epoch on the protocol's validation
metric when the protocol has a validation part, and evaluates the test part.
"""

import dataclasses
import logging
import time

import keras
import numpy as np

from keras_aerec.data.batching import RowBatches
from keras_aerec.data.splits import rating_holdout, strong_generalization, weak_generalization
from keras_aerec.evaluation.callbacks import RankingEvaluation, RatingEvaluation
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.evaluation.rating import evaluate_rating
from keras_aerec.experiments.recipes import MODELS, Recipe

logger = logging.getLogger("keras_aerec")

PROTOCOLS = ("article", "liang", "recbole")


@dataclasses.dataclass
class Protocol:
    """How a protocol prepares data and what it reports.

    Attributes:
        name: protocol name.
        description: one line for reports.
        ranking_ks: cut-offs reported on the test part.
        select_on: validation metric that picks the epoch (ranking models).
        recall_normalization: `"min"` (Liang et al.) or `"relevant"` (RecBole).
    """

    name: str
    description: str
    ranking_ks: tuple
    select_on: str
    recall_normalization: str = "min"

    def ranking_split(self, interactions, seed):
        if self.name == "article":
            # The article trains on 80 % and has no validation part: fixed epoch budgets.
            return weak_generalization(interactions.to_implicit(3.0), test=0.2, seed=seed)
        if self.name == "liang":
            positives = interactions.to_implicit(3.0).filter_min_interactions(users=5)
            heldout = _heldout_users(positives.num_users)
            return strong_generalization(positives, num_heldout_users=heldout, seed=seed)
        if self.name == "recbole":
            positives = interactions.to_implicit(2.0).k_core(10)
            return weak_generalization(positives, test=0.1, validation=0.1, seed=seed)
        raise ValueError(
            f"`protocol` should be one of {PROTOCOLS}. Received: protocol={self.name!r}"
        )

    def rating_split(self, interactions, seed):
        return rating_holdout(interactions, test=0.1, validation=0.1, seed=seed)


_PROTOCOLS = {
    "article": Protocol(
        "article",
        "per-user random 80/20 holdout of ratings > 3, fixed epoch budgets; RMSE on a "
        "random 90/10 ratings split (10 % of it for early stopping) for the rating models",
        ranking_ks=(10, 100),
        select_on="val_ndcg@100",
    ),
    "liang": Protocol(
        "liang",
        "strong generalization (Liang et al. 2018): ratings > 3, users with >= 5, "
        "held-out validation and test users, random 80 % fold-in / 20 % evaluated",
        ranking_ks=(20, 50, 100),
        select_on="val_ndcg@100",
    ),
    "recbole": Protocol(
        "recbole",
        "RecBole ML-1M: ratings >= 3, 10-core, random per-user 8:1:1, full ranking, "
        "selected on validation NDCG@10, Recall = hits / |relevant|",
        ranking_ks=(10,),
        select_on="val_ndcg@10",
        recall_normalization="relevant",
    ),
}


def _heldout_users(num_users: int) -> int:
    """600 of ML-1M's 6,040 users as in the model issue; a tenth of smaller datasets."""
    return int(min(600, max(1, num_users // 10)))


def get_protocol(name: str) -> Protocol:
    if name not in _PROTOCOLS:
        raise ValueError(
            f"`protocol` should be one of {', '.join(PROTOCOLS)}. Received: protocol={name!r}"
        )
    return _PROTOCOLS[name]


@dataclasses.dataclass
class ModelResult:
    """One trained and evaluated model: a row of the article's table."""

    model: str
    kind: str
    protocol: str
    metrics: dict
    epochs: int
    seconds: float
    history: dict
    hyperparameters: dict
    split: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_benchmark(
    interactions,
    protocol: str = "article",
    models=None,
    seed: int = 0,
    epochs: int | None = None,
    quick: bool = False,
    verbose: int | str = "auto",
) -> list[ModelResult]:
    """Trains and evaluates `models` on `interactions` under `protocol`.

    Args:
        interactions: an `Interactions` with ratings (1-5 for MovieLens).
        protocol: one of `PROTOCOLS`.
        models: names from `MODELS` (default: all of them).
        seed: seed of the split and of the model initialisation.
        epochs: overrides every model's epoch budget.
        quick: the demo's short schedule (few epochs, small layers).
        verbose: Keras `fit` verbosity.

    Returns:
        One `ModelResult` per model, in the order given.
    """
    spec = get_protocol(protocol)
    names = list(models) if models else list(MODELS)
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise ValueError(
            f"`models` should be among {', '.join(MODELS)}. Received unknown: {', '.join(unknown)}"
        )
    splits = {}
    results = []
    for name in names:
        recipe = MODELS[name]
        if recipe.kind not in splits:
            start = time.perf_counter()
            make = spec.rating_split if recipe.kind == "rating" else spec.ranking_split
            splits[recipe.kind] = make(interactions, seed)
            logger.info(
                "%s split in %.2f s: %s",
                recipe.kind,
                time.perf_counter() - start,
                splits[recipe.kind].summary(),
            )
        keras.utils.set_random_seed(seed)
        runner = _run_rating if recipe.kind == "rating" else _run_ranking
        result = runner(recipe, splits[recipe.kind], spec, epochs, quick, verbose)
        logger.info("%s: %s in %.1f s", name, _format_metrics(result.metrics), result.seconds)
        results.append(result)
    return results


def _format_metrics(metrics: dict) -> str:
    return ", ".join(f"{key}={value:.4f}" for key, value in metrics.items())


def _epochs(recipe: Recipe, epochs, quick) -> int:
    if epochs is not None:
        return int(epochs)
    return recipe.quick_epochs if quick else recipe.epochs


def _history(history) -> dict:
    return {key: [float(value) for value in values] for key, values in history.history.items()}


def _run_rating(recipe, split, spec, epochs, quick, verbose) -> ModelResult:
    hyperparameters = recipe.hyperparameters(quick)
    model = recipe.build(split, hyperparameters)
    train_rows = model.rating_rows(split.train)
    validation_rows = model.rating_rows(split.validation)
    test_rows = model.rating_rows(split.test)
    batches = RowBatches(train_rows, y="x", batch_size=recipe.batch_size, seed=0)
    callbacks = [
        RatingEvaluation(train_rows, validation_rows),
        keras.callbacks.EarlyStopping(
            "val_rmse", mode="min", patience=recipe.patience, restore_best_weights=True
        ),
    ]
    start = time.perf_counter()
    history = model.fit(
        batches, epochs=_epochs(recipe, epochs, quick), callbacks=callbacks, verbose=verbose
    )
    seconds = time.perf_counter() - start
    test = evaluate_rating(model, train_rows, test_rows, default_rating=model.default_rating)
    curves = _history(history)
    return ModelResult(
        model=recipe.name,
        kind="rating",
        protocol=spec.name,
        metrics={"rmse": float(test["rmse"]), "mae": float(test["mae"])},
        epochs=_best_epoch(curves, "val_rmse", "min"),
        seconds=seconds,
        history=curves,
        hyperparameters=hyperparameters,
        split=split.summary(),
    )


def _run_ranking(recipe, split, spec, epochs, quick, verbose) -> ModelResult:
    hyperparameters = recipe.hyperparameters(quick)
    model = recipe.build(split, hyperparameters)
    start = time.perf_counter()
    if recipe.closed_form:
        model.fit(split.train)
        curves = {}
        best_epoch = 0
    else:
        batches = RowBatches(
            split.train, batch_size=recipe.batch_size, seed=0, user_index=recipe.user_index
        )
        callbacks = []
        if split.validation is not None:
            callbacks = [
                RankingEvaluation(
                    split.validation,
                    ks=(int(spec.select_on.split("@")[1]),),
                    recall_normalization=spec.recall_normalization,
                ),
                keras.callbacks.EarlyStopping(
                    spec.select_on, mode="max", patience=recipe.patience, restore_best_weights=True
                ),
            ]
        history = model.fit(
            batches, epochs=_epochs(recipe, epochs, quick), callbacks=callbacks, verbose=verbose
        )
        curves = _history(history)
        best_epoch = (
            _best_epoch(curves, spec.select_on, "max")
            if spec.select_on in curves
            else len(curves.get("loss", []))
        )
    seconds = time.perf_counter() - start
    test = evaluate_ranking(
        model,
        split.test,
        ks=spec.ranking_ks,
        recall_normalization=spec.recall_normalization,
    )
    metrics = {key: float(value) for key, value in test.items() if "@" in key}
    return ModelResult(
        model=recipe.name,
        kind="ranking",
        protocol=spec.name,
        metrics=metrics,
        epochs=best_epoch,
        seconds=seconds,
        history=curves,
        hyperparameters=hyperparameters,
        split=split.summary(),
    )


def _best_epoch(curves: dict, monitor: str, mode: str) -> int:
    values = curves.get(monitor)
    if not values:
        return len(curves.get("loss", []))
    pick = np.argmin if mode == "min" else np.argmax
    return int(pick(values)) + 1
