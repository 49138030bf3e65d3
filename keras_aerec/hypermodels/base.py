"""What every keras_aerec HyperModel shares: objectives, training with evaluation, defaults.

A search is selected on an evaluation protocol, not on the training loss: `fit()` adds a
callback that evaluates the validation part at the end of every epoch and writes e.g.
`val_ndcg@100` or `val_rmse` into the logs, where the tuner's `Objective` reads it.
"""

import inspect
import numbers

import keras

try:
    import keras_tuner
except ImportError as error:  # pragma: no cover - exercised by a test with the module hidden
    raise ImportError(
        "keras_aerec.hypermodels needs KerasTuner (and TensorBoard on TensorFlow): "
        'pip install "keras-aerec[tuning]"'
    ) from error

from keras_aerec.experiments.recipes import MODELS
from keras_aerec.experiments.training import (
    fit_model,
    metric_kind,
    ranking_metrics,
)
from keras_aerec.validation import check_positive_int

# Whether a larger value of each protocol metric is better.
METRIC_DIRECTIONS = {
    "rmse": "min",
    "mae": "min",
    "precision": "max",
    "recall": "max",
    "ndcg": "max",
}
RATING_METRICS = ("rmse", "mae")
RANKING_METRICS = ("precision", "recall", "ndcg")
DEFAULT_OBJECTIVES = {"rating": "val_rmse", "ranking": "val_ndcg@100"}
VALIDATION_PREFIX = "val_"
DEFAULT_RANKING_KS = (20, 50, 100)


def get_objective(objective, kind: str, direction: str | None = None):
    """Checks an objective against what the `kind` of evaluation writes into the logs.

    Args:
        objective: a validation metric name (`"val_ndcg@100"`, `"val_rmse"`), a
            `(name, direction)` pair, a `keras_tuner.Objective`, or None for the
            default of `kind` (`val_ndcg@100` for ranking, `val_rmse` for rating).
        kind: `"ranking"` (top-N metrics on a held-out part) or `"rating"` (RMSE/MAE).
        direction: `"min"`, `"max"` or None (inferred from the metric). A direction
            that contradicts the metric (maximising RMSE) is an error.

    Returns:
        A `keras_tuner.Objective`.

    Example:

    >>> get_objective("val_recall@20", "ranking").direction
    'max'
    """
    if kind not in DEFAULT_OBJECTIVES:
        raise ValueError(f"`kind` should be 'ranking' or 'rating'. Received: kind={kind!r}")
    if objective is None:
        objective = DEFAULT_OBJECTIVES[kind]
    if isinstance(objective, keras_tuner.Objective):
        name, given = objective.name, objective.direction
    elif isinstance(objective, tuple | list) and len(objective) == 2:
        name, given = objective
    elif isinstance(objective, str):
        name, given = objective, None
    else:
        raise ValueError(
            "`objective` should be a metric name such as 'val_ndcg@100', a (name, direction) "
            f"pair or a keras_tuner.Objective. Received: objective={objective!r}"
        )
    for value in (given, direction):
        if value is not None and value not in ("min", "max"):
            raise ValueError(f"`direction` should be 'min' or 'max'. Received: direction={value!r}")
    if given is not None and direction is not None and given != direction:
        raise ValueError(
            f"`direction` contradicts the objective's own direction {given!r}. "
            f"Received: direction={direction!r}"
        )
    direction = direction or given
    metric = _metric_of(name, kind)
    expected = METRIC_DIRECTIONS[metric]
    if direction is not None and direction != expected:
        better = "lower" if expected == "min" else "higher"
        raise ValueError(
            f"`direction` of {name!r} should be {expected!r} ({better} is better). "
            f"Received: direction={direction!r}"
        )
    return keras_tuner.Objective(name, expected)


def _metric_of(name, kind: str) -> str:
    """The base metric (`ndcg`, `rmse`, ...) of a validation metric name, checked."""
    produced = (
        "val_rmse, val_mae"
        if kind == "rating"
        else "val_precision@k, val_recall@k, val_ndcg@k (k a positive integer)"
    )
    if not isinstance(name, str) or not name.startswith(VALIDATION_PREFIX):
        hint = f" (did you mean 'val_{name}'?)" if isinstance(name, str) else ""
        raise ValueError(
            "`objective` should name a metric of the validation part, one of "
            f"{produced}{hint}. Received: objective={name!r}"
        )
    metric, at, cutoff = name[len(VALIDATION_PREFIX) :].partition("@")
    known = RATING_METRICS if kind == "rating" else RANKING_METRICS
    valid_cutoff = cutoff.isdigit() and int(cutoff) > 0
    if metric not in known or (kind == "rating") == bool(at) or (at and not valid_cutoff):
        other = "ranking" if kind == "rating" else "rating"
        reason = (
            f" (a {other} metric)" if metric in METRIC_DIRECTIONS and metric not in known else ""
        )
        raise ValueError(
            f"`objective` should be a metric the {kind} evaluation writes: {produced}. "
            f"Received: objective={name!r}{reason}"
        )
    return metric


