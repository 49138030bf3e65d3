"""Where SVAE's time goes in the article table, and what the batching and the loss change.

Cases (each in a child process under the backend, on the article protocol's SVAE split of
ML-1M, seed 0: the temporal split of the timestamped users, 2,401 training users, batches
of 16, max_len 200; the recipe's model and optimizer; `--epochs` epochs without
validation):

* `before`: batch lengths rounded to 16, sorted within windows of 10 batches, and the
  next-k NLL through `log_softmax` + `take_along_axis` (the formulation before this
  benchmark, patched in here);
* `loss`: the same batches, the current NLL (picked logits minus one logsumexp);
* `after`: the current NLL and the article recipe's batching (`SEQUENCE_LENGTH_MULTIPLE`,
  `SEQUENCE_BUCKET_SIZE`).

Each gives `first_epoch_s` (every batch shape compiles in it on JAX), `epoch_s` (median of
the later epochs), the number of batch shapes and the padded positions per real one.
Run the cases in one invocation: the ratios compare runs under the same load.

`--summarise BEFORE AFTER` adds one figure from two `keras-aerec benchmark --models svae`
output folders (their `results.json`): SVAE's wall time and test NDCG@100 before / after.

Usage:
    nice -n 5 python benchmarks/bench_svae_speed.py --epochs 2
    python benchmarks/bench_svae_speed.py --summarise \\
        benchmarks/results/svae_speed_before_seed0 benchmarks/results/svae_speed_after_seed0
"""

import argparse
import json
import os
import statistics
import time

from child_runs import run_child

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "svae_speed.json")
TITLE = "SVAE speed in the article table"
CASES = ("before", "loss", "after")
DEFAULT_CHANGE = "the batching and loss changes"
CODE = [
    "keras_aerec/models/svae.py",
    "keras_aerec/data/sequences.py",
    "keras_aerec/experiments/training.py",
    "keras_aerec/experiments/recipes.py",
]


def log_softmax_nll(targets, logits, sample_weight=None, reduction="mean"):
    """The next-k NLL before the logsumexp form (mean reduction, no weights)."""
    from keras import ops

    del sample_weight, reduction
    targets = ops.cast(targets, "int32")
    log_probs = ops.log_softmax(logits, axis=-1)
    picked = ops.take_along_axis(log_probs, ops.maximum(targets - 1, 0), axis=-1)
    present = ops.cast(ops.greater(targets, 0), log_probs.dtype)
    per_position = -ops.sum(picked * present, axis=-1)
    weight = ops.cast(ops.greater(ops.max(targets, axis=-1), 0), log_probs.dtype)
    return ops.sum(per_position * weight) / ops.maximum(ops.sum(weight), 1e-12)


def child(case, data_dir, epochs):
    import keras

    import keras_aerec.models.svae as svae_module
    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.experiments import training
    from keras_aerec.experiments.recipes import MODELS
    from keras_aerec.experiments.runner import get_protocol

    if case == "before":
        svae_module.next_k_nll = log_softmax_nll
    options = {
        "length_multiple": training.SEQUENCE_LENGTH_MULTIPLE,
        "bucket_size": training.SEQUENCE_BUCKET_SIZE,
    }
    if case in ("before", "loss"):
        options = {"length_multiple": 16, "bucket_size": 10}
    spec = get_protocol("article")
    recipe = MODELS["svae"].for_protocol("article")
    data = load_movielens("1m", data_dir=data_dir, require_timestamps=True)
    split = spec.split(recipe.kind, data, seed=0)
    keras.utils.set_random_seed(0)
    model = recipe.build(split, recipe.hyperparameters(False))
    batches = training.training_batches(
        model, split.train_timestamps, recipe.kind, recipe.batch_size, seed=0, **options
    )
    shapes, cells, wall, cpu, losses = set(), 0, [], [], []
    for epoch in range(epochs):
        lengths = [batches[i][0].shape[1] for i in range(len(batches))]
        shapes.update(lengths)
        cells += recipe.batch_size * sum(lengths)
        start, start_cpu = time.perf_counter(), time.process_time()
        history = model.fit(batches, initial_epoch=epoch, epochs=epoch + 1, verbose=0)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        losses.append(history.history["loss"][-1])
    return {
        "load": os.getloadavg()[0],
        "first_epoch_s": wall[0],
        "epoch_s": wall[1:],
        "epoch_cpu_s": cpu[1:],
        "losses": losses,
        "shapes": len(shapes),
        "padding": cells / epochs / float(batches.lengths.sum()),
        "options": options,
    }


