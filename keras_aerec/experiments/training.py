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
"""

import keras

from keras_aerec.data.batching import RowBatches
from keras_aerec.data.sequences import time_ordered_part, time_ordered_sequences
from keras_aerec.evaluation.callbacks import RankingEvaluation, RatingEvaluation
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.evaluation.rating import evaluate_rating

KINDS = ("rating", "ranking", "sequence")
# SVAE's batches: lengths rounded to 16 and sorted within windows of 10 batches, which
# keeps padding near 15 % on ML-1M (benchmarks/results/svae.md).
SEQUENCE_LENGTH_MULTIPLE = 16
SEQUENCE_BUCKET_SIZE = 10


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
        callbacks: further callbacks, run after the evaluation and early stopping.
        verbose: Keras `fit` verbosity.
        sequence_options: `SequenceBatches` options of sequence models (see
            `training_batches`).
        **fit_kwargs: forwarded to `model.fit` (`initial_epoch`, ...).

    Returns:
        The Keras `History`.
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
    selection = []
    if validation is not None:
        selection = [
            validation_callback(model, kind, train, validation, ks, recall_normalization),
            keras.callbacks.EarlyStopping(
                monitor, mode=mode, patience=patience, restore_best_weights=True
            ),
        ]
    return model.fit(
        batches,
        epochs=epochs,
        callbacks=[*selection, *(callbacks or [])],
        verbose=verbose,
        **fit_kwargs,
    )


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
