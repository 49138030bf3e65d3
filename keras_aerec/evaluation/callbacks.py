"""Keras callbacks that write protocol metrics into the training logs.

The logs they fill (`val_ndcg@100`, `val_recall@20`, `val_rmse`, ...) are what
`keras.callbacks.EarlyStopping`, `ModelCheckpoint` and KerasTuner objectives monitor, so a
model is selected on the evaluation protocol rather than on its training loss.
"""

import keras

from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.evaluation.rating import evaluate_rating


class RankingEvaluation(keras.callbacks.Callback):
    """Evaluates a held-out part at the end of every `frequency` epochs.

    Place it before `EarlyStopping` / `ModelCheckpoint` in the callback list: it adds its
    metrics to the epoch's `logs` in place, so the callbacks after it see them.

    Args:
        part: a `HeldOutPart` (`fold_in`, `holdout`, `train_rows`).
        ks: cut-offs to compute.
        prefix: prepended to the metric names (`"val_"` gives `val_ndcg@100`).
        frequency: evaluate every this many epochs (always on the first).
        **evaluate_kwargs: forwarded to `evaluate_ranking` (`recall_normalization`, ...).

    Example:

    ```python
    callbacks = [
        RankingEvaluation(split.validation, ks=(20, 100)),
        keras.callbacks.EarlyStopping("val_ndcg@100", mode="max", patience=10,
                                      restore_best_weights=True),
    ]
    ```
    """

    def __init__(self, part, ks=(10, 20, 50, 100), prefix="val_", frequency=1, **evaluate_kwargs):
        super().__init__()
        if part is None:
            raise ValueError(
                "`part` should be a held-out part with `fold_in` and `holdout`. Received: None"
            )
        if not isinstance(frequency, int) or frequency < 1:
            raise ValueError(
                f"`frequency` should be a positive integer. Received: frequency={frequency!r}"
            )
        self.part = part
        self.ks = tuple(ks)
        self.prefix = prefix
        self.frequency = frequency
        self.evaluate_kwargs = evaluate_kwargs

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or epoch % self.frequency:
            return
        results = evaluate_ranking(self.model, self.part, ks=self.ks, **self.evaluate_kwargs)
        for name, value in results.items():
            if "@" in name:
                logs[self.prefix + name] = float(value)


class RatingEvaluation(keras.callbacks.Callback):
    """Writes the masked RMSE (and MAE) of `targets` reconstructed from `inputs` to the logs.

    Args:
        inputs: CSR rows in the model's orientation (what the model reads).
        targets: CSR of the same shape: the held-out ratings to predict.
        prefix: prepended to `rmse` / `mae` (`"val_"` gives `val_rmse`).
        **evaluate_kwargs: forwarded to `evaluate_rating` (`rating_range`,
            `default_rating`, ...).
    """

    def __init__(self, inputs, targets, prefix="val_", **evaluate_kwargs):
        super().__init__()
        self.inputs = inputs
        self.targets = targets
        self.prefix = prefix
        self.evaluate_kwargs = evaluate_kwargs

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        results = evaluate_rating(self.model, self.inputs, self.targets, **self.evaluate_kwargs)
        logs[self.prefix + "rmse"] = float(results["rmse"])
        logs[self.prefix + "mae"] = float(results["mae"])