def objective_cutoff(objective) -> int | None:
    """The k of a ranking objective (`val_ndcg@100` -> 100), None for rating ones."""
    _, _, cutoff = objective.name.partition("@")
    return int(cutoff) if cutoff else None


def constructor_default(model_class, argument: str):
    """The default of a model constructor argument: the paper's value, in one place."""
    return inspect.signature(model_class.__init__).parameters[argument].default


def encode_widths(widths) -> str:
    """Layer widths as a hyperparameter value: `(512, 512, 1024)` -> `"512,512,1024"`."""
    return ",".join(str(int(width)) for width in widths)


def decode_widths(value: str) -> tuple[int, ...]:
    """Inverse of `encode_widths` (`""` is no hidden layer)."""
    return tuple(int(width) for width in value.split(",") if width)


def choices_with(values, default) -> list:
    """Hyperparameter choices that surely contain the default (numbers sorted ascending)."""
    values = list(dict.fromkeys([*values, default]))
    if all(isinstance(value, numbers.Number) and not isinstance(value, bool) for value in values):
        return sorted(values)
    return values


class AutoencoderHyperModel(keras_tuner.HyperModel):
    """Base of the keras_aerec HyperModels: a search space over one model family.

    Subclasses set `model_class` and `recipe_name` (the model's name in
    `keras_aerec.experiments.MODELS`, whose `kind`, epoch budget, batch size, patience
    and `user_index` are reused) and implement `build_model(hp)` (the constructor call,
    with hyperparameters named like the constructor arguments and defaulting to the
    paper's values); `build(hp)` then compiles it with Adam (`learning_rate`, default
    1e-3). Training knobs live in `fit_hyperparameters(hp)` (`batch_size`, ...), declared
    up front so that the first trial of a search can run the defaults.

    `fit(hp, model, train, validation)` trains on batches of `train` and evaluates
    `validation` at the end of every epoch (`keras_aerec.experiments.training.fit_model`,
    shared with the benchmark runner), so the logs hold `val_ndcg@100`, `val_rmse`, ...;
    it stops early on the objective.

    Args:
        objective: the validation metric to select on (see `get_objective`); default
            `val_ndcg@100` for ranking models, `val_rmse` for rating models.
        epochs: epoch budget of a trial (default: the recipe's); the tuner's `epochs`
            argument (Hyperband's brackets) overrides it.
        patience: early-stopping patience in epochs (default: the recipe's).
        ks: cut-offs evaluated on the validation part (the objective's is added).
        recall_normalization: `"min"` (Liang et al.) or `"relevant"` (RecBole).
        seed: seed of the initialisation, dropout noise and batch order of every trial,
            so a trial re-run after an interruption trains the same way.
        name: optional name of the HyperModel.
        tunable: whether the hyperparameters it declares are tuned (KerasTuner's flag).
    """

    model_class = None
    recipe_name = None

    def __init__(
        self,
        objective=None,
        epochs: int | None = None,
        patience: int | None = None,
        ks=DEFAULT_RANKING_KS,
        recall_normalization: str = "min",
        seed: int | None = 0,
        name: str | None = None,
        tunable: bool = True,
    ):
        super().__init__(name=name, tunable=tunable)
        recipe = self.recipe
        self.objective = get_objective(objective, metric_kind(recipe.kind))
        self.epochs = recipe.epochs if epochs is None else check_positive_int(epochs, "epochs")
        self.patience = (
            recipe.patience if patience is None else check_positive_int(patience, "patience")
        )
        cutoff = objective_cutoff(self.objective)
        self.ks = tuple(
            sorted({*(check_positive_int(k, "ks") for k in ks), *([cutoff] if cutoff else [])})
        )
        self.recall_normalization = recall_normalization
        self.seed = seed

    @property
    def recipe(self):
        return MODELS[self.recipe_name]

    @property
    def kind(self) -> str:
        """How the model trains: `"rating"`, `"ranking"` or `"sequence"` (SVAE)."""
        return self.recipe.kind

    @property
    def metric_kind(self) -> str:
        """What the model is evaluated on: `"rating"` or `"ranking"`."""
        return metric_kind(self.kind)

    @classmethod
    def from_split(cls, split, **options):
        """The HyperModel of a protocol split: its data-dependent arguments taken from it.

        Args:
            split: a `RankingSplit` or `RatingSplit`.
            **options: the other arguments (`objective`, `epochs`, `variant`, ...).
        """
        num_users, num_items = split.train.shape
        available = {
            "num_users": num_users,
            "num_items": num_items,
            "user_ids": getattr(split, "user_ids", None),
            "item_ids": split.item_ids,
        }
        accepted = inspect.signature(cls.__init__).parameters
        return cls(**{key: value for key, value in available.items() if key in accepted}, **options)

    # === Search space ===

    def default(self, argument: str):
        return constructor_default(self.model_class, argument)

    def build_model(self, hp) -> keras.Model:
        raise NotImplementedError

    def build(self, hp):
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        model = self.build_model(hp)
        learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate))
        return model

    def fit_hyperparameters(self, hp) -> dict:
        """Declares the training knobs and returns their values for this trial."""
        default = self.recipe.batch_size
        choices = choices_with((default // 4, default // 2, default * 2), default)
        return {"batch_size": hp.Choice("batch_size", choices, default=default)}

    def declare_hyperparameters(self, hp):
        self.fit_hyperparameters(hp)

    # === Training ===

    def cutoffs(self, num_items: int) -> tuple[int, ...]:
        """The evaluated cut-offs that a catalogue of `num_items` allows (the objective's)."""
        cutoff = objective_cutoff(self.objective)
        if cutoff is not None and cutoff > num_items:
            raise ValueError(
                f"`objective` {self.objective.name!r} needs at least {cutoff} items; the "
                f"split's training catalogue has {num_items}. Received: "
                f"objective={self.objective.name!r}"
            )
        return tuple(k for k in self.ks if k <= num_items)

    def fit(self, hp, model, train, validation, epochs=None, callbacks=None, verbose=0, **kwargs):
        """Trains `model` on `train`, evaluating `validation` every epoch.

        Args:
            hp: the trial's `HyperParameters`.
            model: the model `build(hp)` returned.
            train: users x items CSR training matrix: ratings (rating models),
                implicit feedback (ranking models) or interaction timestamps (sequence
                models, `RankingSplit.train_timestamps`).
            validation: a `HeldOutPart` (ranking and sequence models; for the latter
                with `fold_in_timestamps`) or the users x items CSR validation ratings
                (rating models).
            epochs: epoch budget (default: the HyperModel's `epochs`).
            callbacks: the tuner's callbacks; they run after the evaluation.
            verbose: Keras `fit` verbosity.
            **kwargs: forwarded to `model.fit` (`initial_epoch` from Hyperband, ...).

        Returns:
            The Keras `History`, whose logs hold the objective.
        """
        knobs = self.fit_hyperparameters(hp)
        _check_validation(validation)
        return fit_model(
            model,
            self.kind,
            train,
            validation,
            epochs=self.epochs if epochs is None else epochs,
            batch_size=knobs["batch_size"],
            monitor=self.objective.name,
            mode=self.objective.direction,
            patience=self.patience,
            ks=() if self.metric_kind == "rating" else self.cutoffs(validation.fold_in.shape[1]),
            recall_normalization=self.recall_normalization,
            seed=self.seed,
            user_index=self.recipe.user_index,
            callbacks=callbacks,
            verbose=verbose,
            **kwargs,
        )


class ItemSpaceMixin:
    """HyperModel mixin for models whose only data-dependent arguments are the items.

    Args:
        num_items: number of items.
        item_ids: optional original item ids (one per item).
        **options: `objective`, `epochs`, `patience`, `seed`, ... (see
            `AutoencoderHyperModel`).
    """

    def __init__(self, num_items, item_ids=None, **options):
        self.num_items = num_items
        self.item_ids = item_ids
        super().__init__(**options)


def set_rating_space(hypermodel, num_users, num_items, variant, user_ids, item_ids) -> None:
    """Stores the data-dependent arguments of the rating models' HyperModels (checked)."""
    if variant not in ("item", "user"):
        raise ValueError(f"`variant` should be 'item' or 'user'. Received: variant={variant!r}")
    hypermodel.num_users = num_users
    hypermodel.num_items = num_items
    hypermodel.variant = variant
    hypermodel.user_ids = user_ids
    hypermodel.item_ids = item_ids


class ClosedFormHyperModel(AutoencoderHyperModel):
    """Base of models fitted in closed form (EASE): no epochs, batches or optimizer.

    `fit` computes the model from `train`, evaluates `validation` once and hands the
    metrics to the tuner's callbacks as a single epoch, so trials are recorded and
    checkpointed as for the trained models.
    """

    def build(self, hp):
        return self.build_model(hp)

    def fit_hyperparameters(self, hp) -> dict:
        return {}

    def fit(self, hp, model, train, validation, callbacks=None, **kwargs):
        _check_validation(validation)
        model.fit(train)
        logs = ranking_metrics(
            model,
            validation,
            self.kind,
            ks=self.cutoffs(validation.fold_in.shape[1]),
            recall_normalization=self.recall_normalization,
            prefix=VALIDATION_PREFIX,
        )
        callbacks = list(callbacks or [])
        for callback in callbacks:
            callback.set_model(model)
            callback.on_train_begin()
            callback.on_epoch_begin(0)
        for callback in callbacks:
            callback.on_epoch_end(0, logs)
        for callback in callbacks:
            callback.on_train_end(logs)
        return logs


def _check_validation(validation) -> None:
    if validation is None:
        raise ValueError(
            "`validation` should be the protocol's validation part (the objective is "
            "measured on it). Received: None"
        )
