"""SVAE against Mult-VAE under the temporal protocol, and SVAE's batched training speed.

Data: a timestamped MovieLens release, ratings > 3 positive (> 3.5 for latest-small), users
with at least 5 positives (on ML-1M, the shared copy's timestamped users 1..2999). Split:
`temporal` held-out users (`--heldout` validation and as many test users, drawn per seed),
the first 80% of each held-out user's time-ordered positives folded in, the last 20%
predicted. Both models are trained on the same split's training users, early-stopped on
the validation users' NDCG@100 (best weights restored), and evaluated on the test users.

Speed: training time per epoch (without evaluation, epochs after the first so that
tracing is excluded) and sequences per second of the batched SVAE; then the same model at
batch size 1 (one user per step, unpadded, as in the authors' code) timed on a few
hundred steps and extrapolated to an epoch.

    KERAS_BACKEND=tensorflow python benchmarks/bench_svae.py \\
        --data-dir ../shared/data --dataset 1m --seeds 0 1 2 \\
        --output benchmarks/results/svae.md

    # once: which backend trains SVAE fastest on this machine
    python benchmarks/bench_svae.py --time-backends
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import keras
import numpy as np

from keras_aerec.data.movielens import load_movielens
from keras_aerec.data.sequences import (
    SequenceBatches,
    time_ordered_part,
    time_ordered_sequences,
)
from keras_aerec.data.splits import temporal
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.experiments.recipes import MODELS
from keras_aerec.experiments.training import fit_model, training_batches

THRESHOLDS = {"1m": 3.0, "100k": 3.0, "latest-small": 3.5}
KS = (10, 100)
METRICS = [f"{name}@{k}" for k in KS for name in ("ndcg", "recall", "precision")]
# Sachdeva et al. 2019, Table 2 (full ML-1M, in %): recall there is hits / |holdout|.
PAPER = {
    "SVAE": {
        "ndcg@10": 17.81,
        "ndcg@100": 29.93,
        "recall@10": 12.48,
        "recall@100": 49.09,
        "precision@10": 14.40,
        "precision@100": 6.93,
    },
    "Mult-VAE": {"ndcg@100": 23.01, "recall@100": 41.43},
}


class EpochTimer(keras.callbacks.Callback):
    """Training seconds of each epoch: from its start to the end of its last batch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(self._last - self._start)


class StepTimer(keras.callbacks.Callback):
    """Seconds per training step, after the first (tracing) step."""

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if batch == 0:
            self._start, self.steps = now, 0
        else:
            self.steps += 1
            self.seconds_per_step = (now - self._start) / self.steps


def load_data(dataset, data_dir):
    data = load_movielens(dataset, data_dir=data_dir, require_timestamps=True)
    return data.to_implicit(THRESHOLDS[dataset]).filter_min_interactions(users=5)


def evaluate(model, part):
    results = evaluate_ranking(model, part, ks=KS)
    relevant = evaluate_ranking(model, part, ks=KS, recall_normalization="relevant")
    for k in KS:
        results[f"recall_relevant@{k}"] = relevant[f"recall@{k}"]
    return results


def progress(label):
    """Prints each epoch's loss and validation NDCG@100 (after the evaluation callback)."""
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: print(
            f"  {label} epoch {epoch + 1}: loss {logs['loss']:.4f}, "
            f"val NDCG@100 {logs['val_ndcg@100']:.4f}",
            flush=True,
        )
    )


def fit_selected(
    model, kind, train, split, epochs, batch_size, patience, seed, label, timer, **options
):
    """Trains on `train`, early-stopped on the validation users' NDCG@100 (best restored)."""
    return fit_model(
        model,
        kind,
        train,
        split.validation,
        epochs=epochs,
        batch_size=batch_size,
        monitor="val_ndcg@100",
        patience=patience,
        ks=(100,),
        seed=seed,
        callbacks=[timer, progress(label)],
        verbose=0,
        **options,
    )


