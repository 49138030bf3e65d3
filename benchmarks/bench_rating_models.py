"""Test RMSE and speed of I-AutoRec, U-AutoRec and DeepRec on MovieLens 1M.

Protocol: `rating_holdout(test=0.1, validation=0.1, seed=s)` (the validation ratings come
out of the 90 % training part), one split and one weight initialization per seed. Each
model trains with `model.fit` on `RowBatches` and stops early on the validation RMSE
(`evaluate_rating` after every epoch, best weights restored). Test RMSE: unseen users or
items get the default rating 3 (as in the AutoRec paper) and are counted; the inputs are
the training ratings, and `test RMSE (train+val in)` also feeds the validation ratings
as inputs at test time (they are known ratings, not test ones).

    KERAS_BACKEND=jax python benchmarks/bench_rating_models.py --data-dir /work/shared/data \
        --models i-autorec u-autorec deeprec --seeds 0 1 2 [--set deeprec.dropout=0.5] \
        [--json results.json]

The backend defaults to JAX, the fastest measured on a 2-core CPU. Epoch times are the
`fit` time of each epoch without the validation pass; total time is the whole `fit`.
"""

import argparse
import ast
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

from keras_aerec.data.batching import RowBatches  # noqa: E402
from keras_aerec.data.movielens import load_movielens  # noqa: E402
from keras_aerec.data.splits import rating_holdout  # noqa: E402
from keras_aerec.evaluation.callbacks import RatingEvaluation  # noqa: E402
from keras_aerec.evaluation.rating import evaluate_rating  # noqa: E402
from keras_aerec.models.auto_rec import AutoRec  # noqa: E402
from keras_aerec.models.deep_rec import DeepRec  # noqa: E402

# Model arguments and training settings of each benchmarked model; `--set` overrides them.
PRESETS = {
    "i-autorec": {
        "model": {"variant": "item", "hidden_units": 500, "l2": 100.0},
        "train": {"learning_rate": 1e-3, "batch_size": 256, "max_epochs": 300, "patience": 20},
        "published": "0.831 (paper), 0.910 (article's AutoRec, 75/25 split)",
    },
    "u-autorec": {
        "model": {"variant": "user", "hidden_units": 500, "l2": 100.0},
        "train": {"learning_rate": 1e-3, "batch_size": 256, "max_epochs": 300, "patience": 20},
        "published": "0.874 (paper)",
    },
    "deeprec": {
        "model": {
            "variant": "user",
            "hidden_units": [512, 512, 1024],
            "dropout": 0.8,
            "l2": 0.0,
            "refeeds": 1,
        },
        "train": {"learning_rate": 1e-3, "batch_size": 128, "max_epochs": 300, "patience": 20},
        "published": "0.931 (article's DeepRec, 75/25 split); 0.9099 on Netflix (paper)",
    },
}
TRAIN_KEYS = {
    "learning_rate",
    "batch_size",
    "max_epochs",
    "patience",
    "clipvalue",
    "lr_patience",
    "lr_factor",
}


class TimedRatingEvaluation(RatingEvaluation):
    """`RatingEvaluation` (adds `val_rmse`) that also times each epoch's training."""

    def __init__(self, inputs, targets, progress=0):
        super().__init__(inputs, targets)
        self.progress = progress
        self.epoch_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._start)
        super().on_epoch_end(epoch, logs)
        if self.progress and (epoch + 1) % self.progress == 0:
            print(
                f"    epoch {epoch + 1}: loss {logs['loss']:.4f}, val RMSE {logs['val_rmse']:.4f}, "
                f"{self.epoch_seconds[-1]:.2f} s",
                flush=True,
            )


