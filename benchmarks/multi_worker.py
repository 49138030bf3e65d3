"""Multi-worker data-parallel training: two TensorFlow worker processes on 127.0.0.1.

The parent picks two free ports and starts two workers, each with its own `TF_CONFIG`:

    {"cluster": {"worker": ["127.0.0.1:PORT0", "127.0.0.1:PORT1"]},
     "task": {"type": "worker", "index": I}}

Each worker builds, compiles and fits a small Mult-DAE inside
`keras_aerec.distribute.data_parallel("multi-worker")` (`MultiWorkerMirroredStrategy`,
one CPU replica per worker) on the same seeded synthetic data, and prints its per-epoch
losses; the parent also runs the same training in one process without a strategy and
prints the three runs. Every worker sees every batch; the strategy splits each global
batch between the workers and all-reduces the gradients, so the losses agree with the
single-process run up to float32 summation order.

Usage:
    python benchmarks/multi_worker.py [--epochs 3]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

EPOCHS, BATCH_SIZE, NUM_USERS, NUM_ITEMS = 3, 64, 512, 200


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train(epochs, strategy):
    import contextlib

    import keras
    import numpy as np
    import scipy.sparse as sp

    from keras_aerec.data.batching import RowBatches
    from keras_aerec.distribute import data_parallel
    from keras_aerec.models import MultDAE

    rng = np.random.default_rng(0)
    x = sp.random(
        NUM_USERS, NUM_ITEMS, density=0.05, format="csr", dtype="float32", random_state=rng
    )
    x.data[:] = 1.0
    context = contextlib.nullcontext() if strategy is None else data_parallel(strategy)
    start = time.perf_counter()
    with context as distribute_strategy:
        keras.utils.set_random_seed(0)
        model = MultDAE(NUM_ITEMS, hidden_dims=(64,), latent_dim=32, dropout=0.0)
        model.compile(optimizer=keras.optimizers.Adam(0.01))
        batches = RowBatches(x, y="x", batch_size=BATCH_SIZE, seed=0)
        history = model.fit(batches, epochs=epochs, shuffle=False, verbose=0)
    return {
        "task": json.loads(os.environ.get("TF_CONFIG", "{}")).get("task"),
        "replicas": 1 if distribute_strategy is None else distribute_strategy.num_replicas_in_sync,
        "losses": [round(float(v), 6) for v in history.history["loss"]],
        "fit_s": round(time.perf_counter() - start, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_train(args.epochs, "multi-worker")), flush=True)
        return
    start = time.perf_counter()
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        command = [sys.executable, __file__, "--worker", "--epochs", str(args.epochs)]
        workers.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = []
    for index, worker in enumerate(workers):
        stdout, stderr = worker.communicate(timeout=300)
        if worker.returncode:
            print(f"worker {index} failed:\n{stderr[-20000:]}")
            sys.exit(1)
        results.append(json.loads(stdout.strip().splitlines()[-1]))
        print("worker", index, json.dumps(results[-1]))
    print("two workers, wall s", round(time.perf_counter() - start, 1))
    os.environ["KERAS_BACKEND"] = "tensorflow"  # keras is imported after this line
    single = _train(args.epochs, None)
    print("single process", json.dumps(single))
    print(json.dumps({"workers": results, "single": single}))


if __name__ == "__main__":
    main()