def svae_model(split, args, seed):
    keras.utils.set_random_seed(seed)
    hyperparameters = {
        "item_embedding_dim": args.item_embedding_dim,
        "rnn_units": args.rnn_units,
        "hidden_units": args.hidden_units,
        "latent_dim": args.latent_dim,
        "next_k": args.next_k,
        "max_len": args.max_len,
        "total_anneal_steps": args.total_anneal_steps,
        "learning_rate": args.learning_rate,
        "seed": seed,
    }
    return MODELS["svae"].build(split, hyperparameters)


def train_svae(split, args, seed):
    model = svae_model(split, args, seed)
    sequence_options = {"length_multiple": args.length_multiple, "bucket_size": args.bucket_size}
    timer = EpochTimer()
    history = fit_selected(
        model,
        "sequence",
        split.train_timestamps,
        split,
        args.epochs,
        args.batch_size,
        args.patience,
        seed,
        "SVAE",
        timer,
        sequence_options=sequence_options,
    )
    validation = history.history["val_ndcg@100"]
    steady = timer.seconds[1:] or timer.seconds
    epoch_seconds = statistics.median(steady)
    # The first epoch's batches, as `fit_model` built them (same seed).
    batches = training_batches(
        model,
        split.train_timestamps,
        "sequence",
        args.batch_size,
        seed=seed,
        **sequence_options,
    )
    positions = int(sum(min(len(s), args.max_len) for s in batches.sequences))
    info = {
        "validation": validation,
        "epochs": len(validation),
        "best_epoch": int(np.argmax(validation)) + 1,
        "epoch_seconds": epoch_seconds,
        "first_epoch_seconds": timer.seconds[0],
        "sequences_per_second": len(batches.sequences) / epoch_seconds,
        "positions_per_second": positions / epoch_seconds,
        "num_sequences": len(batches.sequences),
        "num_positions": positions,
        "num_batches": len(batches),
        "padded_cells": int(sum(batches[i][0].size for i in range(len(batches)))),
    }
    return model, info


def time_batch_size_one(split, args, seed):
    """Seconds per one-user step (each user's own length, no padding), and per epoch."""
    model = svae_model(split, args, seed)
    sequences = time_ordered_sequences(split.train_timestamps)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(
        len(sequences), size=min(args.batch_one_steps, len(sequences)), replace=False
    )
    batches = SequenceBatches(
        [sequences[i] for i in chosen],
        batch_size=1,
        max_len=args.max_len,
        next_k=args.next_k,
        seed=seed,
        length_multiple=1,
    )
    timer = StepTimer()
    model.fit(batches, epochs=1, callbacks=[timer], verbose=0)
    # The sampled users' mean length may differ from all users': scale by positions.
    sampled_positions = sum(min(len(sequences[i]), args.max_len) for i in chosen)
    all_positions = sum(min(len(s), args.max_len) for s in sequences)
    per_position = timer.seconds_per_step * len(chosen) / sampled_positions
    return {
        "steps": len(chosen),
        "seconds_per_step": timer.seconds_per_step,
        "epoch_seconds": per_position * all_positions,
        "sequences_per_second": len(sequences) / (per_position * all_positions),
    }


