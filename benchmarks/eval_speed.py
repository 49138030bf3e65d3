"""Time `evaluate_ranking` alone on a MovieLens-1M-sized problem.

Random float32 scores for 6,040 users x 3,706 items, a random fold-in (~2% density) and
a disjoint holdout (~0.5%); the score function returns precomputed rows, so only the
evaluation (exclusion, top-k selection, hits and metrics) is timed.

    python benchmarks/eval_speed.py [--users 6040] [--items 3706] [--repeats 5]
"""

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np
import scipy.sparse

from keras_aerec.evaluation.ranking import evaluate_ranking


def make_problem(num_users, num_items, fold_in_density, holdout_density, seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((num_users, num_items), dtype=np.float32)
    draw = rng.random((num_users, num_items), dtype=np.float32)
    fold_in = draw < fold_in_density
    holdout = (draw >= fold_in_density) & (draw < fold_in_density + holdout_density)
    part = SimpleNamespace(
        fold_in=scipy.sparse.csr_matrix(fold_in, dtype=np.float32),
        holdout=scipy.sparse.csr_matrix(holdout, dtype=np.float32),
        train_rows=np.arange(num_users),
    )
    return scores, part


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=6040)
    parser.add_argument("--items", type=int, default=3706)
    parser.add_argument("--fold-in-density", type=float, default=0.02)
    parser.add_argument("--holdout-density", type=float, default=0.005)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scores, part = make_problem(
        args.users, args.items, args.fold_in_density, args.holdout_density, args.seed
    )

    def score_fn(rows, users=None):
        return scores[users]

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        results = evaluate_ranking(score_fn, part, ks=(10, 20, 50, 100), batch_size=args.batch_size)
        times.append(time.perf_counter() - start)
    print(
        f"evaluate_ranking on {args.users} x {args.items} (fold-in nnz {part.fold_in.nnz}, "
        f"holdout nnz {part.holdout.nnz}), ks=(10, 20, 50, 100), batch_size={args.batch_size}"
    )
    print(
        f"median of {args.repeats}: {statistics.median(times):.3f} s "
        f"(min {min(times):.3f} s, max {max(times):.3f} s)"
    )
    print(
        f"users evaluated {results['num_users']}, skipped {results['num_skipped']}, "
        f"ndcg@100 {results['ndcg@100']:.4f}, recall@20 {results['recall@20']:.4f}"
    )


if __name__ == "__main__":
    main()
