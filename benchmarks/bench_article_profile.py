"""Where the article table's time goes, per model: building, compiling, training, evaluating.

For each model (one child process per model and backend), on the article protocol's
split of ML-1M (seed 0), with the recipe's model, optimizer and batch size:

* `build_s`: `Recipe.build` (model construction and compile);
* `first_epoch_s`: the first training epoch (tracing / compilation included);
* `epoch_s`: median of the next `--epochs - 1` training epochs (no callbacks);
* `validation_s`: median of `--epochs` evaluations of the validation part, as the
  `RatingEvaluation` callback runs it after every epoch (rating models; the article's
  top-N split has no validation part), and `validation_full_rows_s` the same evaluation
  from whole reconstructed rows (`model.score`, without `score_entries`), timed in turn;
* `test_s`: the final test evaluation.

`projected_s` = build + first epoch + (epochs run - 1) x epoch + epochs run x validation
+ test, with the epochs run of the last article table (benchmarks/results/
article_ml1m_all_seed0), to compare with the table's runtime column.

Usage:
    nice -n 5 python benchmarks/bench_article_profile.py [--models i-autorec deeprec]
"""

import argparse
import json
import os
import statistics
import time

from child_runs import run_child

from keras_aerec.experiments.report import MODEL_SOURCES

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "article_profile.json")
TABLE = os.path.join(HERE, "results", "article_ml1m_all_seed0", "results.json")
MODELS = ("i-autorec", "u-autorec", "deeprec", "cdae", "multvae", "multdae")
CODE = {name: MODEL_SOURCES[name] for name in MODELS}
COMMON_CODE = [
    "keras_aerec/experiments/training.py",
    "keras_aerec/experiments/recipes.py",
    "keras_aerec/evaluation/rating.py",
    "keras_aerec/data/batching.py",
]


def child(name, data_dir, epochs):
    import keras

    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.evaluation.rating import evaluate_rating
    from keras_aerec.experiments.recipes import MODELS
    from keras_aerec.experiments.runner import get_protocol
    from keras_aerec.experiments.training import (
        evaluate_model,
        training_batches,
        validation_callback,
    )

    spec = get_protocol("article")
    recipe = MODELS[name].for_protocol("article")
    split = spec.split(recipe.kind, load_movielens("1m", data_dir=data_dir), seed=0)
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = recipe.build(split, recipe.hyperparameters(False))
    build_s = time.perf_counter() - start
    batches = training_batches(
        model, split.train, recipe.kind, recipe.batch_size, seed=0, user_index=recipe.user_index
    )
    validation = None
    if split.validation is not None:
        validation = validation_callback(model, recipe.kind, split.train, split.validation, ())
        validation.set_model(model)
    train_times, validation_times, full_times, differences = [], [], [], []
    for epoch in range(epochs):
        start = time.perf_counter()
        model.fit(batches, initial_epoch=epoch, epochs=epoch + 1, verbose=0)
        train_times.append(time.perf_counter() - start)
        if validation is None:
            continue
        logs = {}
        start = time.perf_counter()
        validation.on_epoch_end(epoch, logs)
        validation_times.append(time.perf_counter() - start)
        # The same evaluation from whole reconstructed rows (`score`), as before
        # `score_entries`: its time, and that it gives the same RMSE.
        start = time.perf_counter()
        full = evaluate_rating(
            model.score, validation.inputs, validation.targets, **validation.evaluate_kwargs
        )
        full_times.append(time.perf_counter() - start)
        differences.append(abs(full["rmse"] - logs["val_rmse"]))
    start = time.perf_counter()
    evaluate_model(model, split, recipe.kind, ks=spec.ranking_ks)
    test_s = time.perf_counter() - start
    return {
        "load": os.getloadavg()[0],
        "build_s": build_s,
        "first_epoch_s": train_times[0],
        "epoch_s": train_times[1:],
        "validation_s": validation_times,
        "validation_full_rows_s": full_times,
        "validation_rmse_difference": max(differences, default=0.0),
        "test_s": test_s,
        "steps": len(batches),
    }


def epochs_run_in_table():
    try:
        with open(TABLE) as file:
            results = json.load(file)["results"]
    except (OSError, ValueError, KeyError):
        return {}
    return {result["model"]: (result["epochs_run"], result["seconds"]) for result in results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--models", nargs="+", default=list(CODE))
    parser.add_argument("--backends", nargs="+", default=["jax"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data_dir, args.epochs)))
        return
    from keras_aerec.experiments.report import provenance, same_backend_and_what, save_figures

    run_info = provenance()
    table = epochs_run_in_table()
    figures = []
    for backend in args.backends:
        for name in args.models:
            arguments = ["--child", name, "--data-dir", args.data_dir, "--epochs", args.epochs]
            result = run_child(__file__, arguments, backend, name)
            epoch_s = statistics.median(result["epoch_s"])
            validation_s = statistics.median(result["validation_s"] or [0.0])
            epochs_run, table_s = table.get(name, (None, None))
            metrics = {
                key: {"mean": round(result[key], 3), "sd": 0.0}
                for key in ("build_s", "first_epoch_s", "test_s")
            }
            for key in ("epoch_s", "validation_s", "validation_full_rows_s"):
                values = result[key]
                if not values:
                    continue
                metrics[key] = {
                    "mean": round(statistics.median(values), 3),
                    "sd": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
                }
            if epochs_run:
                projected = (
                    result["build_s"]
                    + result["first_epoch_s"]
                    + (epochs_run - 1) * epoch_s
                    + epochs_run * validation_s
                    + result["test_s"]
                )
                metrics["projected_s"] = {"mean": round(projected, 1), "sd": 0.0}
            figures.append(
                {
                    "section": "Article table speed",
                    "what": f"{name}: build, first epoch, epoch, validation, test (ML-1M, article)",
                    "command": "python benchmarks/bench_article_profile.py "
                    f"--models {name} --backends {backend} --epochs {args.epochs}",
                    "code": CODE[name] + COMMON_CODE,
                    **run_info,
                    "load": round(result["load"], 2),
                    "backend": backend,
                    "dataset": "ml-1m",
                    "protocol": "article",
                    "seeds": [0],
                    "metrics": metrics,
                    "published": {"value": None, "source": None},
                    "notes": f"{result['steps']} steps per epoch; medians of epochs 2-"
                    f"{args.epochs} and of {args.epochs} validations; projected with "
                    f"{epochs_run} epochs run (table runtime {table_s and round(table_s)} s); "
                    "validation RMSE from entries vs whole rows differs by at most "
                    f"{result['validation_rmse_difference']:.1e}",
                }
            )
            print(backend, name, json.dumps(metrics), flush=True)
            # Saved after every model: a long run stopped early keeps what it measured.
            save_figures(
                RESULTS,
                "Where the article table's time goes",
                figures,
                replaces=same_backend_and_what(figures),
            )


if __name__ == "__main__":
    main()
