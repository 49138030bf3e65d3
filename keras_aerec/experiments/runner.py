"""Train and evaluate models under a named evaluation protocol (the article's table).

`run_benchmark(interactions, protocol, models)` prepares the protocol's split once per
kind of model (ratings for AutoRec / DeepRec, implicit feedback for the others,
time-ordered sequences for SVAE), trains each model with `model.fit`, selects the epoch
on the protocol's validation metric when the split has a validation part, and evaluates
the test part.

SVAE reads each user's items in time order, so it needs timestamps and a split that keeps
that order: under `article` and `temporal` it is evaluated on the temporal split
(held-out users, first 80 % of their time-ordered positives folded in, the last 20 %
predicted), which is also how the article evaluates it ("under its own temporal
protocol"). Under `article` its row is labelled `article, temporal split`; its figures
are not comparable with the other rows of that table, which use a random per-user
holdout. On ML-1M copies with timestamps for part of the users only, the temporal split
uses the timestamped users (`load_movielens(..., require_timestamps=True)`), passed as
`timestamped`.
"""

import dataclasses
import json
import logging
import os
import time

import keras
import numpy as np

from keras_aerec.data.splits import (
    rating_holdout,
    strong_generalization,
    temporal,
    weak_generalization,
)
from keras_aerec.experiments.recipes import MODELS, Recipe
from keras_aerec.experiments.report import source_blobs
from keras_aerec.experiments.training import (
    evaluate_model,
    fit_model,
    metric_kind,
    ranking_metrics,
)

logger = logging.getLogger("keras_aerec")

PROTOCOLS = ("article", "liang", "recbole", "temporal")
ALL_KINDS = ("rating", "ranking", "sequence")
TEMPORAL_SPLIT_LABEL = "temporal split"


@dataclasses.dataclass
class Protocol:
    """How a protocol prepares data and what it reports.

    Attributes:
        name: protocol name.
        description: one line for reports.
        ranking_ks: cut-offs reported on the test part.
        select_on: validation metric that picks the epoch (ranking models).
        recall_normalization: `"min"` (Liang et al.) or `"relevant"` (RecBole).
        kinds: the kinds of model (`Recipe.kind`) the protocol evaluates.
        threshold: ratings above it are the top-N models' positives; None keeps the
            protocol's MovieLens rule (> 3, or >= 3 under `recbole`). Own data: 0.0 for
            implicit feedback (every interaction a positive).
    """

    name: str
    description: str
    ranking_ks: tuple
    select_on: str
    recall_normalization: str = "min"
    kinds: tuple = ALL_KINDS
    threshold: float | None = None

    @property
    def needs_timestamps(self) -> bool:
        """Whether every ranking model's split is ordered by time."""
        return self.name == "temporal"

    def split_source(self, kind: str) -> str:
        """Which split a kind of model uses: models with the same source share it."""
        if kind == "rating":
            return "rating"
        if kind == "sequence" or self.needs_timestamps:
            return "temporal"
        return "ranking"

    def split(self, kind: str, interactions, seed):
        """The split a kind of model trains and is evaluated on."""
        source = self.split_source(kind)
        if source == "rating":
            return self.rating_split(interactions, seed)
        if source == "temporal":
            return temporal_split(interactions, seed, self.positives_above(3.0))
        return self.ranking_split(interactions, seed)

    def positives_above(self, movielens_threshold: float) -> float:
        return movielens_threshold if self.threshold is None else self.threshold

    def ranking_split(self, interactions, seed):
        if self.name == "article":
            # The article trains on 80 % and has no validation part: fixed epoch budgets.
            positives = interactions.to_implicit(self.positives_above(3.0))
            return weak_generalization(positives, test=0.2, seed=seed)
        if self.name == "liang":
            positives = interactions.to_implicit(self.positives_above(3.0))
            positives = positives.filter_min_interactions(users=5)
            heldout = _heldout_users(positives.num_users)
            return strong_generalization(positives, num_heldout_users=heldout, seed=seed)
        if self.name == "recbole":
            positives = interactions.to_implicit(self.positives_above(2.0)).k_core(10)
            return weak_generalization(positives, test=0.1, validation=0.1, seed=seed)
        if self.name == "temporal":
            return temporal_split(interactions, seed, self.positives_above(3.0))
        raise ValueError(
            f"`protocol` should be one of {PROTOCOLS}. Received: protocol={self.name!r}"
        )

    def rating_split(self, interactions, seed):
        return rating_holdout(interactions, test=0.1, validation=0.1, seed=seed)

    def evaluate(self, model, split, kind: str) -> dict:
        """The test metrics this protocol reports for a model of `kind` trained on `split`."""
        if self.name == "recbole" and metric_kind(kind) == "ranking":
            # RecBole's model input at test time is the training history only; its ranking
            # still excludes the training and validation items (the test part's fold-in).
            return ranking_metrics(
                _scores_from_training(model, split.train),
                split.test,
                kind,
                self.ranking_ks,
                self.recall_normalization,
            )
        return evaluate_model(
            model, split, kind, ks=self.ranking_ks, recall_normalization=self.recall_normalization
        )