def run(name, preset, data, split, seed, progress=0):
    keras.utils.set_random_seed(seed)
    model_args, train = dict(preset["model"]), preset["train"]
    cls = DeepRec if name.startswith("deeprec") else AutoRec
    num_inputs = data.num_users if model_args["variant"] == "item" else data.num_items
    if cls is AutoRec:
        model_args["num_rows"] = (
            data.num_items if model_args["variant"] == "item" else data.num_users
        )
    model = cls(num_inputs, user_ids=split.user_ids, item_ids=split.item_ids, **model_args)
    optimizer_args = {"learning_rate": train["learning_rate"]}
    if train.get("clipvalue"):
        optimizer_args["clipvalue"] = train["clipvalue"]
    model.compile(optimizer=keras.optimizers.Adam(**optimizer_args))

    rows = model.rating_rows(split.train)
    validation = TimedRatingEvaluation(rows, model.rating_rows(split.validation), progress)
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_rmse", mode="min", patience=train["patience"], restore_best_weights=True
    )
    callbacks = [validation, stopping]
    if train.get("lr_patience"):
        # Halve (by `lr_factor`) the learning rate when the validation RMSE stalls.
        callbacks.insert(
            1,
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_rmse",
                mode="min",
                factor=train.get("lr_factor", 0.5),
                patience=train["lr_patience"],
                min_lr=1e-6,
            ),
        )
    start = time.perf_counter()
    history = model.fit(
        RowBatches(rows, y="x", batch_size=train["batch_size"], seed=seed),
        epochs=train["max_epochs"],
        callbacks=callbacks,
        verbose=0,
    )
    total = time.perf_counter() - start
    test = evaluate_rating(model, rows, model.rating_rows(split.test))
    test_with_validation = evaluate_rating(
        model, model.rating_rows(split.train + split.validation), model.rating_rows(split.test)
    )
    curve = list(zip(history.history["loss"], history.history["val_rmse"], strict=True))
    best = min(range(len(curve)), key=lambda epoch: curve[epoch][1])
    return {
        "model": name,
        "seed": seed,
        "test_rmse": test["rmse"],
        "test_rmse_train_val_inputs": test_with_validation["rmse"],
        "num_test": test["num_ratings"],
        "num_defaulted": test["num_defaulted"],
        "best_epoch": best + 1,
        "epochs_run": len(curve),
        "best_val_rmse": curve[best][1],
        "median_epoch_seconds": statistics.median(validation.epoch_seconds),
        "seconds_to_best": sum(validation.epoch_seconds[: best + 1]),
        "total_seconds": total,
        "curve": curve,
    }


def mean_sd(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def parse_overrides(pairs, presets):
    for pair in pairs:
        key, _, value = pair.partition("=")
        name, _, argument = key.partition(".")
        if name not in presets or not argument or not value:
            raise SystemExit(f"--set expects model.argument=value, got {pair!r}")
        section = "train" if argument in TRAIN_KEYS else "model"
        try:
            presets[name][section][argument] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            presets[name][section][argument] = value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="MODEL.ARG=VALUE")
    parser.add_argument("--progress", type=int, default=0, help="print every N epochs")
    parser.add_argument("--json", help="write every run (with its learning curve) here")
    args = parser.parse_args()
    presets = json.loads(json.dumps(PRESETS))
    parse_overrides(args.set, presets)

    data = load_movielens("1m", data_dir=args.data_dir)
    splits = {
        seed: rating_holdout(data, test=0.1, validation=0.1, seed=seed) for seed in args.seeds
    }
    print(f"backend {keras.backend.backend()}; {splits[args.seeds[0]].summary()}", flush=True)
    results = []
    for name in args.models:
        print(f"{name}: {presets[name]['model']} {presets[name]['train']}", flush=True)
        for seed in args.seeds:
            result = run(name, presets[name], data, splits[seed], seed, args.progress)
            results.append(result)
            print(
                f"  seed {seed}: test RMSE {result['test_rmse']:.4f} "
                f"(train+val inputs {result['test_rmse_train_val_inputs']:.4f}), "
                f"val {result['best_val_rmse']:.4f} at epoch {result['best_epoch']}/"
                f"{result['epochs_run']}, {result['median_epoch_seconds']:.2f} s/epoch, "
                f"{result['total_seconds']:.0f} s, defaulted {result['num_defaulted']}",
                flush=True,
            )
    print(
        "\n| model | backend | test RMSE | test RMSE (train+val in) | best epoch | s/epoch "
        "| s to best | total s | published |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        runs = [r for r in results if r["model"] == name]
        print(
            f"| {name} | {keras.backend.backend()} | {mean_sd([r['test_rmse'] for r in runs])} "
            f"| {mean_sd([r['test_rmse_train_val_inputs'] for r in runs])} "
            f"| {statistics.median(r['best_epoch'] for r in runs):.0f} "
            f"| {statistics.median(r['median_epoch_seconds'] for r in runs):.2f} "
            f"| {statistics.median(r['seconds_to_best'] for r in runs):.0f} "
            f"| {statistics.median(r['total_seconds'] for r in runs):.0f} "
            f"| {presets[name]['published']} |"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"presets": presets, "runs": results}, file, indent=1)


if __name__ == "__main__":
    main()
