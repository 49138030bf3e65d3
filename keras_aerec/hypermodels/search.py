"""`run_search`: a resumable KerasTuner search of one model under an evaluation protocol.

The protocol (`keras_aerec.experiments.runner`) prepares the split; the model's HyperModel
trains each trial on the training part and is scored on the validation part; the best
trial's and the defaults' trials are then evaluated on the test part. The search state
lives in `directory`: run the same call again after an interruption (even `kill -9`) and
KerasTuner reloads it, re-runs only the trial that was interrupted and continues.
"""

import importlib.util
import json
import logging
import math
import os
import shutil
import time
import warnings

import keras
import keras_tuner

from keras_aerec.experiments.recipes import MODELS
from keras_aerec.experiments.runner import PROTOCOLS, get_protocol
from keras_aerec.experiments.training import evaluate_model, metric_kind
from keras_aerec.hypermodels.auto_rec import AutoRecHyperModel
from keras_aerec.hypermodels.base import get_objective
from keras_aerec.hypermodels.cdae import CDAEHyperModel
from keras_aerec.hypermodels.deep_rec import DeepRecHyperModel
from keras_aerec.hypermodels.ease import EASEHyperModel
from keras_aerec.hypermodels.mult_dae import MultDAEHyperModel
from keras_aerec.hypermodels.mult_vae import MultVAEHyperModel
from keras_aerec.hypermodels.svae import SVAEHyperModel

logger = logging.getLogger("keras_aerec")
TrialStatus = keras_tuner.engine.trial.TrialStatus

# Names are those of the benchmark (`keras_aerec.experiments.MODELS`).
HYPERMODELS = {
    "i-autorec": (AutoRecHyperModel, {"variant": "item"}),
    "u-autorec": (AutoRecHyperModel, {"variant": "user"}),
    "deeprec": (DeepRecHyperModel, {}),
    "cdae": (CDAEHyperModel, {}),
    "multvae": (MultVAEHyperModel, {}),
    "multdae": (MultDAEHyperModel, {}),
    "svae": (SVAEHyperModel, {}),
    "ease": (EASEHyperModel, {}),
}
TUNERS = ("random", "bayesian", "hyperband")
SETTINGS_FILE = "search.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MARKDOWN = "summary.md"
CURVES_FILE = "curves.json"
TEST_METRICS_FILE = "test_metrics.json"


def write_json_atomically(path: str, state) -> None:
    """Writes JSON so that a reader (a resumed search) sees the old or the new file, whole.

    KerasTuner truncates and rewrites its state files in place; a `kill -9` in between
    leaves an empty `oracle.json` or `trial.json` that makes the search impossible to
    reload. Writing a temporary file and renaming it over the old one is atomic on POSIX.
    """
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(state, handle)
    os.replace(temporary, path)


