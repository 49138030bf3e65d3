"""Peak memory and epoch time on a synthetic catalogue of 100,000 items x 200,000 users.

Each model runs in its own child process, which reports its peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) and the wall time of its training steps.
A full epoch (400 steps of 500 users) takes an hour or more on 2 cores, so the script
times `--steps` steps after `--warmup` (compilation) steps and extrapolates:
`epoch_s = mean step time x steps per epoch`. Batches are densified on the fly by
`RowBatches` (500 x 100,000 float32 = 200 MB per batch); the full matrix never is.

EASE cannot fit 100,000 items (`num_items**2 * 12` bytes); the script records its
refusal and fits `max_items` most popular items instead.

Usage:
    python benchmarks/large_catalogue.py [--steps 6] [--warmup 2] [--models ...]
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

NUM_USERS, NUM_ITEMS = 200_000, 100_000
# Mult-VAE: 500 (Liang et al.); DeepRec: 128 (Kuchaiev and Ginsburg); CDAE: as Mult-VAE.
BATCH_SIZES = {"MultVAE": 500, "CDAE": 500, "DeepRec": 128, "EASE": 500}


def power_law_matrix(num_users, num_items, user_counts, exponent=1.0, seed=0):
    """Binary CSR (users x items): item popularity ~ rank**-exponent, in a shuffled order.

    `user_counts(rng, num_users)` draws how many items each user samples (duplicates are
    merged). Built from sampled (user, item) pairs only: memory is O(interactions), never
    users x items (`keras_aerec.data.synthetic` scores every item for every user).
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, num_items + 1) ** exponent
    popularity = rng.permutation(popularity / popularity.sum())
    counts = user_counts(rng, num_users)
    users = np.repeat(np.arange(num_users, dtype="int32"), counts)
    items = rng.choice(num_items, size=users.size, p=popularity).astype("int32")
    matrix = sp.csr_matrix(
        (np.ones(users.size, dtype="float32"), (users, items)), shape=(num_users, num_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def synthetic_interactions(num_users=NUM_USERS, num_items=NUM_ITEMS, mean_items=30, seed=0):
    """Implicit CSR (users x items), Zipf-like item popularity, log-normal user activity."""

    def user_counts(rng, size):
        counts = rng.lognormal(np.log(mean_items) - 0.5, 1.0, size)
        return np.minimum(np.maximum(1, counts).astype(int), 2_000)

    return power_law_matrix(num_users, num_items, user_counts, exponent=0.8, seed=seed)


def _peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(name, steps, warmup, batch_size, max_items):
    import keras

    from keras_aerec.data.batching import RowBatches
    from keras_aerec.models import CDAE, EASE, DeepRec, MultVAE

    start = time.perf_counter()
    x = synthetic_interactions()
    result = {
        "model": name,
        "users": x.shape[0],
        "items": x.shape[1],
        "interactions": int(x.nnz),
        "data_s": round(time.perf_counter() - start, 1),
        "backend": keras.backend.backend(),
    }
    if name == "EASE":
        try:
            EASE(num_items=NUM_ITEMS)
        except ValueError as error:
            result["refusal"] = str(error)
        start = time.perf_counter()
        model = EASE(num_items=NUM_ITEMS, max_items=max_items).fit(x)
        result["max_items"] = max_items
        result["fit_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        model.score(x[:2000])
        result["score_2000_users_s"] = round(time.perf_counter() - start, 2)
        result["peak_rss_bytes"] = _peak_rss_bytes()
        print(json.dumps(result))
        return
    builders = {
        "MultVAE": lambda: MultVAE(NUM_ITEMS),  # paper: [I-600-200-600-I]
        "CDAE": lambda: CDAE(NUM_USERS, NUM_ITEMS),  # paper: 50 hidden units
        "DeepRec": lambda: DeepRec(NUM_ITEMS, hidden_units=(512, 512, 1024)),  # paper sizes
    }
    model = builders[name]()
    model.compile(optimizer="adam")
    if name == "DeepRec":  # a rating model: the interactions play the ratings
        batches = RowBatches(x, y="x", batch_size=batch_size, seed=0)
    else:
        batches = RowBatches(x, batch_size=batch_size, seed=0, user_index=name == "CDAE")
    times = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self._start)

    model.fit(batches, epochs=1, steps_per_epoch=warmup + steps, callbacks=[StepTimes()], verbose=0)
    step_s = float(np.mean(times[warmup:]))
    result.update(
        params=int(model.count_params()),
        batch_size=batch_size,
        steps_per_epoch=len(batches),
        timed_steps=steps,
        step_s=round(step_s, 2),
        epoch_s_extrapolated=round(step_s * len(batches)),
        peak_rss_bytes=_peak_rss_bytes(),
    )
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["MultVAE", "CDAE", "DeepRec", "EASE"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--batch-size", type=int, help="rows per batch (default: the papers', see BATCH_SIZES)"
    )
    parser.add_argument("--max-items", type=int, default=10_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.steps, args.warmup, args.batch_size, args.max_items)
        return
    print(f"# {platform.node()} {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    for name in args.models:
        command = [sys.executable, __file__, "--child", name, "--steps", str(args.steps)]
        batch_size = args.batch_size or BATCH_SIZES[name]
        command += ["--warmup", str(args.warmup), "--batch-size", str(batch_size)]
        command += ["--max-items", str(args.max_items)]
        start = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode:
            print(json.dumps({"model": name, "error": completed.stderr[-2000:]}))
            continue
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        result["child_wall_s"] = round(time.perf_counter() - start, 1)
        result["peak_rss_gib"] = round(result["peak_rss_bytes"] / 2**30, 2)
        result["load_average"] = [round(v, 2) for v in os.getloadavg()]
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