def time_batch_sizes(split, args, seed, batch_sizes, repeats=3):
    """Training positions per second of SVAE at each batch size, measured in one process.

    Users drawn at random (batch 1: `args.batch_one_steps` users, each at its own length,
    no padding; batch b > 1: about `8 * args.batch_one_steps` users, length-bucketed and
    rounded as in training) train for one warm-up epoch (tracing), then `repeats`
    timed epochs; the median epoch gives seconds per real (unpadded) position, so batch
    sizes that cover different users compare fairly. Rounds interleave the batch sizes so
    that load changes on a shared machine hit them alike.
    """
    sequences = time_ordered_sequences(split.train_timestamps)
    rng = np.random.default_rng(seed)
    setups = {}
    for size in batch_sizes:
        steps = (
            max(2, args.batch_one_steps // max(1, size // 8)) if size > 1 else args.batch_one_steps
        )
        count = min(len(sequences), size * steps)
        chosen = rng.choice(len(sequences), size=count, replace=False)
        batches = SequenceBatches(
            [sequences[i] for i in chosen],
            batch_size=size,
            max_len=args.max_len,
            next_k=args.next_k,
            seed=seed,
            length_multiple=1 if size == 1 else args.length_multiple,
            bucket_size=None if size == 1 else args.bucket_size,
        )
        model = svae_model(split, args, seed)
        model.fit(batches, epochs=1, verbose=0)  # warm-up: tracing of the shapes
        positions = sum(min(len(sequences[i]), args.max_len) for i in chosen)
        setups[size] = (model, batches, positions, [])
    for _ in range(repeats):
        for model, batches, _, seconds in setups.values():
            timer = EpochTimer()
            model.fit(batches, epochs=1, callbacks=[timer], verbose=0)
            seconds.append(timer.seconds[0])
    all_positions = sum(min(len(s), args.max_len) for s in sequences)
    results = {}
    for size, (_, batches, positions, seconds) in setups.items():
        per_position = statistics.median(seconds) / positions
        results[size] = {
            "users": len(batches.sequences),
            "positions_per_second": 1.0 / per_position,
            "epoch_seconds": per_position * all_positions,
        }
    base = results.get(1)
    for result in results.values():
        if base:
            result["speedup"] = result["positions_per_second"] / base["positions_per_second"]
    return results


def train_multvae(split, args, seed):
    keras.utils.set_random_seed(seed)
    model = MODELS["multvae"].build(split, {"learning_rate": 1e-3, "seed": seed})
    timer = EpochTimer()
    history = fit_selected(
        model,
        "ranking",
        split.train,
        split,
        args.multvae_epochs,
        args.multvae_batch_size,
        args.multvae_patience,
        seed,
        "Mult-VAE",
        timer,
    )
    validation = history.history["val_ndcg@100"]
    return model, {
        "validation": validation,
        "epochs": len(validation),
        "best_epoch": int(np.argmax(validation)) + 1,
        "epoch_seconds": statistics.median(timer.seconds[1:] or timer.seconds),
    }


def time_backends(steps=5, batch_size=64, length=100, num_items=3615):
    """Seconds per SVAE training step (paper sizes) on each backend, in subprocesses."""
    code = f"""
import time, numpy as np, keras
from keras_aerec.data.sequences import next_k_targets
from keras_aerec.models.svae import SVAE
x = np.random.default_rng(0).integers(1, {num_items} + 1, size=({batch_size}, {length}))
x = x.astype("int32")
y = next_k_targets(x, 4)
model = SVAE({num_items}, next_k=4, max_len={length}, seed=0)
model.compile(optimizer="adam")
model.train_on_batch(x, y)
start = time.perf_counter()
for _ in range({steps}):
    model.train_on_batch(x, y)
print((time.perf_counter() - start) / {steps})
"""
    results = {}
    for backend in ("tensorflow", "jax", "torch"):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        results[backend] = float(out.stdout.strip().splitlines()[-1])
        print(f"{backend}: {results[backend]:.3f} s per step ({batch_size} x {length})")
    return results


def mean_sd(values, scale=100.0):
    values = [scale * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown(args, data, runs, command):
    seeds = [run["seed"] for run in runs]
    split_stats = runs[0]["split"]
    lines = [
        f"# SVAE vs Mult-VAE, temporal protocol ({args.dataset})",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Backend: {keras.backend.backend()} (CPU). Seeds: {seeds} (each seed draws its own "
        "held-out users and initialises both models).",
        "",
        "## Data and protocol",
        "",
        f"- {data.name}: ratings > {THRESHOLDS[args.dataset]} positive, users with >= 5 "
        f"positives: {data.num_users} users x {data.num_items} items, "
        f"{data.num_interactions} interactions.",
        f"- `temporal(num_heldout_users={args.heldout}, num_validation_users={args.heldout}, "
        f"fold_in=0.8)`: {args.heldout} validation + {args.heldout} test users; seed "
        f"{seeds[0]}: {split_stats}.",
        "- Each held-out user's positives sorted by time: the first 80% are folded in "
        "(SVAE reads them in time order, Mult-VAE as a set) and excluded from the ranking; "
        "the last 20% are predicted.",
        "- Early stopping on validation NDCG@100 (best weights restored); test figures below.",
        "",
        "## Models",
        "",
        f"- SVAE: item embedding {args.item_embedding_dim}, GRU {args.rnn_units}, hidden "
        f"{args.hidden_units}, latent {args.latent_dim} (the paper's sizes), next_k="
        f"{args.next_k}, max_len={args.max_len} (most recent items), batch {args.batch_size} "
        f"users (length-bucketed windows of {args.bucket_size} batches, lengths rounded to "
        f"{args.length_multiple}), Adam {args.learning_rate}, KL cap 0.2 over "
        f"{args.total_anneal_steps} updates, <= {args.epochs} epochs, patience "
        f"{args.patience}.",
        f"- Mult-VAE: 600-200-600, dropout 0.5, Adam 1e-3, batch {args.multvae_batch_size}, "
        f"<= {args.multvae_epochs} epochs, patience {args.multvae_patience}; trained on the "
        "same split's training users.",
        "",
        "## Accuracy (test users, %, mean ± sd over seeds)",
        "",
        "Recall@k is hits / min(k, |holdout|) (Liang et al.); the paper's recall is "
        "hits / |holdout|, given as `recall (paper def.)`.",
        "",
        "| metric | SVAE | Mult-VAE | SVAE paper (full ML-1M) | Mult-VAE paper |",
        "|---|---|---|---|---|",
    ]
    names = METRICS[:]
    names.insert(2, "recall_relevant@10")
    names.insert(6, "recall_relevant@100")
    for name in names:
        paper_name = name.replace("recall_relevant", "recall")
        label = name.replace("recall_relevant", "recall (paper def.)")
        paper = [
            PAPER[model].get(paper_name)
            if name.startswith(("recall_relevant", "ndcg", "prec"))
            else None
            for model in ("SVAE", "Mult-VAE")
        ]
        cells = [mean_sd([run[model][name] for run in runs]) for model in ("svae", "multvae")]
        paper_cells = ["" if p is None else f"{p:.2f}" for p in paper]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {paper_cells[0]} | {paper_cells[1]} |")
    svae = [run["svae"]["ndcg@100"] for run in runs]
    mult = [run["multvae"]["ndcg@100"] for run in runs]
    gains = [100 * (s / m - 1) for s, m in zip(svae, mult, strict=True)]
    lines += [
        "",
        f"SVAE / Mult-VAE NDCG@100: {statistics.mean(gains):+.1f}% relative per seed "
        f"({', '.join(f'{g:+.1f}%' for g in gains)}); the paper: 29.93 / 23.01 = +30.1%.",
        "",
        "## Speed (SVAE training, seconds without evaluation)",
        "",
        "| | epoch (s) | sequences/s | positions/s |",
        "|---|---|---|---|",
    ]
    epoch = [run["svae_info"]["epoch_seconds"] for run in runs]
    per_second = [run["svae_info"]["sequences_per_second"] for run in runs]
    positions = [run["svae_info"]["positions_per_second"] for run in runs]
    lines.append(
        f"| batch {args.batch_size} | {mean_sd(epoch, 1)} | {mean_sd(per_second, 1)} | "
        f"{mean_sd(positions, 1)} |"
    )
    one = runs[0]["batch_one"]
    lines += [
        f"| batch 1 (extrapolated from {one['steps']} steps) | {one['epoch_seconds']:.1f} | "
        f"{one['sequences_per_second']:.1f} | |",
        "",
        f"Batched / batch-1 speed-up: {one['epoch_seconds'] / statistics.mean(epoch):.1f}x "
        f"(batch 1: {1000 * one['seconds_per_step']:.0f} ms per user step).",
        "",
        "## Per seed",
        "",
        "| seed | SVAE validation NDCG@100 by epoch (%) | SVAE first epoch (s, with "
        "tracing) | padded / real positions | Mult-VAE epochs (best: validation %) | "
        "Mult-VAE epoch (s) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        s, m = run["svae_info"], run["multvae_info"]
        curve = ", ".join(f"{100 * v:.2f}" for v in s["validation"])
        lines.append(
            f"| {run['seed']} | {curve} | {s['first_epoch_seconds']:.1f} | "
            f"{s['padded_cells'] / s['num_positions']:.2f} | {m['epochs']} "
            f"({m['best_epoch']}: {100 * max(m['validation']):.2f}) | "
            f"{m['epoch_seconds']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="1m", choices=sorted(THRESHOLDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--heldout", type=int, default=300)
    parser.add_argument("--item-embedding-dim", type=int, default=256)
    parser.add_argument("--rnn-units", type=int, default=200)
    parser.add_argument("--hidden-units", type=int, default=150)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--next-k", type=int, default=4)
    parser.add_argument("--max-len", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length-multiple", type=int, default=16)
    parser.add_argument("--bucket-size", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--total-anneal-steps", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--patience", type=int, default=1)
    parser.add_argument("--multvae-batch-size", type=int, default=100)
    parser.add_argument("--multvae-epochs", type=int, default=40)
    parser.add_argument("--multvae-patience", type=int, default=5)
    parser.add_argument("--batch-one-steps", type=int, default=100)
    parser.add_argument("--output", default=None, help="write the Markdown report here")
    parser.add_argument("--time-backends", action="store_true")
    parser.add_argument(
        "--speed-batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="only time training at these batch sizes (seed 0's split) and exit",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.time_backends:
        time_backends()
        return
    command = "KERAS_BACKEND={} python benchmarks/bench_svae.py {}".format(
        keras.backend.backend(), " ".join(sys.argv[1:] if argv is None else argv)
    )
    start = time.perf_counter()
    data = load_data(args.dataset, args.data_dir)
    print(data)
    if args.speed_batch_sizes:
        split = temporal(
            data, num_heldout_users=args.heldout, num_validation_users=args.heldout, seed=0
        )
        results = time_batch_sizes(split, args, 0, args.speed_batch_sizes)
        print(
            f"{command}\n\n| batch size | users timed | positions/s | epoch s (extrapolated) "
            "| speed-up vs batch 1 |\n|---|---|---|---|---|"
        )
        for size, result in results.items():
            print(
                f"| {size} | {result['users']} | {result['positions_per_second']:.0f} "
                f"| {result['epoch_seconds']:.1f} | {result.get('speedup', float('nan')):.1f}x |"
            )
        return
    runs = []
    for seed in args.seeds:
        split = temporal(
            data, num_heldout_users=args.heldout, num_validation_users=args.heldout, seed=seed
        )
        run = {"seed": seed, "split": split.summary().replace("\n", "; ")}
        model, run["svae_info"] = train_svae(split, args, seed)
        run["svae"] = evaluate(model, time_ordered_part(split.test))
        print(f"seed {seed} SVAE {run['svae_info']} {run['svae']}", flush=True)
        model, run["multvae_info"] = train_multvae(split, args, seed)
        run["multvae"] = evaluate(model, split.test)
        print(f"seed {seed} Mult-VAE {run['multvae_info']} {run['multvae']}", flush=True)
        if not runs:
            run["batch_one"] = time_batch_size_one(split, args, seed)
            print(f"batch size 1: {run['batch_one']}", flush=True)
        runs.append(run)
    report = markdown(args, data, runs, command)
    report += f"\nTotal wall time: {(time.perf_counter() - start) / 60:.1f} min.\n"
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
