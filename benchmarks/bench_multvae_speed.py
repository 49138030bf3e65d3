"""Mult-VAE epoch on ML-1M per backend, and whether a sparse first layer would pay.

For each backend (one child process each), on the Liang split of ML-1M (strong
generalization, 600/600 held-out users, seed 0):

* `epoch_s`: median epoch time of `MultVAE` (I-600-200-600-I) trained with
  `RowBatches(batch_size=500)`, epochs 2..`--epochs` (the first compiles);
* `first_layer_dense_ms` / `first_layer_sparse_ms` / `first_layer_native_ms`: forward +
  backward of the first layer alone on one batch of 500 users (`tanh(x @ W)` and the
  gradient of W), dense as today against two sparse reads: gather the rows of W the
  batch's interactions name, weight them and segment-sum per user (`sparse`), and
  `keras.ops.matmul` of the backend's own sparse tensor with W (`native`: a
  `tf.SparseTensor` on TensorFlow, a `jax.experimental.sparse.BCOO` on JAX; Keras has no
  torch sparse). Nonzeros are padded to a fixed bucket so that compiled backends do not
  retrace; compiled where the backend compiles (tf.function, jax.jit); the three are
  timed in turn, `--repeats` rounds, medians. The saving per epoch is at most the
  difference times the steps.

The same model is also trained under Keras' `mixed_bfloat16` policy, and the epoch's
matrix products are timed alone (`matmul_floor_s`): the arithmetic floor of an epoch.

Usage:
    nice -n 5 python benchmarks/bench_multvae_speed.py [--data-dir ../shared/data]
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
from child_runs import run_child

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "multvae_speed.json")
CODE = [
    "keras_aerec/models/mult_vae.py",
    "keras_aerec/data/batching.py",
    "keras_aerec/models/recommender.py",
    "keras_aerec/allocator.py",
]
BATCH, HIDDEN = 500, 600


def load_train(data_dir):
    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.data.splits import strong_generalization

    data = load_movielens("1m", data_dir=data_dir).to_implicit(3.0).filter_min_interactions(users=5)
    split = strong_generalization(data, num_heldout_users=600, num_validation_users=600, seed=0)
    return split.train


def epoch_times(train, epochs, dtype_policy="float32"):
    import keras

    keras.config.set_dtype_policy(dtype_policy)

    from keras_aerec.data.batching import RowBatches
    from keras_aerec.models.mult_vae import MultVAE

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times = []
    model = MultVAE(train.shape[1], seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    batches = RowBatches(train, batch_size=BATCH, seed=0)
    model.fit(batches, epochs=epochs, verbose=0, callbacks=[Timer()])
    keras.config.set_dtype_policy("float32")
    return times[1:], [
        tuple(layer.kernel.shape) for layer in model.layers if hasattr(layer, "kernel")
    ]


def matmul_floor_s(kernel_shapes, steps, repeats, dtype):
    """An epoch's matrix products alone: per step, each dense layer's forward product and
    its two gradient products (none for the input, which has no gradient), timed with
    `keras.ops.matmul` in `dtype` (what the layers compute in), medians, times `steps`."""
    import keras

    rng = np.random.default_rng(0)

    def tensor(*shape):
        return keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"), dtype=dtype)

    products = []
    for i, (fan_in, fan_out) in enumerate(kernel_shapes):
        products.append((tensor(BATCH, fan_in), tensor(fan_in, fan_out)))  # forward
        products.append((tensor(fan_in, BATCH), tensor(BATCH, fan_out)))  # kernel gradient
        if i > 0:
            products.append((tensor(BATCH, fan_out), tensor(fan_out, fan_in)))  # input gradient

    def first_entry(a, b):  # waits for the product; numpy has no bfloat16
        return keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.matmul(a, b)[0, 0], "float32"))

    total = 0.0
    for a, b in products:
        first_entry(a, b)  # compiles / warms up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            first_entry(a, b)
            times.append(time.perf_counter() - start)
        total += statistics.median(times)
    return total * steps


def first_layer_functions(backend, num_items):
    """(dense, sparse, native or None, to_tensor): each step returns the gradient of
    sum(tanh(first layer)) with respect to W."""
    import keras

    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def dense(w, x):
            with tf.GradientTape() as tape:
                tape.watch(w)
                loss = tf.reduce_sum(tf.tanh(x @ w))
            return tape.gradient(loss, w)

        @tf.function
        def sparse(w, items, users, values):
            with tf.GradientTape() as tape:
                tape.watch(w)
                rows = tf.gather(w, items) * values[:, None]
                loss = tf.reduce_sum(tf.tanh(tf.math.unsorted_segment_sum(rows, users, BATCH)))
            # Dense, as the optimizer's update uses it.
            return tf.convert_to_tensor(tape.gradient(loss, w))

        @tf.function
        def native(w, items, users, values):
            x = tf.SparseTensor(
                tf.cast(tf.stack([users, items], axis=1), "int64"), values, (BATCH, num_items)
            )
            with tf.GradientTape() as tape:
                tape.watch(w)
                loss = tf.reduce_sum(tf.tanh(keras.ops.matmul(x, w)))
            return tf.convert_to_tensor(tape.gradient(loss, w))

        return dense, sparse, native, tf.convert_to_tensor
    if backend == "jax":
        import jax
        import jax.experimental.sparse as jax_sparse
        import jax.numpy as jnp

        dense = jax.jit(jax.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w))))

        def sparse_loss(w, items, users, values):
            rows = w[items] * values[:, None]
            return jnp.sum(jnp.tanh(jax.ops.segment_sum(rows, users, BATCH)))

        def native_loss(w, items, users, values):
            indices = jnp.stack([users, items], axis=1)
            x = jax_sparse.BCOO((values, indices), shape=(BATCH, num_items))
            return jnp.sum(jnp.tanh(keras.ops.matmul(x, w)))

        return dense, jax.jit(jax.grad(sparse_loss)), jax.jit(jax.grad(native_loss)), jnp.asarray
    import torch

    def dense_torch(w, x):
        w = w.detach().requires_grad_()
        torch.tanh(x @ w).sum().backward()
        return w.grad

    def sparse_torch(w, items, users, values):
        w = w.detach().requires_grad_()
        rows = w[items] * values[:, None]
        out = torch.zeros(BATCH, w.shape[1]).index_add_(0, users, rows)
        torch.tanh(out).sum().backward()
        return w.grad

    return dense_torch, sparse_torch, None, torch.as_tensor


def first_layer_ms(backend, train, repeats):
    import scipy.sparse as sp

    num_items = train.shape[1]
    rng = np.random.default_rng(0)
    batch = sp.csr_matrix(train[rng.choice(train.shape[0], BATCH, replace=False)])
    bucket = -(-batch.nnz // 8192) * 8192  # padded: the extra entries have value 0
    items = np.zeros(bucket, dtype="int32")
    users = np.zeros(bucket, dtype="int32")
    values = np.zeros(bucket, dtype="float32")
    items[: batch.nnz] = batch.indices
    users[: batch.nnz] = np.repeat(np.arange(BATCH), np.diff(batch.indptr))
    values[: batch.nnz] = 1.0
    dense, sparse, native, tensor = first_layer_functions(backend, num_items)
    w = tensor(rng.normal(size=(num_items, HIDDEN)).astype("float32") * 0.01)
    x = tensor(batch.toarray().astype("float32"))
    sparse_args = (tensor(items), tensor(users), tensor(values))
    if backend == "torch":
        sparse_args = (sparse_args[0].long(), sparse_args[1].long(), sparse_args[2])
    steps = {"dense": (dense, (w, x)), "sparse": (sparse, (w, *sparse_args))}
    if native is not None:
        steps["native"] = (native, (w, *sparse_args))
    expected = np.asarray(dense(w, x))
    for function, args in steps.values():
        np.testing.assert_allclose(np.asarray(function(*args)), expected, rtol=1e-4, atol=1e-4)
    times = {name: [] for name in steps}
    for _ in range(repeats):  # in turn, so that a change of load hits every variant
        for name, (function, args) in steps.items():
            start = time.perf_counter()
            np.asarray(function(*args))[0, 0]
            times[name].append(time.perf_counter() - start)
    milliseconds = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    return milliseconds, batch.nnz, bucket


def child(data_dir, epochs, repeats):
    import keras

    train = load_train(data_dir)
    backend = keras.backend.backend()
    load = os.getloadavg()[0]
    steps = -(-train.shape[0] // BATCH)
    times, kernel_shapes = epoch_times(train, epochs)
    bf16_times, _ = epoch_times(train, epochs, "mixed_bfloat16")
    milliseconds, nnz, bucket = first_layer_ms(backend, train, repeats)
    print(
        json.dumps(
            {
                "backend": backend,
                "load": load,
                "epoch_s": times,
                "epoch_bf16_s": bf16_times,
                "floor_s": matmul_floor_s(kernel_shapes, steps, repeats, "float32"),
                "floor_bf16_s": matmul_floor_s(kernel_shapes, steps, repeats, "bfloat16"),
                "steps": steps,
                "first_layer_ms": milliseconds,
                "nnz": nnz,
                "bucket": bucket,
            }
        )
    )


def median_sd(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.median(values), 3), "sd": round(sd, 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.data_dir, args.epochs, args.repeats)
        return
    from keras_aerec.experiments.report import provenance, save_figures

    run_info = provenance()
    figures = []
    for backend in args.backends:
        arguments = ["--child", "--data-dir", args.data_dir, "--epochs", args.epochs]
        arguments += ["--repeats", args.repeats]
        result = run_child(__file__, arguments, backend, "Mult-VAE speed")
        layer_ms = result["first_layer_ms"]
        best = min(layer_ms, key=layer_ms.get)
        saving = (layer_ms["dense"] - layer_ms[best]) * result["steps"] / 1e3
        figures.append(
            {
                "section": "Mult-VAE speed",
                "what": f"Mult-VAE epoch (batch {BATCH}) and its first layer, dense vs sparse read",
                "command": f"python benchmarks/bench_multvae_speed.py --backends {backend}",
                "code": CODE,
                **run_info,
                "load": round(result["load"], 2),
                "backend": backend,  # the child's, not this process's
                "dataset": "ml-1m",
                "protocol": "strong_generalization",
                "seeds": [0],
                "metrics": {
                    "epoch_s": median_sd(result["epoch_s"]),
                    "epoch_mixed_bfloat16_s": median_sd(result["epoch_bf16_s"]),
                    "matmul_floor_s": {"mean": round(result["floor_s"], 3), "sd": 0.0},
                    "matmul_floor_bfloat16_s": {
                        "mean": round(result["floor_bf16_s"], 3),
                        "sd": 0.0,
                    },
                    **{
                        f"first_layer_{name}_ms": {"mean": round(value, 2), "sd": 0.0}
                        for name, value in layer_ms.items()
                    },
                    "epoch_saving_bound_s": {"mean": round(saving, 3), "sd": 0.0},
                },
                "published": {"value": None, "source": None},
                "notes": f"epochs 2-{args.epochs} median (float32, then a new model under "
                "Keras' mixed_bfloat16 policy); matmul floor: the epoch's matrix products "
                "alone (forward and gradients, `keras.ops.matmul`); first layer: one batch, "
                f"{result['nnz']:,} nonzeros padded to {result['bucket']:,}, median of "
                f"{args.repeats} in turn; saving bound = (dense - fastest) x {result['steps']} steps",
            }
        )
        print(backend, json.dumps(figures[-1]["metrics"]), flush=True)
    save_figures(
        RESULTS,
        "Mult-VAE speed on ML-1M",
        figures,
        replaces=lambda old: old.get("backend") in args.backends,
    )


if __name__ == "__main__":
    main()