class _Resumable:
    """Oracle mixin: state written atomically, and a finished trial never re-run.

    On reload, KerasTuner re-queues every trial `oracle.json` lists as ongoing. A process
    killed after a trial's `trial.json` was marked COMPLETED but before `oracle.json` was
    rewritten would re-run that finished trial; it is dropped from the queue instead. A
    process killed right after a new trial's `trial.json` was written, before
    `oracle.json` listed it, would lose that trial; it is queued again.
    """

    def save(self):
        write_json_atomically(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        write_json_atomically(path, trial.get_state())

    def reload(self):
        super().reload()
        queue = [
            trial_id
            for trial_id in self._retry_queue
            if self.trials[trial_id].status != TrialStatus.COMPLETED
        ]
        # A kill between writing a new trial's `trial.json` (RUNNING) and the next
        # `oracle.json` leaves a trial KerasTuner does not list as ongoing: re-run it too.
        queue += [
            trial_id
            for trial_id, trial in self.trials.items()
            if trial.status == TrialStatus.RUNNING and trial_id not in queue
        ]
        self._retry_queue = queue


class _DefaultsFirst(_Resumable):
    """Oracle mixin: the first trial runs every hyperparameter's default.

    The defaults are the papers' values, so the search always measures them on the same
    split and budget as the candidates, and the summary can compare the two.
    """

    def populate_space(self, trial_id):
        if not self.trials:
            return {"status": TrialStatus.RUNNING, "values": default_values(self.hyperparameters)}
        return super().populate_space(trial_id)


class DefaultsFirstRandomSearchOracle(_DefaultsFirst, keras_tuner.oracles.RandomSearchOracle):
    """Random search whose first trial is the defaults."""


class DefaultsFirstBayesianOptimizationOracle(
    _DefaultsFirst, keras_tuner.oracles.BayesianOptimizationOracle
):
    """Bayesian optimisation whose first trial is the defaults."""


class ResumableHyperbandOracle(_Resumable, keras_tuner.oracles.HyperbandOracle):
    """Hyperband oracle with atomic state files."""


class _SearchTunerMixin:
    """Tuner mixin: resumable from the start, atomic state files, and learning curves.

    KerasTuner keeps only a trial's best epoch; `curves.json` in the trial's folder adds
    how many epochs it ran (early stopping) and how long it took.
    """

    def save(self):
        self.oracle.save()
        write_json_atomically(self._get_tuner_fname(), self.get_state())

    def on_search_begin(self):
        # KerasTuner writes `tuner0.json`, which marks a folder as resumable, only when
        # the first trial ends: a search killed before that would start over and
        # overwrite its trials. Writing it now makes every later restart a reload.
        super().on_search_begin()
        self.save()

    def run_trial(self, trial, *args, **kwargs):
        start = time.perf_counter()
        results = super().run_trial(trial, *args, **kwargs)
        first = results[0] if isinstance(results, list) and results else results
        if isinstance(first, keras.callbacks.History):
            curves = {
                key: [float(value) for value in values] for key, values in first.history.items()
            }
        else:  # closed form: one evaluation
            curves = {key: [float(value)] for key, value in (first or {}).items()}
        record = {"seconds": time.perf_counter() - start, "curves": curves}
        write_json_atomically(os.path.join(self.get_trial_dir(trial.trial_id), CURVES_FILE), record)
        return results


class SearchTuner(_SearchTunerMixin, keras_tuner.Tuner):
    """`keras_tuner.Tuner` with atomic state files that records learning curves."""


class HyperbandSearchTuner(_SearchTunerMixin, keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` with atomic state files that records learning curves."""

    def __init__(self, hypermodel, oracle, **kwargs):
        # keras_tuner.Hyperband builds its own oracle: skip to Tuner with ours.
        keras_tuner.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def check_search(model_name, tuner, max_trials, objective=None, direction=None, protocol=None):
    """Validates a search's arguments without touching data; returns the objective.

    Raises:
        ImportError: the bayesian tuner without scikit-learn.
        ValueError: unknown model, tuner or protocol, a protocol that does not evaluate
            the model (SVAE under `liang`), a `max_trials` that is not a positive
            integer, an objective the model's evaluation does not write, or a direction
            that contradicts the metric.
    """
    if model_name not in HYPERMODELS:
        raise ValueError(
            f"`model_name` should be one of {', '.join(HYPERMODELS)}. "
            f"Received: model_name={model_name!r}"
        )
    if tuner not in TUNERS:
        raise ValueError(f"`tuner` should be one of {', '.join(TUNERS)}. Received: tuner={tuner!r}")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(
            f"`max_trials` should be a positive integer. Received: max_trials={max_trials!r}"
        )
    if tuner == "bayesian" and importlib.util.find_spec("sklearn") is None:
        raise ImportError(
            "The bayesian tuner needs scikit-learn (KerasTuner's Gaussian process): "
            'pip install "keras-tuner[bayesian]"'
        )
    recipe = MODELS[model_name]
    if protocol is not None and recipe.kind not in get_protocol(protocol).kinds:
        supported = [name for name in PROTOCOLS if recipe.kind in get_protocol(name).kinds]
        raise ValueError(
            f"`protocol` should be one that evaluates {model_name} ({', '.join(supported)}). "
            f"Received: protocol={protocol!r}"
        )
    if recipe.closed_form and tuner == "hyperband":
        raise ValueError(
            f"`tuner` should be 'random' or 'bayesian' for {model_name}: it is fitted in "
            "closed form, without the epochs Hyperband allocates. Received: tuner='hyperband'"
        )
    return get_objective(objective, metric_kind(recipe.kind), direction)


def run_search(
    model_name: str,
    interactions,
    protocol: str = "liang",
    tuner: str = "random",
    max_trials: int = 10,
    directory: str = "tuning_runs",
    objective=None,
    direction: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    epochs: int | None = None,
    verbose: int | str = 0,
) -> dict:
    """Searches the hyperparameters of one model; writes `summary.json` and `summary.md`.

    The first trial (random and Bayesian tuners) runs the paper's defaults. Each trial
    trains for at most `epochs` epochs with early stopping on the objective, measured on
    the protocol's validation part. Afterwards the best trial and the defaults' trial are
    evaluated on the test part, from their best-epoch checkpoints.

    Args:
        model_name: a name of `HYPERMODELS` (`"multvae"`, `"i-autorec"`, `"svae"`, ...).
        interactions: an `Interactions` with ratings (the protocol derives the split).
        protocol: a protocol of `keras_aerec.experiments.PROTOCOLS` with a validation part
            for the model's kind (`"liang"`, `"recbole"` or `"temporal"` for ranking
            models; `"temporal"` or `"article"`, which both use the temporal split, for
            SVAE; any protocol but `"temporal"` for rating models, which split the
            ratings 80/10/10 into train / validation / test).
        tuner: `"random"`, `"bayesian"` or `"hyperband"`.
        max_trials: number of trials (a cap on Hyperband's). A resumed search may raise it.
        directory: folder of the search state and the summaries; one search per folder.
        objective: validation metric (`"val_ndcg@100"`, `"val_recall@20"`, `"val_rmse"`,
            a `(name, direction)` pair or a `keras_tuner.Objective`); default: the
            protocol's selection metric for ranking models, `val_rmse` for rating models.
        direction: `"min"` / `"max"`, or None to infer it from the metric.
        seed: seed of the split, the tuner and every trial's training.
        overwrite: start afresh instead of resuming what `directory` holds.
        epochs: epoch budget of a trial (default: the benchmark recipe's); Hyperband's
            `max_epochs`.
        verbose: KerasTuner / Keras verbosity (0: silent).

    Returns:
        The summary (also written as `summary.json`): settings, search space, every trial,
        and `best` / `defaults` with validation score and test metrics.

    Example:

    >>> from keras_aerec.data import synthetic
    >>> summary = run_search("ease", synthetic(num_users=300, num_items=100), max_trials=2,
    ...                      directory="/tmp/ease_search", overwrite=True)
    >>> sorted(summary["best"])
    ['best_epoch', 'hyperparameters', 'metrics', 'score', 'test', 'trial_id']
    """
    recipe = MODELS[model_name] if model_name in MODELS else None
    if objective is None and recipe is not None and metric_kind(recipe.kind) == "ranking":
        objective = get_protocol(protocol).select_on
    objective = check_search(model_name, tuner, max_trials, objective, direction, protocol)
    spec = get_protocol(protocol)
    settings = {
        "model": model_name,
        "protocol": spec.name,
        "tuner": tuner,
        "objective": {"name": objective.name, "direction": objective.direction},
        "seed": seed,
        "epochs": epochs,
        "data": {
            "name": getattr(interactions, "name", None),
            "num_users": int(interactions.num_users),
            "num_items": int(interactions.num_items),
            "num_interactions": int(interactions.num_interactions),
        },
    }

    start = time.perf_counter()
    split = spec.split(recipe.kind, interactions, seed)
    if split.validation is None:
        raise ValueError(
            f"`protocol` should have a validation part for {recipe.kind} models (the "
            f"objective is measured on it); {spec.name!r} has none: use 'liang', "
            f"'recbole' or 'temporal'. Received: protocol={spec.name!r}"
        )
    logger.info("%s split in %.1f s: %s", recipe.kind, time.perf_counter() - start, split.summary())
    hypermodel_class, options = HYPERMODELS[model_name]
    hypermodel = hypermodel_class.from_split(
        split,
        objective=objective,
        epochs=epochs,
        ks=spec.ranking_ks,
        recall_normalization=spec.recall_normalization,
        seed=seed,
        **options,
    )
    if hypermodel.metric_kind == "ranking":
        hypermodel.cutoffs(split.num_items)  # an objective beyond the catalogue fails here
    _claim_directory(directory, settings, overwrite)
    search = _make_tuner(
        tuner, hypermodel, objective, max_trials, directory, model_name, seed, overwrite
    )
    # Sequence models (SVAE) read the training interactions in time order.
    train = split.train_timestamps if recipe.kind == "sequence" else split.train
    search.search(train, split.validation, verbose=verbose)

    summary = _summarize(search, hypermodel, split, spec, settings, max_trials)
    _write_summary(directory, summary)
    return summary


def _make_tuner(name, hypermodel, objective, max_trials, directory, project, seed, overwrite):
    common = {
        "hypermodel": hypermodel,
        "directory": directory,
        "project_name": project,
        "overwrite": overwrite,
    }
    if name == "hyperband":
        oracle = ResumableHyperbandOracle(
            objective=objective, max_epochs=hypermodel.epochs, factor=3, seed=seed
        )
        oracle.max_trials = max_trials  # Hyperband sizes its brackets; this caps the total
        return HyperbandSearchTuner(oracle=oracle, **common)
    if name == "random":
        oracle = DefaultsFirstRandomSearchOracle(
            objective=objective, max_trials=max_trials, seed=seed
        )
    else:
        oracle = DefaultsFirstBayesianOptimizationOracle(
            objective=objective,
            max_trials=max_trials,
            num_initial_points=max(2, max_trials // 2),
            seed=seed,
        )
    return SearchTuner(oracle=oracle, **common)


def _claim_directory(directory, settings, overwrite):
    """Records the settings in `directory`; refuses to mix them with a started search's."""
    path = os.path.join(directory, SETTINGS_FILE)
    if os.path.exists(path) and not overwrite:
        with open(path) as handle:
            previous = json.load(handle)
        changed = sorted(key for key in settings if previous.get(key) != settings[key])
        project = os.path.join(directory, str(previous.get("model")))
        started = os.path.isdir(project) and any(
            name.startswith("trial_") for name in os.listdir(project)
        )
        if changed and started:
            details = ", ".join(
                f"{key}: {previous.get(key)!r} -> {settings[key]!r}" for key in changed
            )
            raise ValueError(
                f"`directory` {directory!r} holds a search with other settings ({details}); "
                "pass overwrite=True (--overwrite) to discard it, or another directory."
            )
    if overwrite:
        for name in (SUMMARY_JSON, SUMMARY_MARKDOWN):
            if os.path.exists(os.path.join(directory, name)):
                os.remove(os.path.join(directory, name))
        project = os.path.join(directory, settings["model"])
        if os.path.isdir(project):
            shutil.rmtree(project)
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(settings, handle, indent=2)


# === Summary ===


def default_values(space) -> dict:
    """The default value of every active hyperparameter of a search space."""
    return {hp.name: hp.default for hp in space.space if space.is_active(hp)}


def _tuned_values(values) -> dict:
    return {key: value for key, value in values.items() if not key.startswith("tuner/")}


def _trial_record(search, trial, trained: bool) -> dict:
    step = trial.best_step
    metrics = {}
    if step is not None:
        for name, history in trial.metrics.metrics.items():
            for observation in history.get_history():
                if observation.step == step:
                    metrics[name] = float(observation.mean())
    path = os.path.join(search.get_trial_dir(trial.trial_id), CURVES_FILE)
    recorded = {}
    if os.path.exists(path):
        with open(path) as handle:
            recorded = json.load(handle)
    curve = recorded.get("curves", {}).get(search.oracle.objective.name)
    score = None if trial.score is None or math.isnan(trial.score) else float(trial.score)
    return {
        "trial": trial_number(trial.trial_id),
        "trial_id": trial.trial_id,
        "status": trial.status,
        "hyperparameters": dict(trial.hyperparameters.values),
        "score": score,
        "best_epoch": None if step is None or not trained else int(step) + 1,
        "epochs_run": len(curve) if curve is not None and trained else None,
        "seconds": recorded.get("seconds"),
        "metrics": metrics,
        "objective_curve": curve,
    }


def _cached_test_metrics(search, trial, split, spec, kind, ks) -> dict:
    """Test metrics of a finished trial's best checkpoint, computed once per trial.

    A completed trial's checkpoint never changes, and `_claim_directory` ties the folder
    to one split, so the metrics are stored next to the checkpoint and reused when a
    finished or resumed search is summarized again.
    """
    path = os.path.join(search.get_trial_dir(trial.trial_id), TEST_METRICS_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    with warnings.catch_warnings():
        # The checkpoint holds the optimizer state, which evaluation does not need.
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        model = search.load_model(trial)
    metrics = evaluate_model(model, split, kind, ks, spec.recall_normalization)
    with open(path, "w") as handle:
        json.dump(metrics, handle)
    return metrics


def _trial_order(oracle) -> list:
    """Trial ids in the order the trials started (ids are zero-padded to `max_trials`)."""
    started = [trial_id for trial_id in oracle.start_order if trial_id in oracle.trials]
    return started + sorted(set(oracle.trials) - set(started))


def _summarize(search, hypermodel, split, spec, settings, max_trials) -> dict:
    trained = not hypermodel.recipe.closed_form
    trials = [
        _trial_record(search, search.oracle.get_trial(trial_id), trained)
        for trial_id in _trial_order(search.oracle)
    ]
    completed = [
        trial for trial in search.oracle.trials.values() if trial.status == TrialStatus.COMPLETED
    ]
    defaults = _tuned_values(default_values(search.oracle.get_space()))
    ks = hypermodel.cutoffs(split.num_items) if hypermodel.metric_kind == "ranking" else None
    chosen = {}
    if completed:
        chosen["best"] = search.oracle.get_best_trials(1)[0]
        matches = [t for t in completed if _tuned_values(t.hyperparameters.values) == defaults]
        if matches:
            chosen["defaults"] = min(matches, key=lambda t: t.trial_id)
    test = {
        trial.trial_id: _cached_test_metrics(search, trial, split, spec, hypermodel.kind, ks)
        for trial in chosen.values()
    }
    records = {record["trial_id"]: record for record in trials}
    outcome = {}
    for role in ("best", "defaults"):
        trial = chosen.get(role)
        outcome[role] = None
        if trial is not None:
            record = records[trial.trial_id]
            outcome[role] = {
                "trial": trial_number(trial.trial_id),
                "trial_id": trial.trial_id,
                "hyperparameters": _tuned_values(record["hyperparameters"]),
                "score": record["score"],
                "best_epoch": record["best_epoch"],
                "metrics": record["metrics"],
                "test": test[trial.trial_id],
            }
    return {
        **settings,
        "kind": hypermodel.metric_kind,
        "backend": keras.backend.backend(),
        "max_trials": max_trials,
        "epochs": hypermodel.epochs if trained else None,
        "patience": hypermodel.patience if trained else None,
        "split": split.summary(),
        "search_space": [
            {"class_name": type(hp).__name__, **hp.get_config()}
            for hp in search.oracle.get_space().space
        ],
        "default_hyperparameters": defaults,
        # Wall time of the trials, summed over the runs of a resumed search.
        "trial_seconds": sum(trial["seconds"] or 0.0 for trial in trials),
        "best": outcome["best"],
        "defaults": outcome["defaults"],
        "trials": trials,
    }


def _write_summary(directory, summary) -> None:
    with open(os.path.join(directory, SUMMARY_JSON), "w") as handle:
        json.dump(summary, handle, indent=2, default=str)
    with open(os.path.join(directory, SUMMARY_MARKDOWN), "w") as handle:
        handle.write(summary_markdown(summary))


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return ""
    return str(value)


def _space_row(hp: dict) -> str:
    if "values" in hp:
        values = ", ".join(repr(value) for value in hp["values"])
        domain = f"one of {values}"
    elif "min_value" in hp:
        step = f", step {hp['step']}" if hp.get("step") else ""
        domain = f"[{_format(hp['min_value'])}, {_format(hp['max_value'])}] {hp.get('sampling') or 'linear'}{step}"
    else:
        domain = str(hp.get("value", ""))
    return f"| {hp['name']} | {hp['class_name']} | {domain} | {hp.get('default')!r} |"


def trial_number(trial_id: str) -> int:
    """KerasTuner's 1-based "Trial #N" of a trial id (ids count from "0", zero-padded)."""
    return int(trial_id) + 1


def summary_markdown(summary: dict) -> str:
    """The summary as Markdown: settings, best vs defaults, search space, every trial."""
    objective = summary["objective"]
    lines = [
        f"# Hyperparameter search: {summary['model']} "
        f"({summary['protocol']} protocol, {summary.get('kind', 'ranking')} split)",
        "",
        f"- data: {summary['data']['name']} ({summary['data']['num_users']} users, "
        f"{summary['data']['num_items']} items, {summary['data']['num_interactions']} interactions)",
        f"- split: {summary['split'].replace(chr(10), '; ')}",
        f"- tuner: {summary['tuner']}, {summary['max_trials']} trials, objective "
        f"{objective['name']} ({objective['direction']}), seed {summary['seed']}, "
        f"backend {summary['backend']}",
    ]
    lines.append(f"- wall time of the trials: {summary['trial_seconds'] / 60:.1f} min")
    if summary["epochs"] is not None:
        lines.append(
            f"- budget: at most {summary['epochs']} epochs per trial, early stopping after "
            f"{summary['patience']} epochs without improvement"
        )
    lines += ["", "## Best configuration vs the paper's defaults", ""]
    roles = [(role, summary[role]) for role in ("best", "defaults") if summary[role]]
    if roles:
        test_keys = list(roles[0][1]["test"])
        header = ["", "trial", f"validation {objective['name']}", "best epoch"] + [
            f"test {key}" for key in test_keys
        ]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for role, record in roles:
            cells = [
                role,
                str(trial_number(record["trial_id"])),
                _format(record["score"]),
                _format(record["best_epoch"]),
            ]
            cells += [_format(record["test"].get(key)) for key in test_keys]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for role, record in roles:
            values = ", ".join(
                f"{key}={_format(value)}" for key, value in record["hyperparameters"].items()
            )
            lines.append(f"- {role}: {values}")
    else:
        lines.append("No trial completed.")
    lines += ["", "## Search space", "", "| name | type | values | default |", "|---|---|---|---|"]
    lines += [_space_row(hp) for hp in summary["search_space"]]
    names = [hp["name"] for hp in summary["search_space"]]
    header = ["trial", "status", objective["name"], "best epoch", "epochs run", "seconds", *names]
    lines += ["", "## Trials", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for trial in summary["trials"]:
        cells = [
            str(trial_number(trial["trial_id"])),
            trial["status"],
            _format(trial["score"]),
            _format(trial["best_epoch"]),
            _format(trial["epochs_run"]),
            "" if trial["seconds"] is None else f"{trial['seconds']:.1f}",
        ]
        cells += [_format(trial["hyperparameters"].get(name)) for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
