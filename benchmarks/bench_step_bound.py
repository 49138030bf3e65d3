"""Mult-VAE epoch on ML-1M (JAX) with and without `StepByStep`, the bound on steps in flight.

Alternating runs in one process (6 models, 5 epochs each, the first epoch of each dropped),
Liang split's training users, batch 500; reports the median epoch of each and their ratio.

Usage:
    KERAS_BACKEND=jax python benchmarks/bench_step_bound.py [--data-dir ../shared/data]
"""

import argparse
import os
import statistics

import keras
from bench_multvae_speed import load_train
from timing import EpochTimes

from keras_aerec.data.batching import RowBatches
from keras_aerec.experiments.report import provenance, save_figures
from keras_aerec.models import recommender
from keras_aerec.models.mult_vae import MultVAE

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "step_bound.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    train = load_train(args.data_dir)
    bounded = recommender.with_step_by_step
    times = {"with": [], "without": []}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for variant in times:
            recommender.with_step_by_step = bounded if variant == "with" else list
            model = MultVAE(train.shape[1], seed=0)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
            timer = EpochTimes(async_safe=True)  # leaves the loop asynchronous
            model.fit(
                RowBatches(train, batch_size=500, seed=0), epochs=5, verbose=0, callbacks=[timer]
            )
            times[variant] += timer.seconds[1:]
    recommender.with_step_by_step = bounded
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    print(medians, "ratio", medians["with"] / medians["without"])
    figure = {
        **provenance(),
        "section": "Mult-VAE speed",
        "what": "Mult-VAE epoch on ML-1M, batch 500, with vs without StepByStep (JAX)",
        "command": "KERAS_BACKEND=jax python benchmarks/bench_step_bound.py",
        "code": ["keras_aerec/models/recommender.py", "keras_aerec/models/mult_vae.py"],
        "load": round(load, 2),
        "dataset": "ml-1m",
        "protocol": "liang (training users)",
        "seeds": [0],
        "metrics": {
            "epoch_s_with": {"mean": round(medians["with"], 3), "sd": 0.0},
            "epoch_s_without": {"mean": round(medians["without"], 3), "sd": 0.0},
            "ratio": {"mean": round(medians["with"] / medians["without"], 3), "sd": 0.0},
        },
        "published": {"value": None, "source": None},
        "notes": f"medians of {len(times['with'])} epochs each, alternating runs",
    }
    save_figures(RESULTS, "Bounded JAX dispatch", [figure])


if __name__ == "__main__":
    main()
