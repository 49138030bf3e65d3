"""Whether `jit_compile=True` (torch.compile) pays for a rating model's training on torch.

On the article protocol's rating split of ML-1M (seed 0), the recipe's model is built twice
(same seed), compiled with `jit_compile=False` (Keras' torch default, eager) and `True`:

* `compile_s`: the first two training steps (torch.compile traces and compiles on the
  first);
* `step_s`: seconds per training step, median over `--rounds` rounds of 10 steps, the two
  models timed in turn.

`break_even_steps` = compile cost / saving per step. Not the table's training: no
validation, no learning-rate schedule.

Usage:
    KERAS_BACKEND=torch nice -n 5 python benchmarks/bench_torch_compile.py --models i-autorec
"""

import argparse
import os
import statistics
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "torch_compile.json")


def measure(name, data_dir, rounds):
    import keras

    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.experiments.recipes import MODELS
    from keras_aerec.experiments.runner import get_protocol
    from keras_aerec.experiments.training import training_batches

    recipe = MODELS[name].for_protocol("article")
    split = get_protocol("article").split(recipe.kind, load_movielens("1m", data_dir=data_dir), 0)
    runs = {}
    for jit_compile in (False, True):
        keras.utils.set_random_seed(0)
        model = recipe.build(split, recipe.hyperparameters(False))
        optimizer = model.optimizer.__class__.from_config(model.optimizer.get_config())
        model.compile(optimizer=optimizer, jit_compile=jit_compile)
        batches = training_batches(model, split.train, recipe.kind, recipe.batch_size, seed=0)
        start = time.perf_counter()
        for index in range(2):
            model.train_on_batch(*batches[index])
        compile_s = time.perf_counter() - start
        runs[jit_compile] = {
            "model": model,
            "batches": batches,
            "compile_s": compile_s,
            "steps": [],
        }
    for _ in range(rounds):
        for run in runs.values():
            start = time.perf_counter()
            for index in range(2, 12):
                run["model"].train_on_batch(*run["batches"][index % len(run["batches"])])
            run["steps"].append((time.perf_counter() - start) / 10)
    return {
        jit_compile: {"compile_s": run["compile_s"], "steps": run["steps"]}
        for jit_compile, run in runs.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--models", nargs="+", default=["i-autorec"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import keras

    if keras.backend.backend() != "torch":
        raise SystemExit("Run with KERAS_BACKEND=torch.")
    from keras_aerec.experiments.report import provenance, save_figures

    run_info = provenance()
    figures = []
    for name in args.models:
        results = measure(name, args.data_dir, args.rounds)
        eager, compiled = results[False], results[True]
        eager_step, compiled_step = (statistics.median(r["steps"]) for r in (eager, compiled))
        saving = eager_step - compiled_step
        extra = compiled["compile_s"] - eager["compile_s"]
        metrics = {
            "step_s_eager": {"mean": round(eager_step, 4), "sd": 0.0},
            "step_s_compiled": {"mean": round(compiled_step, 4), "sd": 0.0},
            "compile_s_eager": {"mean": round(eager["compile_s"], 2), "sd": 0.0},
            "compile_s_compiled": {"mean": round(compiled["compile_s"], 2), "sd": 0.0},
            "break_even_steps": {
                "mean": round(extra / saving) if saving > 0 else None,
                "sd": 0.0,
            },
        }
        figures.append(
            {
                "section": "Article table speed",
                "what": f"{name}: torch training step, eager vs jit_compile=True (torch.compile)",
                "command": f"python benchmarks/bench_torch_compile.py --models {name}",
                "code": ["keras_aerec/experiments/recipes.py"],
                **run_info,
                "load": round(os.getloadavg()[0], 2),
                "dataset": "ml-1m",
                "protocol": "article",
                "seeds": [0],
                "metrics": metrics,
                "published": {"value": None, "source": None},
                "notes": f"medians of {args.rounds} rounds of 10 steps, in turn; compile: the "
                "first two steps; one batch shape only (the partial last batch would compile "
                "again)",
            }
        )
        print(name, metrics, flush=True)
    measured = {figure["what"] for figure in figures}
    save_figures(
        RESULTS,
        "torch.compile for the rating models",
        figures,
        replaces=lambda old: old.get("what") in measured,
    )


if __name__ == "__main__":
    main()
