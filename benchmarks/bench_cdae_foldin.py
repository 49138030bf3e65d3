"""CDAE for new users: zero user vector vs fold-in, next to Mult-DAE (same splits).

Strong generalization (the `liang` protocol of `keras-aerec benchmark`: ratings > 3, users
with >= 5, a tenth of the users (at most 600) held out for validation and as many for
test, 80 % of each held-out user's positives folded in). CDAE and Mult-DAE are trained
with the benchmark recipes (epoch picked on validation NDCG@100); the one trained CDAE is
then evaluated on the test users twice: `fold_in_steps=0` (V_u = 0, the paper) and the
default fold-in. Writes benchmarks/results/cdae_foldin.json.

    python benchmarks/bench_cdae_foldin.py --data-dir ../shared/data --dataset 100k --seeds 0 1 2
    python benchmarks/bench_cdae_foldin.py --data-dir ../shared/data --dataset 1m --seeds 0
"""

import argparse
import os
import time

import numpy as np

from keras_aerec.data.movielens import load_movielens
from keras_aerec.evaluation.ranking import evaluate_ranking
from keras_aerec.experiments.recipes import MODELS
from keras_aerec.experiments.report import provenance, save_figures
from keras_aerec.experiments.runner import get_protocol, train_and_evaluate

RESULTS = os.path.join(os.path.dirname(__file__), "results", "cdae_foldin.json")
KS = (20, 100)
CODE = ["keras_aerec/models/cdae.py", "keras_aerec/models/mult_dae.py"]


def run_seed(data, seed, epochs):
    spec = get_protocol("liang")
    split = spec.split("ranking", data, seed)
    cdae, _ = train_and_evaluate(MODELS["cdae"], split, spec, epochs=epochs, verbose=0)
    results = {}
    for label, steps in (("cdae_zero_vector", 0), ("cdae_fold_in", cdae.fold_in_steps)):
        cdae.fold_in_steps = steps
        start = time.perf_counter()
        results[label] = evaluate_ranking(cdae, split.test, ks=KS)
        results[label]["eval_s"] = time.perf_counter() - start
    mult_dae, _ = train_and_evaluate(MODELS["multdae"], split, spec, epochs=epochs, verbose=0)
    results["multdae"] = evaluate_ranking(mult_dae, split.test, ks=KS)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="100k", choices=("100k", "1m"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--epochs", type=int, default=None, help="largest epoch budget (default: the recipes')"
    )
    args = parser.parse_args()
    data = load_movielens(args.dataset, args.data_dir)
    per_seed = [run_seed(data, seed, args.epochs) for seed in args.seeds]
    run = provenance()
    figures = []
    for label, what in (
        ("cdae_zero_vector", "CDAE, new users with V_u = 0 (fold_in_steps=0)"),
        ("cdae_fold_in", "CDAE, new users folded in (default fold_in_steps)"),
        ("multdae", "Mult-DAE (reference)"),
    ):
        metrics = {}
        for name in [f"ndcg@{k}" for k in KS] + [f"recall@{k}" for k in KS]:
            values = [seed_results[label][name] for seed_results in per_seed]
            metrics[name] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            }
        figures.append(
            {
                "section": "CDAE fold-in",
                "what": f"{what}, ML-{args.dataset.upper()} strong generalization",
                "command": (
                    f"python benchmarks/bench_cdae_foldin.py --dataset {args.dataset} "
                    f"--seeds {' '.join(map(str, args.seeds))}"
                    + ("" if args.epochs is None else f" --epochs {args.epochs}")
                ),
                "code": CODE,
                **run,
                "load": round(os.getloadavg()[0], 1),
                "dataset": f"ml-{args.dataset}",
                "protocol": "strong_generalization",
                "seeds": args.seeds,
                "metrics": metrics,
                "published": {"value": None, "source": None},
                "notes": "liang protocol recipes (epoch budget "
                f"{'of the recipes' if args.epochs is None else args.epochs}); one trained "
                "CDAE evaluated both ways",
            }
        )
    dataset = f"ml-{args.dataset}"
    save_figures(
        RESULTS, "CDAE: new users folded in", figures, replaces=lambda f: f["dataset"] == dataset
    )


if __name__ == "__main__":
    main()