def _scores_from_training(model, train):
    """A score function reading each user's training row instead of the given fold-in."""

    def score(fold_in, users=None):
        if users is None:
            raise ValueError(
                "Scoring from the training rows needs the users' training rows "
                "(`HeldOutPart.train_rows`, weak generalization). Received: users=None"
            )
        return model.score(train[users], users=users)

    return score


def temporal_split(interactions, seed, threshold=3.0):
    """Sachdeva et al.'s split: ratings > 3, users with >= 5, held-out users in time order.

    A tenth of the users (at most 600) are validation users and as many are test users;
    each held-out user's positives are sorted by time, the first 80 % folded in and the
    last 20 % predicted.
    """
    if interactions.timestamps is None:
        raise ValueError(_no_timestamps_message(interactions))
    positives = interactions.to_implicit(threshold).filter_min_interactions(users=5)
    heldout = _heldout_users(positives.num_users)
    return temporal(positives, num_heldout_users=heldout, fold_in=0.8, seed=seed)


def _no_timestamps_message(interactions, what: str = "The temporal split") -> str:
    name = getattr(interactions, "name", None) or "the data"
    return (
        f"{what} needs interactions with timestamps; {name} has none. Load "
        "them with timestamps, e.g. load_movielens(..., require_timestamps=True)."
    )


_PROTOCOLS = {
    "article": Protocol(
        "article",
        "per-user random 80/20 holdout of ratings > 3, fixed epoch budgets; RMSE on a "
        "random 80/10/10 ratings split (train / validation for early stopping / test) for the rating models; "
        "SVAE on the temporal split of the timestamped users (the article's own protocol "
        "for it)",
        ranking_ks=(10, 100),
        select_on="val_ndcg@100",
    ),
    "liang": Protocol(
        "liang",
        "strong generalization (Liang et al. 2018): ratings > 3, users with >= 5, "
        "held-out validation and test users, random 80 % fold-in / 20 % evaluated",
        ranking_ks=(20, 50, 100),
        select_on="val_ndcg@100",
        kinds=("rating", "ranking"),
    ),
    "recbole": Protocol(
        "recbole",
        "RecBole ML-1M: ratings >= 3, 10-core, random per-user 8:1:1, full ranking, "
        "selected on validation NDCG@10, Recall = hits / |relevant|; test users scored "
        "from their training interactions (as RecBole does), training and validation "
        "items excluded from the ranking",
        ranking_ks=(10,),
        select_on="val_ndcg@10",
        recall_normalization="relevant",
        kinds=("rating", "ranking"),
    ),
    "temporal": Protocol(
        "temporal",
        "temporal (Sachdeva et al. 2019): ratings > 3, users with >= 5, held-out "
        "validation and test users, first 80 % of each one's time-ordered positives "
        "folded in, the last 20 % evaluated; selected on validation NDCG@100",
        ranking_ks=(10, 100),
        select_on="val_ndcg@100",
        kinds=("ranking", "sequence"),
    ),
}


