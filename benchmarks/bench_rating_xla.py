"""Rating-model training epochs on TensorFlow with and without XLA (`jit_compile`).

`RatingAutoencoder.compile` defaults `jit_compile` to `True` on TensorFlow (Keras' `"auto"`
means no XLA on a machine without an accelerator). This measures what that default buys:
for I-AutoRec, U-AutoRec and DeepRec with the article table's recipe (`keras_aerec.
experiments.recipes.MODELS`) on the rating split of the article protocol (ML-1M,
`rating_holdout(test=0.1, validation=0.1, seed=0)`), each model trains `--epochs` epochs
with `model.fit` on the recipe's `RowBatches` (no validation pass), compiled with
`jit_compile=True` and with `jit_compile=False`, each in a fresh child process. The two
settings run in turn, `--rounds` times, so that a change of load hits both. Epoch time:
the median of epochs 2..`--epochs` (the first compiles) over the rounds; the speedup is
no-XLA / XLA, from the same rounds.

Usage:
    python benchmarks/bench_rating_xla.py [--data-dir ../shared/data] [--models i-autorec]
"""

import argparse
import json
import os
import statistics

from child_runs import run_child

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "rating_xla.json")
CODE = [
    "keras_aerec/models/rating_autoencoder.py",
    "keras_aerec/models/auto_rec.py",
    "keras_aerec/models/deep_rec.py",
    "keras_aerec/experiments/recipes.py",
    "keras_aerec/data/batching.py",
    "keras_aerec/allocator.py",
]
MODELS = ("i-autorec", "u-autorec", "deeprec")


def child(data_dir, name, jit_compile, epochs):
    import keras
    from timing import EpochTimes

    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.experiments.recipes import MODELS as RECIPES
    from keras_aerec.experiments.runner import get_protocol
    from keras_aerec.experiments.training import training_batches

    keras.utils.set_random_seed(0)
    data = load_movielens("1m", data_dir=data_dir)
    split = get_protocol("article").rating_split(data, seed=0)
    recipe = RECIPES[name].for_protocol("article")
    hyperparameters = recipe.hyperparameters(False)
    model = recipe.build(split, hyperparameters)
    learning_rate = hyperparameters.get("learning_rate", 1e-3)
    clipnorm = hyperparameters.get("clipnorm")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm),
        jit_compile=jit_compile,
    )
    batches = training_batches(model, split.train, "rating", recipe.training_batch_size(False), 0)
    timer = EpochTimes()
    history = model.fit(batches, epochs=epochs, callbacks=[timer], verbose=0)
    print(
        json.dumps(
            {
                "epoch_s": timer.seconds,
                "loss": history.history["loss"][-1],
                "jit_compile": model.jit_compile,
                "steps": len(batches),
                "load": os.getloadavg()[0],
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, flag = args.child
        child(args.data_dir, name, flag == "xla", args.epochs)
        return
    from keras_aerec.experiments.report import provenance, save_figures

    run_info = provenance()
    figures = []
    for name in args.models:
        times = {"xla": [], "no_xla": []}
        loads, losses, steps = [], {}, None
        for _ in range(args.rounds):
            for flag in times:
                arguments = ["--child", name, flag, "--data-dir", args.data_dir]
                result = run_child(
                    __file__, arguments + ["--epochs", args.epochs], "tensorflow", name
                )
                if result["jit_compile"] != (flag == "xla"):
                    raise SystemExit(f"{name}: jit_compile was {result['jit_compile']} for {flag}")
                times[flag] += result["epoch_s"][1:]
                loads.append(result["load"])
                losses[flag] = result["loss"]
                steps = result["steps"]
        medians = {flag: statistics.median(values) for flag, values in times.items()}
        metrics = {
            f"epoch_{flag}_s": {
                "mean": round(medians[flag], 3),
                "sd": round(statistics.stdev(values), 3),
            }
            for flag, values in times.items()
        }
        metrics["speedup"] = {"mean": round(medians["no_xla"] / medians["xla"], 2), "sd": 0.0}
        figures.append(
            {
                "section": "Rating models: XLA on TensorFlow",
                "what": f"{name} training epoch, jit_compile=True vs False",
                "command": f"python benchmarks/bench_rating_xla.py --models {name}",
                "code": CODE,
                **run_info,
                "load": round(statistics.median(loads), 2),
                "backend": "tensorflow",
                "dataset": "ml-1m",
                "protocol": "article",
                "seeds": [0],
                "metrics": metrics,
                "published": {"value": None, "source": None},
                "notes": f"{steps} steps per epoch (recipe batch size); epochs 2-{args.epochs} of "
                f"{args.rounds} rounds in turn, medians; final loss XLA {losses['xla']:.4f}, "
                f"no XLA {losses['no_xla']:.4f}",
            }
        )
        print(name, json.dumps(metrics), flush=True)
    save_figures(
        RESULTS,
        "Rating models with and without XLA on TensorFlow",
        figures,
        replaces=lambda old: old["command"].split("--models ")[-1] in args.models,
    )


if __name__ == "__main__":
    main()
