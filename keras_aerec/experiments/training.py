"""Training and evaluation shared by the benchmark runner and the HyperModels.

A model family trains in one of three ways, its recipe's `kind`:

- `"rating"`: rows of ratings reconstructed (`RowBatches(..., y="x")`), RMSE / MAE on a
  ratings split;
- `"ranking"`: rows of implicit feedback (`RowBatches`), top-N metrics on a held-out part;
- `"sequence"`: time-ordered item sequences (`SequenceBatches`, SVAE), top-N metrics on
  a held-out part whose fold-in is read in time order (`time_ordered_part`).

`fit_model` trains on the matching batches, evaluating the validation part at the end of
every epoch and stopping early on the selection metric (best weights restored);
`evaluate_model` computes the test metrics.

Every `fit_model` run is watched by `DivergenceGuard` (a non-finite or runaway loss stops
it with `TrainingDivergedError`), and with a `TrainingBackup` among its callbacks it
resumes where a killed run stopped.
"""

import json
import logging
import math
import os
import shutil

import keras
import numpy as np

from keras_aerec.data.batching import RowBatches
from keras_aerec.data.sequences import time_ordered_part, time_ordered_sequences
from keras_aerec.evaluation.callbacks import RankingEvaluation, RatingEvaluation
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.evaluation.rating import evaluate_rating

KINDS = ("rating", "ranking", "sequence")
# SVAE's batches: lengths rounded to 32 and sorted within windows of 40 batches. On the
# ML-1M article split (batches of 16, max_len 200) that pads 1.21 positions per real one
# in 6 batch shapes, against 1.20 in 13 shapes with the earlier 16 and 10: each shape is
# one more JAX compilation (benchmarks/bench_svae_speed.py).
SEQUENCE_LENGTH_MULTIPLE = 32
SEQUENCE_BUCKET_SIZE = 40