def _heldout_users(num_users: int) -> int:
    """600 of ML-1M's 6,040 users as in the model issue; a tenth of smaller datasets."""
    return int(min(600, max(1, num_users // 10)))


def get_protocol(name: str) -> Protocol:
    if isinstance(name, Protocol):  # e.g. one with an own-data `threshold`
        return name
    if name not in _PROTOCOLS:
        raise ValueError(
            f"`protocol` should be one of {', '.join(PROTOCOLS)}. Received: protocol={name!r}"
        )
    return _PROTOCOLS[name]


def needs_timestamped_data(protocol: str, models=None) -> bool:
    """Whether a benchmark of `models` (default: all) under `protocol` reads timestamps."""
    spec = get_protocol(protocol)
    names = list(models) if models else list(MODELS)
    kinds = {MODELS[name].kind for name in names if name in MODELS}
    return spec.needs_timestamps or ("sequence" in kinds and "sequence" in spec.kinds)


@dataclasses.dataclass
class ModelResult:
    """One trained and evaluated model and seed: a row of the article's table.

    Attributes:
        best_epoch: the epoch whose weights were evaluated (chosen on validation, or the
            last one without a validation part; 0 for closed-form models).
        epochs_run: epochs trained (early stopping may end a run before its budget).
        seconds: training time (`fit`), without the test evaluation.
        seed: seed of the split, the initialisation and the batch order.
        load: the machine's 1-minute load average when the model finished.
        recipe: the recipe's `fingerprint` (what the figure goes stale with).
    """

    model: str
    kind: str
    protocol: str
    metrics: dict
    best_epoch: int
    epochs_run: int
    seconds: float
    history: dict
    hyperparameters: dict
    split: str
    seed: int = 0
    load: float | None = None
    recipe: dict | None = None

    @property
    def epochs(self) -> int:
        """The evaluated epoch (`best_epoch`), under the name callers used before."""
        return self.best_epoch

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
    timestamped=None,
    seeds=None,
    resume_dir: str | None = None,
) -> list[ModelResult]:
    """Trains and evaluates `models` on `interactions` under `protocol`.

    Args:
        interactions: an `Interactions` with ratings (1-5 for MovieLens).
        protocol: one of `PROTOCOLS`.
        models: names from `MODELS` (default: all those the protocol evaluates; SVAE
            only when timestamps are available).
        seed: seed of the split, the model initialisation and the batch order.
        epochs: overrides every model's epoch budget.
        quick: the demo's short schedule (few epochs, small layers).
        verbose: Keras `fit` verbosity.
        timestamped: an `Interactions` with timestamps for the temporal split (SVAE, and
            every model under `temporal`); default: `interactions` when it has
            timestamps. For ML-1M copies with timestamps for part of the users only:
            `load_movielens("1m", data_dir, require_timestamps=True)`.
        seeds: several seeds (each one redraws the split, the initialisation and the
            batch order; every model sees the same split for a given seed); overrides
            `seed`.
        resume_dir: a folder where each finished model and seed is stored as it finishes;
            a later call with the same arguments reads those back instead of retraining
            them (and logs that it did).

    Returns:
        One `ModelResult` per model and seed, models in the order given, seeds within.
    """
    spec = get_protocol(protocol)
    seeds = [seed] if seeds is None else [_check_seed(value) for value in seeds]
    if not seeds:
        raise ValueError("`seeds` should hold at least one integer. Received: seeds=[]")
    if timestamped is None and interactions.timestamps is not None:
        timestamped = interactions
    if timestamped is not None and timestamped.timestamps is None:
        raise ValueError(
            "`timestamped` should be interactions with timestamps. Received: "
            f"{timestamped.name or 'interactions'} without timestamps"
        )
    if spec.needs_timestamps and timestamped is None:
        raise ValueError(_no_timestamps_message(interactions, "The 'temporal' protocol"))
    names = _model_names(spec, models, has_timestamps=timestamped is not None)
    splits = {}
    results = []
    for name in names:
        recipe = MODELS[name].for_protocol(spec.name)
        source = spec.split_source(recipe.kind)
        data = timestamped if source == "temporal" else interactions
        for run_seed in seeds:
            key = _run_key(recipe, spec, data, run_seed, epochs, quick)
            stored = _stored_result(resume_dir, key)
            if stored is not None:
                logger.info(
                    "%s, seed %d: finished in an earlier run, not retrained (%s)",
                    name,
                    run_seed,
                    _format_metrics(stored.metrics),
                )
                results.append(stored)
                continue
            if (source, run_seed) not in splits:
                start = time.perf_counter()
                splits[source, run_seed] = spec.split(recipe.kind, data, run_seed)
                logger.info(
                    "%s split (seed %d) in %.2f s: %s",
                    source,
                    run_seed,
                    time.perf_counter() - start,
                    splits[source, run_seed].summary(),
                )
            keras.utils.set_random_seed(run_seed)
            _, result = train_and_evaluate(
                recipe, splits[source, run_seed], spec, epochs, quick, verbose, seed=run_seed
            )
            if source == "temporal" and not spec.needs_timestamps:
                result.protocol = f"{spec.name}, {TEMPORAL_SPLIT_LABEL}"
                result.split = (
                    f"{TEMPORAL_SPLIT_LABEL} of the {timestamped.num_users} timestamped users "
                    f"of {timestamped.name or 'the data'}: {result.split}"
                )
            logger.info(
                "%s, seed %d: %s in %.1f s",
                name,
                run_seed,
                _format_metrics(result.metrics),
                result.seconds,
            )
            _store_result(resume_dir, key, result)
            results.append(result)
    return results


def _check_seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"`seeds` should be non-negative integers. Received: {value!r}")
    return int(value)


def _run_key(recipe: Recipe, spec: Protocol, data, seed: int, epochs, quick) -> dict:
    """What identifies one model and seed's run: a stored result is reused only if equal.

    The backend, the dtype policy and the blob ids of the model's and the runner's source files are part of
    it, so a rerun after a code change (or under another backend) retrains instead of
    reporting figures of code that no longer exists.
    """
    return {
        "model": recipe.name,
        "protocol": spec.name,
        "seed": seed,
        "data": data.name,
        "shape": [data.num_users, data.num_items],
        "interactions": data.num_interactions,
        "epochs": epochs,
        "quick": quick,
        "recipe": recipe.fingerprint(quick),
        "backend": keras.backend.backend(),
        "dtype_policy": keras.config.dtype_policy().name,
        "code": source_blobs(recipe.name),
    }


def _result_path(resume_dir: str, key: dict) -> str:
    return os.path.join(resume_dir, "finished", f"{key['model']}-seed{key['seed']}.json")


def _stored_result(resume_dir, key: dict) -> ModelResult | None:
    if resume_dir is None:
        return None
    path = _result_path(resume_dir, key)
    try:
        with open(path) as handle:
            stored = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("ignoring the unreadable stored result %s: %s", path, error)
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        logger.warning(
            "%s, seed %d: the stored result %s was made with other settings or code; retraining",
            key["model"],
            key["seed"],
            path,
        )
        return None
    try:
        return ModelResult(**stored["result"])
    except (KeyError, TypeError) as error:
        logger.warning("ignoring the unreadable stored result %s: %s", path, error)
        return None


def _store_result(resume_dir, key: dict, result: ModelResult) -> None:
    """Writes the result atomically: a kill leaves the old file or the new one, whole."""
    if resume_dir is None:
        return
    path = _result_path(resume_dir, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        json.dump({"key": key, "result": result.to_dict()}, handle, indent=1, default=str)
    os.replace(temporary, path)


def _model_names(spec: Protocol, models, has_timestamps: bool) -> list[str]:
    if models:
        names = list(models)
        unknown = [name for name in names if name not in MODELS]
        if unknown:
            raise ValueError(
                f"`models` should be among {', '.join(MODELS)}. "
                f"Received unknown: {', '.join(unknown)}"
            )
        unsupported = [name for name in names if MODELS[name].kind not in spec.kinds]
        if unsupported:
            supported = [name for name in MODELS if MODELS[name].kind in spec.kinds]
            raise ValueError(
                f"`models` should be among those the {spec.name!r} protocol evaluates "
                f"({', '.join(supported)}). Received: {', '.join(unsupported)}"
            )
        sequence = [name for name in names if MODELS[name].kind == "sequence"]
        if sequence and not has_timestamps:
            raise ValueError(
                f"{', '.join(sequence)} reads time-ordered sequences and needs interactions "
                "with timestamps; the data has none. Load them with timestamps, e.g. "
                "load_movielens(..., require_timestamps=True)."
            )
        return names
    names = [name for name in MODELS if MODELS[name].kind in spec.kinds]
    skipped = [name for name in names if MODELS[name].kind == "sequence" and not has_timestamps]
    if skipped:
        logger.warning("no timestamps in the data: skipping %s", ", ".join(skipped))
    return [name for name in names if name not in skipped]


def _format_metrics(metrics: dict) -> str:
    return ", ".join(f"{key}={value:.4f}" for key, value in metrics.items())


def _epochs(recipe: Recipe, epochs, quick, has_validation) -> int:
    if epochs is not None:
        return int(epochs)
    return recipe.epoch_budget(quick, has_validation)


def _history(history) -> dict:
    return {key: [float(value) for value in values] for key, values in history.history.items()}


def train_and_evaluate(
    recipe: Recipe,
    split,
    spec: Protocol,
    epochs=None,
    quick=False,
    verbose="auto",
    seed=0,
    **fit_options,
):
    """Builds the recipe's model, fits it on `split` and evaluates it under `spec`.

    This is one row of `run_benchmark`; `keras-aerec train` calls it too, so that a saved
    model is trained exactly as the benchmark trains it (the recipe's schedule under
    `spec`, `Recipe.for_protocol`). `seed` sets the batch order
    (the caller seeds the initialisation with `keras.utils.set_random_seed`).
    `fit_options` (`callbacks`, `backup_dir`) go to `fit_model`; its callbacks run after
    the recipe's own.

    Returns:
        `(model, result)`: the fitted model (best validation epoch restored when the
        protocol has a validation part) and its `ModelResult`.
    """
    recipe = recipe.for_protocol(spec.name)
    hyperparameters = recipe.hyperparameters(quick)
    model = recipe.build(split, hyperparameters)
    evaluated = metric_kind(recipe.kind)
    if evaluated == "rating":
        monitor, mode = "val_rmse", "min"
    else:
        monitor, mode = spec.select_on, "max"
    has_validation = split.validation is not None
    callbacks = []
    extra_callbacks = list(fit_options.pop("callbacks", None) or [])
    if recipe.lr_patience and has_validation and not quick:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode=mode, factor=0.5, patience=recipe.lr_patience, min_lr=1e-6
            )
        )
    start = time.perf_counter()
    if recipe.closed_form:
        model.fit(split.train)
        curves = {}
    else:
        train = split.train_timestamps if recipe.kind == "sequence" else split.train
        history = fit_model(
            model,
            recipe.kind,
            train,
            split.validation,
            epochs=_epochs(recipe, epochs, quick, has_validation),
            batch_size=recipe.training_batch_size(quick),
            monitor=monitor,
            mode=mode,
            patience=recipe.patience,
            ks=(int(monitor.split("@")[1]),) if "@" in monitor else (),
            recall_normalization=spec.recall_normalization,
            seed=seed,
            user_index=recipe.user_index,
            callbacks=callbacks + extra_callbacks,
            verbose=verbose,
            **fit_options,
        )
        curves = _history(history)
    seconds = time.perf_counter() - start
    metrics = spec.evaluate(model, split, recipe.kind)
    return model, ModelResult(
        model=recipe.name,
        kind=evaluated,
        protocol=spec.name,
        metrics=metrics,
        best_epoch=0 if recipe.closed_form else _best_epoch(curves, monitor, mode),
        epochs_run=len(curves.get("loss", [])),
        seconds=seconds,
        history=curves,
        hyperparameters=hyperparameters,
        split=split.summary(),
        seed=seed,
        load=round(os.getloadavg()[0], 2),
        recipe=recipe.fingerprint(quick),
    )


def _best_epoch(curves: dict, monitor: str, mode: str) -> int:
    values = curves.get(monitor)
    if not values:
        return len(curves.get("loss", []))
    pick = np.argmin if mode == "min" else np.argmax
    return int(pick(values)) + 1
