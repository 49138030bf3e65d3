"""A recipe's settings screened on validation NDCG@100 under one protocol (ML-1M).

Builds the benchmark's split for one seed (`keras-aerec benchmark --protocol PROTOCOL`:
e.g. `liang`, strong generalization with 600 validation and 600 test users, or
`temporal`, the time-ordered split SVAE is evaluated on), trains the model's recipe under
that protocol with the given changes exactly as the benchmark does (`train_and_evaluate`:
epoch kept by validation NDCG@100, best weights restored), and records the best
validation NDCG@100, its epoch, the KL weight beta at that epoch and the test NDCG@100 in
`benchmarks/results/MODEL_PROTOCOL.json`. Settings are chosen on the validation figure;
the test figure is only recorded.

Usage:
    nice -n 5 python benchmarks/bench_screen.py --label "l2 0.01" --set l2=0.01
    nice -n 5 python benchmarks/bench_screen.py --model svae --protocol temporal \
        --label "l2 1e-4" --set l2=1e-4
    (`--set` takes model / optimiser hyperparameters; `--batch-size`, `--epochs`,
    `--patience`, `--lr-patience` change the schedule)
"""

import argparse
import ast
import dataclasses
import fcntl
import logging
import os
import tempfile

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# What each screened model's figures depend on, and how they are titled.
MODELS = {
    "multvae": {
        "title": "Mult-VAE",
        "code": [
            "keras_aerec/models/mult_vae.py",
            "keras_aerec/layers/sampling.py",
            "keras_aerec/experiments/recipes.py",
            "keras_aerec/experiments/runner.py",
        ],
    },
    "svae": {
        "title": "SVAE",
        "code": [
            "keras_aerec/models/svae.py",
            "keras_aerec/layers/sampling.py",
            "keras_aerec/data/sequences.py",
            "keras_aerec/experiments/recipes.py",
            "keras_aerec/experiments/runner.py",
            "keras_aerec/experiments/training.py",
        ],
    },
}
PROTOCOLS = {"liang": "Liang's protocol", "temporal": "the temporal protocol"}
PROTOCOL_LABELS = {"liang": "liang (strong generalization)", "temporal": "temporal"}


def parse_setting(text):
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"`--set` takes key=value. Received: {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def kl_weight_at(model, updates):
    """`Sampling.kl_weight()` of `model` after `updates` updates (the model's own annealing
    settings, so a model whose defaults differ from Mult-VAE's gets its own beta)."""
    cap, steps = model.anneal_cap, model.total_anneal_steps
    return cap if steps == 0 else min(cap, updates / steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--model", choices=sorted(MODELS), default="multvae")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="liang")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", required=True, help="what differs from the recipe")
    parser.add_argument("--set", type=parse_setting, action="append", default=[])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--patience", type=int)
    parser.add_argument("--lr-patience", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import keras

    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.experiments.recipes import MODELS as RECIPES
    from keras_aerec.experiments.report import save_figures, single_run_figure
    from keras_aerec.experiments.runner import (
        get_protocol,
        needs_timestamped_data,
        train_and_evaluate,
    )

    screened = MODELS[args.model]
    spec = get_protocol(args.protocol)
    recipe = RECIPES[args.model].for_protocol(args.protocol)
    schedule = {
        name: value
        for name, value in (
            ("batch_size", args.batch_size),
            ("epochs", args.epochs),
            ("patience", args.patience),
            ("lr_patience", args.lr_patience),
        )
        if value is not None
    }
    recipe = dataclasses.replace(recipe, defaults={**recipe.defaults, **dict(args.set)}, **schedule)
    try:
        data = load_movielens(
            "1m",
            data_dir=args.data_dir,
            require_timestamps=needs_timestamped_data(args.protocol, [args.model]),
        )
    except ValueError as error:  # a wrong --data-dir: one line, not a traceback
        parser.error(str(error))
    split = spec.split(recipe.kind, data, args.seed)
    keras.utils.set_random_seed(args.seed)
    model, result = train_and_evaluate(recipe, split, spec, verbose=0, seed=args.seed)

    validation = result.history["val_ndcg@100"]
    best = int(np.argmax(validation))
    updates_per_epoch = -(-split.train.shape[0] // recipe.batch_size)
    beta = kl_weight_at(model, best * updates_per_epoch)
    figure = single_run_figure(
        f"{screened['title']} under {PROTOCOLS[args.protocol]}",
        f"{screened['title']}, {args.protocol} recipe + {args.label}",
        "python benchmarks/bench_screen.py"
        + f" --model {args.model} --protocol {args.protocol} --label "
        + repr(args.label)
        + "".join(f" --set {key}={value!r}" for key, value in args.set)
        + "".join(f" --{key.replace('_', '-')} {value}" for key, value in schedule.items())
        + f" --seed {args.seed}",
        screened["code"],
        {
            "val_ndcg@100": validation[best],
            "test_ndcg@100": result.metrics["ndcg@100"],
            "best_epoch": best + 1,
            "epochs_run": result.epochs_run,
            "beta_at_best": beta,
            "seconds": result.seconds,
        },
        load=result.load,
        protocol=PROTOCOL_LABELS[args.protocol],
        seeds=[args.seed],
        notes=f"hyperparameters {result.hyperparameters}, batch {recipe.batch_size}, "
        f"patience {recipe.patience}, lr_patience {recipe.lr_patience}; chosen on "
        "validation, test only recorded",
    )
    # Screens run one process per seed side by side: the lock keeps two finishing at
    # once from each reading the file before the other's figure is in it.
    name = f"{args.model}_{args.protocol}"
    with open(os.path.join(tempfile.gettempdir(), f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        save_figures(
            os.path.join(RESULTS, f"{name}.json"),
            f"{screened['title']} settings under {PROTOCOLS[args.protocol]} (ML-1M)",
            [figure],
            replaces=lambda old: old["what"] == figure["what"] and old["seeds"] == figure["seeds"],
        )
    every = 1 if len(validation) <= 30 else 10
    curve = " ".join(f"{value:.4f}" for value in validation[every - 1 :: every])
    print(
        f"{args.label}: val {validation[best]:.4f} at epoch {best + 1} (beta {beta:.3f}), "
        f"test {result.metrics['ndcg@100']:.4f}, {result.epochs_run} epochs, "
        f"{result.seconds:.0f} s, load {result.load}; validation by epoch (every {every}): {curve}"
    )


if __name__ == "__main__":
    main()
