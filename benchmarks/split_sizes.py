"""Split sizes and timings of every evaluation protocol on MovieLens-1M.

Prints a Markdown table (one row per protocol) for BENCHMARKS.md. The split time is the
best of `--repeats` runs; preprocessing (implicit threshold, filters) is timed apart.

    python benchmarks/split_sizes.py [data_dir] [--seed 0] [--repeats 3] [--json PATH]
"""

import argparse
import json
import os
import time
from pathlib import Path

from keras_aerec.data.movielens import load_movielens
from keras_aerec.data.splits import (
    rating_holdout,
    strong_generalization,
    temporal,
    weak_generalization,
)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed(function, repeats=1):
    """Returns (result of the last call, best wall time in seconds)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def shape(matrix_or_data):
    if hasattr(matrix_or_data, "matrix"):
        matrix_or_data = matrix_or_data.matrix
    rows, columns = matrix_or_data.shape
    return f"{rows:,} x {columns:,}, {matrix_or_data.nnz:,}"


def part_cell(part, stats, name):
    if part is None:
        return "-"
    return (
        f"{part.num_users:,} users, {part.fold_in.nnz:,} / {part.holdout.nnz:,} "
        f"(dropped {stats[f'{name}_dropped_interactions']}, "
        f"excluded {stats[f'{name}_excluded_users']})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the table to this results file")
    args = parser.parse_args()
    seed, repeats = args.seed, args.repeats

    ratings, load_time = timed(lambda: load_movielens("1m", data_dir=args.data_dir))
    timestamped, load_ts_time = timed(
        lambda: load_movielens("1m", data_dir=args.data_dir, require_timestamps=True)
    )
    rows = []

    split, seconds = timed(lambda: rating_holdout(ratings, 0.1, 0.1, seed=seed), repeats)
    stats = split.stats
    rows.append(
        (
            "rating_holdout(test=0.1, validation=0.1)",
            "ratings",
            shape(ratings),
            f"{stats['num_train']:,} ratings",
            f"{stats['num_validation']:,} ratings ({stats['validation_unseen_items']} of unseen items)",
            f"{stats['num_test']:,} ratings ({stats['test_unseen_users']} of unseen users, "
            f"{stats['test_unseen_items']} of unseen items)",
            0.0,
            seconds,
        )
    )

    positives, prep = timed(lambda: ratings.to_implicit(3.0))
    ranking_cases = [
        (
            "weak_generalization(test=0.2)",
            "rating > 3",
            positives,
            prep,
            lambda data: weak_generalization(data, test=0.2, seed=seed),
        ),
    ]
    liang, prep = timed(lambda: ratings.to_implicit(3.0).filter_min_interactions(users=5))
    ranking_cases.append(
        (
            "strong_generalization(600, fold_in=0.8)",
            "rating > 3, users >= 5",
            liang,
            prep,
            lambda data: strong_generalization(data, 600, fold_in=0.8, seed=seed),
        )
    )
    recbole, prep = timed(lambda: ratings.to_implicit(2.0).k_core(10))
    ranking_cases.append(
        (
            "weak_generalization(test=0.1, validation=0.1) (RecBole 8:1:1)",
            "rating >= 3, 10-core",
            recbole,
            prep,
            lambda data: weak_generalization(data, test=0.1, validation=0.1, seed=seed),
        )
    )
    sequences, prep = timed(lambda: timestamped.to_implicit(3.0))
    ranking_cases.append(
        (
            "temporal(300, fold_in=0.8)",
            "rating > 3, users 1-2999 (timestamped)",
            sequences,
            prep,
            lambda data: temporal(data, 300, fold_in=0.8, seed=seed),
        )
    )
    for protocol, preprocessing, data, prep_seconds, run in ranking_cases:
        split, seconds = timed(lambda run=run, data=data: run(data), repeats)
        rows.append(
            (
                protocol,
                preprocessing,
                shape(data),
                f"{shape(split.train)} (items dropped {split.stats['num_dropped_items']})",
                part_cell(split.validation, split.stats, "validation"),
                part_cell(split.test, split.stats, "test"),
                prep_seconds,
                seconds,
            )
        )

    lines = [
        f"MovieLens-1M, seed {seed}: load {load_time:.2f} s (timestamped users "
        f"{load_ts_time:.2f} s), split time best of {repeats}.",
        f"RecBole preprocessing (rating >= 3, 10-core): {shape(recbole)} "
        "(RecBole reports 6,040 x 3,124, 834,449).",
        "",
        "| protocol | preprocessing | input (users x items, interactions) | train "
        "| validation (fold-in / holdout) | test (fold-in / holdout) | prep s | split s |",
        "|---|---|---|---|---|---|---:|---:|",
    ]
    for protocol, preprocessing, data, train, validation, test, prep_s, split_s in rows:
        lines.append(
            f"| {protocol} | {preprocessing} | {data} | {train} | {validation} | {test} "
            f"| {prep_s:.3f} | {split_s:.3f} |"
        )
    print("\n".join(lines))
    if args.json:
        from keras_aerec.experiments.report import provenance

        run = provenance()
        lines += [
            "",
            "    python benchmarks/split_sizes.py ../shared/data --json "
            "benchmarks/results/split_sizes.json",
            "",
            f"Measured {run['date']}, commit `{run['commit']}`, {run['machine']}, "
            f"load {os.getloadavg()[0]:.1f}.",
        ]
        document = {"title": "Protocol split sizes on ML-1M", "intro": "\n".join(lines)}
        document["figures"] = []
        with open(args.json, "w") as handle:
            json.dump(document, handle, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
