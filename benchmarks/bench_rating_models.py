"""Test RMSE and speed of I-AutoRec, U-AutoRec and DeepRec on MovieLens 1M.

Protocol: `rating_holdout(test=0.1, validation=0.1, seed=s)` (the validation ratings come
out of the 90 % training part), one split and one weight initialization per seed. Each
model trains with `model.fit` on `RowBatches` and stops early on the validation RMSE
(`evaluate_rating` after every epoch, best weights restored). Test RMSE: unseen users or
items get the default rating 3 (as in the AutoRec paper) and are counted; the inputs are
the training ratings, and `test RMSE (train+val in)` also feeds the validation ratings
as inputs at test time (they are known ratings, not test ones).

    KERAS_BACKEND=jax python benchmarks/bench_rating_models.py --data-dir ../shared/data \
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
        "model": {"variant": "item", "hidden_units": 500, "l2": 300.0},
        "train": {
            "learning_rate": 1e-3,
            "batch_size": 128,
            "max_epochs": 200,
            "patience": 12,
            "lr_patience": 3,
        },
        "published": "0.831 (paper, 90 % train); 0.910 (article's AutoRec, 75/25 split)",
    },
    "u-autorec": {
        "model": {"variant": "user", "hidden_units": 500, "l2": 300.0},
        "train": {
            "learning_rate": 1e-3,
            "batch_size": 512,
            "max_epochs": 300,
            "patience": 12,
            "lr_patience": 4,
        },
        "published": "0.874 (paper, 90 % train)",
    },
    "deeprec": {
        # Item-based and smaller than the paper's Netflix n-512-512-1024 (see the results).
        "model": {
            "variant": "item",
            "hidden_units": [128, 128, 256],
            "dropout": 0.8,
            "l2": 3e-4,
            "refeeds": 1,
        },
        "train": {
            "learning_rate": 1e-3,
            "batch_size": 32,
            "max_epochs": 150,
            "patience": 8,
            "lr_patience": 3,
        },
        "published": "0.931 (article's DeepRec, 75/25 split); Netflix 0.9099 (paper)",
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


def build(name, preset, data, split):
    model_args, train = dict(preset["model"]), preset["train"]
    cls = DeepRec if name == "deeprec" else AutoRec
    item_based = model_args["variant"] == "item"
    num_inputs = data.num_users if item_based else data.num_items
    if cls is AutoRec:
        model_args["num_rows"] = data.num_items if item_based else data.num_users
    model = cls(num_inputs, user_ids=split.user_ids, item_ids=split.item_ids, **model_args)
    optimizer_args = {"learning_rate": train["learning_rate"]}
    if train.get("clipvalue"):
        optimizer_args["clipvalue"] = train["clipvalue"]
    model.compile(optimizer=keras.optimizers.Adam(**optimizer_args))
    return model


def run(name, preset, data, split, seed, progress=0, refit=False):
    train = preset["train"]
    keras.utils.set_random_seed(seed)
    model = build(name, preset, data, split)
    rows = model.rating_rows(split.train)
    validation = TimedRatingEvaluation(rows, model.rating_rows(split.validation), progress)
    callbacks = [
        validation,
        keras.callbacks.EarlyStopping(
            monitor="val_rmse", mode="min", patience=train["patience"], restore_best_weights=True
        ),
    ]
    if train.get("lr_patience"):
        # Multiply the learning rate by `lr_factor` when the validation RMSE stalls.
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
    test_rows = model.rating_rows(split.test)
    known = split.train + split.validation
    test = evaluate_rating(model, rows, test_rows)
    curve = list(zip(history.history["loss"], history.history["val_rmse"], strict=True))
    best = min(range(len(curve)), key=lambda epoch: curve[epoch][1])
    result = {
        "model": name,
        "seed": seed,
        "test_rmse": test["rmse"],
        "test_rmse_train_val_inputs": evaluate_rating(model, model.rating_rows(known), test_rows)[
            "rmse"
        ],
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
    if refit:
        # The paper's protocol: the final model trains on all 90 % (train + validation)
        # for the chosen number of epochs, replaying the learning rates of that run.
        # `learning_rate` in the logs is the rate after the epoch (after any reduction).
        ends = history.history.get("learning_rate", [train["learning_rate"]] * len(curve))
        rates = [train["learning_rate"], *ends]
        keras.utils.set_random_seed(seed)
        model = build(name, preset, data, split)
        known_rows = model.rating_rows(known)
        start = time.perf_counter()
        model.fit(
            RowBatches(known_rows, y="x", batch_size=train["batch_size"], seed=seed),
            epochs=best + 1,
            callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch: rates[epoch])],
            verbose=0,
        )
        result["refit_seconds"] = time.perf_counter() - start
        result["refit_test_rmse"] = evaluate_rating(model, known_rows, test_rows)["rmse"]
    return result


def epoch_speed(name, preset, data, split, epochs):
    """Median seconds of `fit` epochs 2..`epochs` (the first one compiles), no evaluation."""
    keras.utils.set_random_seed(0)
    model = build(name, preset, data, split)
    batches = RowBatches(
        model.rating_rows(split.train), y="x", batch_size=preset["train"]["batch_size"], seed=0
    )
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(batches, epochs=1, verbose=0)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:]), seconds[0]


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
    parser.add_argument(
        "--data-dir", default="../shared/data", help="MovieLens folder (default: ../shared/data)"
    )
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="MODEL.ARG=VALUE")
    parser.add_argument("--progress", type=int, default=0, help="print every N epochs")
    parser.add_argument(
        "--refit",
        action="store_true",
        help="also retrain on train + validation for the best number of epochs",
    )
    parser.add_argument(
        "--speed-epochs",
        type=int,
        default=0,
        help="only time this many training epochs per model (no evaluation) and exit",
    )
    parser.add_argument("--json", help="write every run (with its learning curve) here")
    args = parser.parse_args()
    presets = json.loads(json.dumps(PRESETS))
    parse_overrides(args.set, presets)

    data = load_movielens("1m", data_dir=args.data_dir)
    splits = {
        seed: rating_holdout(data, test=0.1, validation=0.1, seed=seed) for seed in args.seeds
    }
    print(f"backend {keras.backend.backend()}; {splits[args.seeds[0]].summary()}", flush=True)
    if args.speed_epochs:
        for name in args.models:
            median, first = epoch_speed(
                name, presets[name], data, splits[args.seeds[0]], args.speed_epochs
            )
            print(
                f"{name} on {keras.backend.backend()}: {median:.2f} s/epoch "
                f"(median of epochs 2-{args.speed_epochs}; first epoch {first:.2f} s)",
                flush=True,
            )
        return
    results = []
    for name in args.models:
        print(f"{name}: {presets[name]['model']} {presets[name]['train']}", flush=True)
        for seed in args.seeds:
            result = run(name, presets[name], data, splits[seed], seed, args.progress, args.refit)
            results.append(result)
            print(
                f"  seed {seed}: test RMSE {result['test_rmse']:.4f} "
                f"(train+val inputs {result['test_rmse_train_val_inputs']:.4f}), "
                f"val {result['best_val_rmse']:.4f} at epoch {result['best_epoch']}/"
                f"{result['epochs_run']}, {result['median_epoch_seconds']:.2f} s/epoch, "
                f"{result['total_seconds']:.0f} s, defaulted {result['num_defaulted']}"
                + (f"; refit test RMSE {result['refit_test_rmse']:.4f}" if args.refit else ""),
                flush=True,
            )
    refit_header = " refit test RMSE |" if args.refit else ""
    print(
        "\n| model | backend | test RMSE | test RMSE (train+val in) |"
        + refit_header
        + " best epoch | s/epoch | s to best | total s | published |"
    )
    print("|---" * (10 if args.refit else 9) + "|")
    for name in args.models:
        runs = [r for r in results if r["model"] == name]
        print(
            f"| {name} | {keras.backend.backend()} | {mean_sd([r['test_rmse'] for r in runs])} "
            f"| {mean_sd([r['test_rmse_train_val_inputs'] for r in runs])} "
            + (f"| {mean_sd([r['refit_test_rmse'] for r in runs])} " if args.refit else "")
            + f"| {statistics.median(r['best_epoch'] for r in runs):.0f} "
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