logger = logging.getLogger("keras_aerec")


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN / infinite or ran away (see `DivergenceGuard`)."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stops `fit` with a `TrainingDivergedError` when the loss diverges.

    Checked at the end of every epoch (one number per epoch, no per-batch sync):

    - the epoch's loss is NaN or infinite;
    - it is above `factor` times the lowest epoch loss so far (an explosion);
    - it has risen for `patience` epochs in a row to above the first epoch's loss (a
      steady divergence, e.g. a negative learning rate: 524 -> 2212 over a few epochs).
      A healthy run's first epoch, from random weights, has the highest loss, so noise and
      KL annealing (Mult-VAE's loss grows a little while beta rises) do not trip it.

    A diverged model is not a result: raising keeps callers from saving or reporting it.

    Args:
        factor: explosion ratio over the lowest epoch loss.
        patience: epochs of consecutive growth that count as divergence.
    """

    def __init__(self, factor: float = 10.0, patience: int = 3):
        super().__init__()
        self.factor = factor
        self.patience = patience

    def on_train_begin(self, logs=None):
        self.first = self.lowest = self.previous = None
        self.first_epoch = 0
        self.rising = 0

    def on_epoch_end(self, epoch, logs=None):
        if not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            self._stop(epoch, f"the loss is {loss}")
        if self.first is None:
            self.first = self.lowest = self.previous = loss
            self.first_epoch = epoch
            return
        self.rising = self.rising + 1 if loss > self.previous else 0
        if self.lowest > 0 and loss > self.factor * self.lowest:
            self._stop(
                epoch, f"the loss is {loss:.4g}, over {self.factor:g}x its lowest {self.lowest:.4g}"
            )
        if self.rising >= self.patience and loss > self.first:
            self._stop(
                epoch,
                f"the loss rose for {self.rising} epochs to {loss:.4g}, above "
                f"{self.first:.4g} at epoch {self.first_epoch + 1}",
            )
        self.lowest = min(self.lowest, loss)
        self.previous = loss

    def _stop(self, epoch, reason):
        raise TrainingDivergedError(
            f"Training diverged at epoch {epoch + 1}: {reason}. Try a smaller learning rate."
        )


class TrainingBackup(keras.callbacks.Callback):
    """Backs up the training state every epoch so that a killed `fit` can resume.

    Like `keras.callbacks.BackupAndRestore`, plus what a run with early stopping needs to
    continue as if it had not been interrupted: the history so far and the
    `EarlyStopping` state (best value, patience count, best epoch and weights). The model
    and optimiser variables are saved with `model.save_weights`.

    Each backup is written to a new folder, then published by atomically replacing
    `latest.json`; a kill at any instant leaves the previous backup or the new one.
    `fit_model` starts a run at `completed_epochs` and, with early stopping, hands this
    callback its `EarlyStopping`. A backup of another run (another `identity`: other data,
    model or hyperparameters) is discarded with a warning. The folder is left on disk when
    `fit` ends: the caller removes it (`remove()`) once the result is safely stored.

    Args:
        directory: folder of the backups (created; nothing else should live there).
        identity: a string naming the run (e.g. a hash of its settings and data).
    """

    def __init__(self, directory: str, identity: str = ""):
        super().__init__()
        self.directory = directory
        self.identity = identity
        self.early_stopping = None
        self.resumed_from = 0
        self.history = {}
        self._state = self._read_state()

    @property
    def completed_epochs(self) -> int:
        """Epochs the backup holds (0: none); `fit` resumes at this epoch index."""
        return self._state["epoch"] if self._state else 0

    def _read_state(self):
        latest = os.path.join(self.directory, "latest.json")
        if not os.path.isfile(latest):
            return None
        try:
            with open(latest) as file:
                folder = os.path.join(self.directory, json.load(file)["folder"])
            with open(os.path.join(folder, "state.json")) as file:
                state = json.load(file)
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning(
                "ignoring the unreadable training backup in %s: %s", self.directory, error
            )
            return None
        if state.get("identity") != self.identity:
            logger.warning(
                "ignoring the training backup in %s: it belongs to another run (other "
                "data, model or settings)",
                self.directory,
            )
            return None
        state["folder"] = folder
        return state

    def on_train_begin(self, logs=None):
        state = self._state
        self.history = {}
        if not state:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(state["folder"], "model.weights.h5"))
        self.history = {key: list(values) for key, values in state["history"].items()}
        stopping = self.early_stopping
        if stopping is not None and state.get("early_stopping"):
            saved = state["early_stopping"]
            stopping.wait, stopping.best, stopping.best_epoch = (
                saved["wait"],
                saved["best"],
                saved["best_epoch"],
            )
            best = os.path.join(state["folder"], "best_weights.npz")
            if os.path.isfile(best):
                with np.load(best) as arrays:
                    stopping.best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        self.resumed_from = state["epoch"]
        logger.info("resumed from epoch %d (backup in %s)", state["epoch"], self.directory)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self._save(epoch + 1)

    def _save(self, epoch):
        os.makedirs(self.directory, exist_ok=True)
        name = f"epoch-{epoch:05d}"
        staging = os.path.join(self.directory, f".{name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        self.model.save_weights(os.path.join(staging, "model.weights.h5"))
        state = {"identity": self.identity, "epoch": epoch, "history": self.history}
        stopping = self.early_stopping
        if stopping is not None:
            best = stopping.best
            state["early_stopping"] = {
                "wait": stopping.wait,
                "best": None if best is None else float(best),
                "best_epoch": stopping.best_epoch,
            }
            if stopping.best_weights is not None:
                np.savez(os.path.join(staging, "best_weights.npz"), *stopping.best_weights)
        with open(os.path.join(staging, "state.json"), "w") as file:
            json.dump(state, file)
        folder = os.path.join(self.directory, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        _write_json_atomically(os.path.join(self.directory, "latest.json"), {"folder": name})
        for entry in os.listdir(self.directory):
            if entry != name and entry != "latest.json":
                shutil.rmtree(os.path.join(self.directory, entry), ignore_errors=True)

    def remove(self) -> None:
        """Deletes the backups (call once the trained model is stored)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _write_json_atomically(path, record) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as file:
        json.dump(record, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def metric_kind(kind: str) -> str:
    """What a kind of model is evaluated on: `"rating"` or `"ranking"` (sequence models)."""
    _check_kind(kind)
    return "rating" if kind == "rating" else "ranking"


def training_batches(
    model, train, kind: str, batch_size: int, seed=None, user_index=False, **sequence_options
):
    """The batches `model.fit` trains on.

    Args:
        model: the model (rating models map `train` to their orientation, SVAE pads to
            its `max_len` and `next_k`).
        train: users x items CSR: ratings (`"rating"`), implicit feedback (`"ranking"`)
            or interaction timestamps (`"sequence"`, e.g. `RankingSplit.train_timestamps`).
        kind: one of `KINDS`.
        batch_size: rows (users or items) per batch.
        seed: seed of the batch order.
        user_index: whether ranking batches carry the user positions (CDAE).
        **sequence_options: `length_multiple`, `bucket_size` of `SequenceBatches`
            (defaults: `SEQUENCE_LENGTH_MULTIPLE`, `SEQUENCE_BUCKET_SIZE`).
    """
    _check_kind(kind)
    if kind == "rating":
        return RowBatches(model.rating_rows(train), y="x", batch_size=batch_size, seed=seed)
    if kind == "sequence":
        if train is None:
            raise ValueError(
                "Sequence models train on the split's `train_timestamps` (interactions "
                "with timestamps). Received: train=None"
            )
        options = {
            "length_multiple": SEQUENCE_LENGTH_MULTIPLE,
            "bucket_size": SEQUENCE_BUCKET_SIZE,
            **sequence_options,
        }
        return model.batches(
            time_ordered_sequences(train), batch_size=batch_size, seed=seed, **options
        )
    return RowBatches(train, batch_size=batch_size, seed=seed, user_index=user_index)


def evaluation_part(part, kind: str):
    """The held-out part as the model reads it: time-ordered fold-in for sequence models."""
    return time_ordered_part(part) if kind == "sequence" else part


def validation_callback(model, kind, train, validation, ks, recall_normalization="min"):
    """The callback writing the validation metrics (`val_rmse`, `val_ndcg@100`, ...)."""
    if metric_kind(kind) == "rating":
        return RatingEvaluation(
            model.rating_rows(train),
            model.rating_rows(validation),
            default_rating=model.default_rating,
        )
    return RankingEvaluation(
        evaluation_part(validation, kind), ks=ks, recall_normalization=recall_normalization
    )


def fit_model(
    model,
    kind: str,
    train,
    validation=None,
    *,
    epochs: int,
    batch_size: int,
    monitor: str | None = None,
    mode: str = "max",
    patience: int = 10,
    ks=(100,),
    recall_normalization: str = "min",
    seed=None,
    user_index: bool = False,
    callbacks=None,
    verbose="auto",
    sequence_options=None,
    **fit_kwargs,
):
    """Trains `model`, evaluating `validation` every epoch and stopping early on `monitor`.

    Args:
        model: a compiled model.
        kind: one of `KINDS`.
        train: the training matrix (see `training_batches`): for `"sequence"` models the
            CSR of training timestamps (`RankingSplit.train_timestamps`).
        validation: the validation ratings (CSR, rating models) or `HeldOutPart`, or
            None to train for `epochs` epochs without selection.
        epochs: epoch budget.
        batch_size: rows per training batch.
        monitor: the validation metric that stops training and picks the weights
            (`"val_rmse"`, `"val_ndcg@100"`); with a validation part.
        mode: `"max"` or `"min"` for `monitor`.
        patience: early-stopping patience in epochs.
        ks: cut-offs evaluated on a ranking validation part.
        recall_normalization: `"min"` (Liang et al.) or `"relevant"` (RecBole).
        seed: seed of the batch order.
        user_index: whether ranking batches carry the user positions (CDAE).
        callbacks: further callbacks, run after the evaluation and early stopping. A
            `TrainingBackup` among them makes the run resume from its backup (and
            restores the early-stopping state); the returned history then covers every
            epoch, the resumed ones included.
        verbose: Keras `fit` verbosity.
        sequence_options: `SequenceBatches` options of sequence models (see
            `training_batches`).
        **fit_kwargs: forwarded to `model.fit` (`initial_epoch`, ...).

    Returns:
        The Keras `History`.

    Raises:
        TrainingDivergedError: the loss became NaN / infinite or ran away.
    """
    batches = training_batches(
        model,
        train,
        kind,
        batch_size,
        seed=seed,
        user_index=user_index,
        **(sequence_options or {}),
    )
    callbacks = list(callbacks or [])
    backups = [callback for callback in callbacks if isinstance(callback, TrainingBackup)]
    # The backup runs last: it saves what the other callbacks made of the epoch.
    callbacks = [callback for callback in callbacks if callback not in backups] + backups
    selection = []
    if validation is not None:
        stopping = keras.callbacks.EarlyStopping(
            monitor, mode=mode, patience=patience, restore_best_weights=True
        )
        selection = [
            validation_callback(model, kind, train, validation, ks, recall_normalization),
            stopping,
        ]
        for backup in backups:
            backup.early_stopping = stopping
    if backups:
        fit_kwargs.setdefault("initial_epoch", backups[0].completed_epochs)
    history = model.fit(
        batches,
        epochs=epochs,
        callbacks=[DivergenceGuard(), *selection, *callbacks],
        verbose=verbose,
        **fit_kwargs,
    )
    if backups:
        history.history = backups[0].history
        history.epoch = list(range(len(history.history.get("loss", []))))
    return history


def ranking_metrics(model, part, kind: str, ks, recall_normalization="min", prefix="") -> dict:
    """Top-N metrics of `model` on a held-out part: `{prefix + "ndcg@100": ..., ...}`."""
    results = evaluate_ranking(
        model, evaluation_part(part, kind), ks=ks, recall_normalization=recall_normalization
    )
    return {prefix + key: float(value) for key, value in results.items() if "@" in key}


def evaluate_model(model, split, kind: str, ks=None, recall_normalization="min") -> dict:
    """Test metrics: `{"rmse", "mae"}` for rating models, P/R/NDCG@k for the others."""
    if metric_kind(kind) == "rating":
        train_rows = model.rating_rows(split.train)
        results = evaluate_rating(
            model, train_rows, model.rating_rows(split.test), default_rating=model.default_rating
        )
        return {"rmse": float(results["rmse"]), "mae": float(results["mae"])}
    return ranking_metrics(model, split.test, kind, ks, recall_normalization)


def _check_kind(kind) -> None:
    if kind not in KINDS:
        raise ValueError(f"`kind` should be one of {', '.join(KINDS)}. Received: kind={kind!r}")
