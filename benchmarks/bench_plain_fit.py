"""`model.fit(csr_matrix)` vs `model.fit(RowBatches(...))`: the plain Keras call's cost.

Mult-VAE (I-600-200-600-I) on the ML-1M users x items matrix (ratings > 3), batches of
500 users. Both calls build the same `RowBatches`; the plain one adds the checks and the
wrapping. Runs alternate (RowBatches, plain, RowBatches, plain, ...) in one process so
that both see the same load; each run trains a fresh model for `--epochs` epochs and its
first epoch (tracing / compilation) is left out. Writes benchmarks/results/plain_fit.json.

    python benchmarks/bench_plain_fit.py --data-dir ../shared/data
"""

import argparse
import os

import numpy as np
from timing import EpochTimes

from keras_aerec.data.batching import RowBatches
from keras_aerec.data.movielens import load_movielens
from keras_aerec.experiments.report import provenance, save_figures
from keras_aerec.models.mult_vae import MultVAE

RESULTS = os.path.join(os.path.dirname(__file__), "results", "plain_fit.json")
BATCH_SIZE = 500


def epoch_seconds(train, plain: bool, epochs: int) -> list[float]:
    model = MultVAE(num_items=train.shape[1], seed=0)
    model.compile(optimizer="adam")
    timer = EpochTimes()
    if plain:
        model.fit(train, batch_size=BATCH_SIZE, epochs=epochs, callbacks=[timer], verbose=0)
    else:
        batches = RowBatches(train, batch_size=BATCH_SIZE, seed=0)
        model.fit(batches, epochs=epochs, callbacks=[timer], verbose=0)
    return timer.seconds[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train = load_movielens("1m", args.data_dir).to_implicit(3.0).matrix
    seconds = {"row_batches": [], "plain": []}
    ratios = []
    for _ in range(args.repeats):
        row_batches = epoch_seconds(train, plain=False, epochs=args.epochs)
        plain = epoch_seconds(train, plain=True, epochs=args.epochs)
        seconds["row_batches"] += row_batches
        seconds["plain"] += plain
        ratios.append(float(np.median(plain) / np.median(row_batches)))

    def summary(values):
        return {
            "mean": float(np.median(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        }

    figure = {
        "section": "Plain Keras fit",
        "what": (
            "Mult-VAE epoch on ML-1M (6,040 x 3,706, ratings > 3), batch 500: "
            "model.fit(csr) vs model.fit(RowBatches(csr)); 'mean' is the median"
        ),
        "command": f"python benchmarks/bench_plain_fit.py --epochs {args.epochs} "
        f"--repeats {args.repeats}",
        "code": ["keras_aerec/models/recommender.py", "keras_aerec/data/batching.py"],
        **provenance(),
        "load": round(os.getloadavg()[0], 1),
        "dataset": "ml-1m",
        "protocol": "none (training speed)",
        "seeds": [0],
        "metrics": {
            "row_batches_epoch_s": summary(seconds["row_batches"]),
            "plain_fit_epoch_s": summary(seconds["plain"]),
            "plain_over_row_batches": summary(ratios),
        },
        "published": {"value": None, "source": None},
        "notes": f"{args.repeats} alternating pairs of runs, {args.epochs - 1} timed epochs each",
    }
    save_figures(
        RESULTS,
        "Plain Keras fit on a CSR matrix",
        [figure],
        replaces=lambda f: f["backend"] == figure["backend"],
    )


if __name__ == "__main__":
    main()
