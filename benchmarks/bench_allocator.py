"""Training steps with freed memory kept (`keras_aerec.allocator`) vs glibc's default.

For each backend and model, two child processes in turn, one with `KERAS_AEREC_MALLOC=keep`
(the default of `import keras_aerec`) and one with `KERAS_AEREC_MALLOC=system` (glibc as it
is), `--rounds` times, on the article protocol's split of ML-1M (seed 0) with the recipe's
model, optimizer and batch size (`bench_article_profile.py`'s child; SVAE:
`bench_svae_speed.py`'s `after` case, without validation):

* `epoch_s`: median training epoch after the first (which compiles);
* `validation_s`: median validation pass (rating models);
* `faults_per_step`: minor page faults of the whole child per training step;
* `peak_rss_gb`: the child's peak resident memory.

`speedup` is system / keep of the epoch medians, the two runs of a round side by side.

On TensorFlow a third child per round, `unreset`, keeps freed memory but leaves out
`KeepFreedMemory` (the callback of `MatrixInputs.fit` that sets the options again after
TensorFlow's first `from_generator` kernel has lowered glibc's mmap threshold to 128 KiB):
`speedup_over_unreset` is unreset / keep, what that callback is worth.

Usage:
    python benchmarks/bench_allocator.py --backends jax tensorflow torch \\
        --models svae i-autorec multvae
"""

import argparse
import json
import os
import resource
import statistics

from child_runs import run_child

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "allocator.json")
MODES = ("keep", "system")
TF_MODES = MODES + ("unreset",)


def child(name, data_dir, epochs, unreset=False):
    if unreset:  # the counterfactual: fit without re-setting the options
        from keras_aerec.models import recommender

        recommender.with_kept_memory = lambda callbacks: list(callbacks or [])
    if name == "svae":
        from bench_svae_speed import child as svae_child

        result = svae_child("after", data_dir, epochs)
        steps = None
    else:
        from bench_article_profile import child as profile_child

        result = profile_child(name, data_dir, epochs)
        steps = result["steps"]
    from keras_aerec import allocator

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "kept": allocator.is_kept(),
        "load": result["load"],
        "epoch_s": result["epoch_s"],
        "validation_s": result.get("validation_s") or [],
        "faults": usage.ru_minflt,
        "steps": steps,
        "peak_rss_gb": usage.ru_maxrss / 1024**2,
        "losses": result.get("losses"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--models", nargs="+", default=["svae", "i-autorec", "multvae"])
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--unreset", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data_dir, args.epochs, args.unreset)))
        return
    from keras_aerec.experiments.report import (
        MODEL_SOURCES,
        provenance,
        same_backend_and_what,
        save_figures,
        single_run_figure,
    )

    run_info = provenance()
    figures = []
    for backend in args.backends:
        for name in args.models:
            modes = TF_MODES if backend == "tensorflow" else MODES
            runs = {mode: [] for mode in modes}
            for _ in range(args.rounds):
                for mode in modes:
                    arguments = ["--child", name, "--data-dir", args.data_dir]
                    arguments += ["--epochs", args.epochs] + (["--unreset"] * (mode == "unreset"))
                    malloc = "system" if mode == "system" else "keep"
                    result = run_child(
                        __file__, arguments, backend, name, env={"KERAS_AEREC_MALLOC": malloc}
                    )
                    if result["kept"] != (malloc == "keep"):
                        raise SystemExit(
                            f"{name} on {backend}: KERAS_AEREC_MALLOC={mode} "
                            f"not in effect in the child"
                        )
                    runs[mode].append(result)
            metrics, loads = {}, []
            for mode in modes:
                epochs = [statistics.median(run["epoch_s"]) for run in runs[mode]]
                metrics[f"epoch_s_{mode}"] = statistics.median(epochs)
                validations = [v for run in runs[mode] for v in run["validation_s"]]
                if validations:
                    metrics[f"validation_s_{mode}"] = statistics.median(validations)
                metrics[f"peak_rss_gb_{mode}"] = max(run["peak_rss_gb"] for run in runs[mode])
                steps = runs[mode][0]["steps"]
                if steps:
                    metrics[f"faults_per_step_{mode}"] = statistics.median(
                        run["faults"] / (steps * args.epochs) for run in runs[mode]
                    )
                loads += [run["load"] for run in runs[mode]]
            ratios = [
                statistics.median(system["epoch_s"]) / statistics.median(keep["epoch_s"])
                for keep, system in zip(runs["keep"], runs["system"], strict=True)
            ]
            metrics["speedup"] = statistics.median(ratios)
            if "unreset" in runs:
                metrics["speedup_over_unreset"] = statistics.median(
                    statistics.median(unreset["epoch_s"]) / statistics.median(keep["epoch_s"])
                    for keep, unreset in zip(runs["keep"], runs["unreset"], strict=True)
                )
            same_losses = all(
                keep["losses"] == system["losses"]
                for keep, system in zip(runs["keep"], runs["system"], strict=True)
            )
            code = MODEL_SOURCES[name] + [
                "keras_aerec/allocator.py",
                "keras_aerec/models/recommender.py",
            ]
            figures.append(
                single_run_figure(
                    "Memory allocator",
                    f"{name}: training epoch with freed memory kept vs glibc's "
                    "default (ML-1M, article split)",
                    f"python benchmarks/bench_allocator.py --backends {backend} "
                    f"--models {name} --epochs {args.epochs} --rounds {args.rounds}",
                    code,
                    metrics,
                    load=max(loads),
                    notes=f"{args.rounds} round(s) of {' / '.join(modes)} child processes side by "
                    f"side; epoch medians of epochs 2-{args.epochs}; speedup per round "
                    f"{[round(r, 3) for r in ratios]}"
                    + (
                        ""
                        if runs["keep"][0]["losses"] is None
                        else f"; identical training losses: {same_losses}"
                    ),
                    run_info=run_info,
                    backend=backend,
                )
            )
            print(backend, name, json.dumps(figures[-1]["metrics"]), flush=True)
            save_figures(
                RESULTS,
                "Memory allocator: freed memory kept vs glibc's default",
                figures,
                replaces=same_backend_and_what(figures),
            )


if __name__ == "__main__":
    main()