def summary_figure(before_dir, after_dir, run_info, change=DEFAULT_CHANGE):
    from keras_aerec.experiments.report import single_run_figure

    def svae(directory):
        with open(os.path.join(directory, "results.json")) as handle:
            results = json.load(handle)["results"]
        return next(result for result in results if result["model"] == "svae")

    before, after = svae(before_dir), svae(after_dir)
    metrics = {
        "before_s": before["seconds"],
        "after_s": after["seconds"],
        "speedup": before["seconds"] / after["seconds"],
        "before_ndcg@100": before["metrics"]["ndcg@100"],
        "after_ndcg@100": after["metrics"]["ndcg@100"],
    }
    return single_run_figure(
        "SVAE speed",
        "SVAE in the article table (ML-1M, seed 0): wall time and test NDCG@100, "
        f"before / after {change} ({os.path.basename(after_dir)})",
        f"python benchmarks/bench_svae_speed.py --summarise {before_dir} {after_dir}"
        + ("" if change == DEFAULT_CHANGE else f" --change {change!r}"),
        CODE,
        metrics,
        load=max(before["load"], after["load"]),
        notes="the two `keras-aerec benchmark --models svae --seeds 0` runs; before = the "
        "code before the change, after = with it; loads "
        f"{before['load']:.2f} / {after['load']:.2f}; best epochs {before['best_epoch']} / "
        f"{after['best_epoch']}",
        run_info=run_info,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--summarise", nargs=2, metavar=("BEFORE_DIR", "AFTER_DIR"))
    parser.add_argument(
        "--change",
        default=DEFAULT_CHANGE,
        help="what differs between BEFORE_DIR and AFTER_DIR (the figure's label)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data_dir, args.epochs)))
        return
    from keras_aerec.experiments.report import provenance, save_figures, single_run_figure

    run_info = provenance()
    if args.summarise:
        figure = summary_figure(
            *args.summarise, {**run_info, "backend": args.backend}, change=args.change
        )
        print(json.dumps(figure["metrics"]))
        save_figures(
            RESULTS,
            TITLE,
            [figure],
            replaces=lambda old: (
                old["what"] == figure["what"] and old["backend"] == figure["backend"]
            ),
        )
        return
    figures = []
    for case in args.cases:
        arguments = ["--child", case, "--data-dir", args.data_dir, "--epochs", args.epochs]
        result = run_child(__file__, arguments, args.backend, case)
        metrics = {
            "first_epoch_s": result["first_epoch_s"],
            "epoch_s": statistics.median(result["epoch_s"]),
            "epoch_cpu_s": statistics.median(result["epoch_cpu_s"]),
            "batch_shapes": result["shapes"],
            "padded_per_real_position": result["padding"],
        }
        print(case, json.dumps(metrics), flush=True)
        figures.append(
            single_run_figure(
                "SVAE speed",
                f"SVAE training epochs, case {case!r} ({result['options']})",
                "nice -n 5 python benchmarks/bench_svae_speed.py "
                f"--epochs {args.epochs} --backend {args.backend}",
                CODE,
                metrics,
                load=result["load"],
                notes=f"{args.epochs} epochs without validation; epoch_s: median after "
                f"the first; losses {[round(loss, 4) for loss in result['losses']]}; the "
                "cases ran one after the other in one invocation",
                run_info=run_info,
                backend=args.backend,
            )
        )
        # Saved after every case: a run stopped early keeps what it measured.
        save_figures(
            RESULTS,
            TITLE,
            figures,
            replaces=lambda old: (
                old["what"].startswith("SVAE training epochs") and old["backend"] == args.backend
            ),
        )


if __name__ == "__main__":
    main()
