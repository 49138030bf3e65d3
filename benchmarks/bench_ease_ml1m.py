"""EASE on MovieLens 1M: fit speed against a plain numpy EASE, threads under load, l2="auto".

Strong generalization as Liang et al. (ratings >= 3.5 -> 4+ kept as implicit via
`to_implicit(3.0)`, users with >= 5 interactions, 600 validation and 600 test users,
80 % fold-in), seed 0. In the same run:

* `EASE.fit` against the independent numpy EASE of the paper's notebook (sparse Gram in
  float64, `np.linalg.inv`), interleaved, median of `--repeats`;
* the Cholesky solve of the same Gram matrix on one BLAS thread (what `EASE.fit` does)
  against two threads, with the machine's load noted (threads spin-wait when the cores
  are busy);
* `EASE(l2="auto")` with the validation users, and with its internal validation, against
  the recipe's l2 = 1000: test NDCG@100.

Usage:
    nice -n 5 python benchmarks/bench_ease_ml1m.py [--data-dir ../shared/data] [--repeats 5]
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import scipy.sparse as sp

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ease_ml1m.json")
CODE = ["keras_aerec/models/ease.py"]


def numpy_ease(x, l2):
    """Steck's reference EASE: dense Gram from the sparse matrix, generic inverse."""
    gram = (x.T @ x).toarray()
    diagonal = np.diag_indices(gram.shape[0])
    gram[diagonal] += l2
    precision = np.linalg.inv(gram)
    weights = precision / (-np.diag(precision))
    weights[diagonal] = 0.0
    return weights


def cholesky_solve(gram, l2, threads):
    from scipy.linalg import lapack
    from threadpoolctl import threadpool_limits

    solve = np.array(gram, order="F")
    solve.flat[:: solve.shape[0] + 1] += l2
    with threadpool_limits(limits=threads, user_api="blas"):
        factor, _ = lapack.dpotrf(solve, lower=False, overwrite_a=True, clean=False)
        lapack.dpotri(factor, lower=False, overwrite_c=True)


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def summary(values):
    return {
        "mean": round(statistics.median(values), 3),
        "sd": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.data.splits import strong_generalization
    from keras_aerec.evaluation.ranking import evaluate_ranking
    from keras_aerec.experiments.report import provenance, save_figures
    from keras_aerec.models.ease import EASE

    ratings = load_movielens("1m", data_dir=args.data_dir)
    data = ratings.to_implicit(3.0).filter_min_interactions(users=5)
    split = strong_generalization(data, num_heldout_users=600, num_validation_users=600, seed=0)
    train = split.train
    common = {
        "section": "EASE",
        "code": CODE,
        **provenance(),
        "dataset": "ml-1m",
        "protocol": "strong_generalization",
        "seeds": [0],
        "published": {"value": None, "source": None},
    }
    figures = []

    # Speed: interleaved so that load changes hit both alike.
    loads, ours, reference = [], [], []
    EASE(l2=500.0).fit(train)  # warm-up (imports, first variable assignment)
    for _ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        ours.append(timed(lambda: EASE(l2=500.0).fit(train)))
        reference.append(timed(lambda: numpy_ease(sp.csr_matrix(train, dtype="float64"), 500.0)))
    ratios = [a / b for a, b in zip(ours, reference, strict=True)]
    figures.append(
        {
            **common,
            "what": "EASE.fit vs plain numpy EASE (np.linalg.inv), ML-1M",
            "command": "python benchmarks/bench_ease_ml1m.py",
            "load": round(statistics.median(loads), 2),
            "metrics": {
                "fit_s": summary(ours),
                "numpy_ease_s": summary(reference),
                "ratio": summary(ratios),
            },
            "notes": f"{train.shape[0]} users x {train.shape[1]} items; interleaved, "
            f"median of {args.repeats}; ratio = per-pair fit_s / numpy_ease_s",
        }
    )
    print(json.dumps(figures[-1]["metrics"]), flush=True)

    # Threads: the same solve on one and two BLAS threads, alternating.
    gram = (sp.csr_matrix(train, dtype="float64").T @ train).toarray()
    loads, one, two = [], [], []
    for _ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        one.append(timed(lambda: cholesky_solve(gram, 500.0, 1)))
        two.append(timed(lambda: cholesky_solve(gram, 500.0, 2)))
    figures.append(
        {
            **common,
            "what": "Cholesky solve (potrf + potri) of the ML-1M Gram, 1 vs 2 BLAS threads",
            "command": "python benchmarks/bench_ease_ml1m.py",
            "load": round(statistics.median(loads), 2),
            "metrics": {
                "one_thread_s": summary(one),
                "two_threads_s": summary(two),
                "two_over_one": summary([b / a for a, b in zip(one, two, strict=True)]),
            },
            "notes": f"alternating, median of {args.repeats}; load = 1-min load average on "
            f"{os.cpu_count()} cores (other jobs running); EASE.fit uses one thread",
        }
    )
    print(json.dumps(figures[-1]["metrics"]), flush=True)

    # l2: "auto" on the validation users, "auto" on its own validation, the recipe's 1000.
    def test_ndcg(model):
        return evaluate_ranking(model, split.test, ks=(100,), metrics=("ndcg",))["ndcg@100"]

    load = os.getloadavg()[0]
    start = time.perf_counter()
    with_validation = EASE(l2="auto").fit(train, validation_data=split.validation)
    auto_seconds = time.perf_counter() - start
    internal = EASE(l2="auto").fit(train)
    fixed = {l2: test_ndcg(EASE(l2=l2).fit(train)) for l2 in (500.0, 1000.0)}
    figures.append(
        {
            **common,
            "what": 'EASE(l2="auto") vs l2 = 1000 (recipe), test NDCG@100, ML-1M',
            "command": "python benchmarks/bench_ease_ml1m.py",
            "load": round(load, 2),
            "metrics": {
                "ndcg@100_auto_validation_users": {
                    "mean": round(test_ndcg(with_validation), 4),
                    "sd": 0.0,
                },
                "ndcg@100_auto_internal": {"mean": round(test_ndcg(internal), 4), "sd": 0.0},
                "ndcg@100_l2_1000": {"mean": round(fixed[1000.0], 4), "sd": 0.0},
                "ndcg@100_l2_500": {"mean": round(fixed[500.0], 4), "sd": 0.0},
                "auto_fit_s": {"mean": round(auto_seconds, 1), "sd": 0.0},
            },
            "notes": f"grid {list(with_validation.l2_grid)}; selected l2 = "
            f"{with_validation.selected_l2:g} (600 validation users), "
            f"{internal.selected_l2:g} (internal: 10 % of training users)",
        }
    )
    print(json.dumps(figures[-1]["metrics"]), figures[-1]["notes"], flush=True)

    save_figures(RESULTS, "EASE on MovieLens 1M", figures)


if __name__ == "__main__":
    main()
