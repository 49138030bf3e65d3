"""Torch training steps with 1 and 2 intra-op threads on a loaded 2-core machine.

On the article protocol's rating split of ML-1M (seed 0), one model per recipe takes 10
training steps with `torch.set_num_threads(1)`, then 10 with 2 (the default on 2 cores),
for `--rounds` rounds; `step_s_threads_N` are the medians. When other processes keep the
cores busy, torch's OpenMP threads wait on each other at every operation; one thread
does not. Run it again with `OMP_WAIT_POLICY=PASSIVE` in the environment (read when torch
loads, so not settable from inside) to time the threads sleeping instead of spinning; the
policy is part of each figure's `what`.

Usage:
    KERAS_BACKEND=torch nice -n 5 python benchmarks/bench_torch_threads.py
    OMP_WAIT_POLICY=PASSIVE KERAS_BACKEND=torch nice -n 5 python benchmarks/bench_torch_threads.py
"""

import argparse
import os
import statistics
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "torch_threads.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--models", nargs="+", default=["deeprec", "i-autorec"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import keras
    import torch

    if keras.backend.backend() != "torch":
        raise SystemExit("Run with KERAS_BACKEND=torch.")
    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.experiments.recipes import MODELS
    from keras_aerec.experiments.report import provenance, save_figures
    from keras_aerec.experiments.runner import get_protocol
    from keras_aerec.experiments.training import training_batches

    run_info = provenance()
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    split = get_protocol("article").split("rating", load_movielens("1m", args.data_dir), 0)
    figures = []
    for name in args.models:
        recipe = MODELS[name].for_protocol("article")
        keras.utils.set_random_seed(0)
        model = recipe.build(split, recipe.hyperparameters(False))
        batches = training_batches(model, split.train, recipe.kind, recipe.batch_size, seed=0)
        model.train_on_batch(*batches[0])
        steps = {1: [], 2: []}
        loads = []
        for _ in range(args.rounds):
            for threads in steps:  # in turn, so that a change of load hits both
                torch.set_num_threads(threads)
                start = time.perf_counter()
                for index in range(1, 11):
                    model.train_on_batch(*batches[index])
                steps[threads].append((time.perf_counter() - start) / 10)
            loads.append(os.getloadavg()[0])
        metrics = {
            f"step_s_threads_{threads}": {
                "mean": round(statistics.median(values), 4),
                "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            }
            for threads, values in steps.items()
        }
        figures.append(
            {
                "section": "Article table speed",
                "what": f"{name}: torch training step with 1 vs 2 intra-op threads, "
                f"OMP_WAIT_POLICY {policy}",
                "command": f"OMP_WAIT_POLICY={policy} python benchmarks/bench_torch_threads.py "
                f"--models {name}",
                "code": ["keras_aerec/experiments/recipes.py"],
                **run_info,
                "load": round(statistics.median(loads), 2),
                "dataset": "ml-1m",
                "protocol": "article",
                "seeds": [0],
                "metrics": metrics,
                "published": {"value": None, "source": None},
                "notes": f"batch {recipe.batch_size}; medians of {args.rounds} rounds of 10 "
                "steps, 1 and 2 threads in turn; the machine loaded by other runs",
            }
        )
        print(name, metrics, flush=True)
    measured = {figure["what"] for figure in figures}
    save_figures(
        RESULTS,
        "torch threads on a loaded machine",
        figures,
        replaces=lambda old: old.get("what") in measured,
    )


if __name__ == "__main__":
    main()
