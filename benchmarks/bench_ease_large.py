"""EASE on large catalogues: fit time and peak memory at 16,000 and 20,000 items.

OpenBLAS' multi-threaded Cholesky crashes (SIGSEGV) near 16,000 items on CPUs where it
picks its SkylakeX kernels on AMD; EASE factorises on one BLAS thread so that every
catalogue its memory guard admits fits. This script shows both:

* `crash_check`: a bare `numpy.linalg.cholesky(2 * I)` of size 16,000 in a child process
  with the default BLAS threads (2 here), then with one; the exit status of each.
* one child process per catalogue size: a synthetic catalogue (power-law item popularity,
  10-40 items per user), `EASE(...).fit` timed, and the process's peak RSS
  (`ru_maxrss`) against `ease_memory_bytes` plus the RSS before the model was built.

Usage:
    nice -n 5 python benchmarks/bench_ease_large.py [--items 16000 20000] [--users 100000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from large_catalogue import power_law_matrix

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ease_large.json")
CODE = ["keras_aerec/models/ease.py"]
CHOLESKY = (
    "import numpy as np, sys\n"
    "from threadpoolctl import threadpool_limits\n"
    "threads = int(sys.argv[2]) or None\n"
    "with threadpool_limits(limits=threads, user_api='blas'):\n"
    "    np.linalg.cholesky(2.0 * np.eye(int(sys.argv[1])))\n"
)


def power_law_catalogue(num_users, num_items, seed=0):
    """Binary CSR: Zipf(1) item popularity, 10-40 items drawn per user (up to 40 distinct)."""
    return power_law_matrix(
        num_users, num_items, lambda rng, size: rng.integers(10, 41, size), seed=seed
    )


def _rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(num_users, num_items, l2):
    import keras

    from keras_aerec.models.ease import EASE, ease_memory_bytes

    x = power_law_catalogue(num_users, num_items)
    before = _rss_bytes()
    model = EASE(num_items=num_items, l2=l2)
    start = time.perf_counter()
    model.fit(x)
    fit_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    scores = model.score(x[:100])
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "users": num_users,
                "items_with_users": int(
                    np.count_nonzero(np.bincount(x.indices, minlength=num_items))
                ),
                "interactions": int(x.nnz),
                "fit_s": fit_s,
                "peak_rss_gb": peak / 1e9,
                "rss_before_model_gb": before / 1e9,
                "estimate_gb": ease_memory_bytes(num_items) / 1e9,
                "solve_dtype": model.solve_dtype,
                "finite_scores": bool(np.isfinite(scores).all()),
            }
        )
    )


def crash_check(num_items):
    outcome = {}
    for threads in (0, 1):
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-c", CHOLESKY, str(num_items), str(threads)],
            capture_output=True,
            text=True,
        )
        outcome["default_threads" if threads == 0 else "one_thread"] = {
            "returncode": run.returncode,
            "seconds": round(time.perf_counter() - start, 1),
        }
    return outcome


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[16_000, 20_000])
    parser.add_argument(
        "--l2",
        type=float,
        nargs="+",
        default=[500.0],
        help="penalties: the first at every size, the others at the first size (500 solves "
        "these catalogues in float32, 100 in float64)",
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--crash-items", type=int, default=16_000)
    parser.add_argument("--skip-crash-check", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.users, args.child, args.l2[0])
        return
    from threadpoolctl import threadpool_info

    from keras_aerec.experiments.report import provenance, save_figures

    blas = [
        # OpenMP pools (loaded with scipy/TensorFlow) have no `architecture` entry.
        f"{i['internal_api']} {i.get('version')} {i.get('architecture', '-')} x{i['num_threads']}"
        for i in threadpool_info()
    ]
    common = {
        "section": "EASE",
        "code": CODE,
        **provenance(),
        "protocol": "fit only",
        "seeds": [0],
        "published": {"value": None, "source": None},
    }
    figures = []

    def record(figure):
        figures.append({**common, **figure})
        print(json.dumps(figure["metrics"]), figure["notes"], flush=True)
        # After each figure, so that a later size that runs out of memory keeps the others.
        save_figures(RESULTS, "EASE on large catalogues", figures)

    runs = [(num_items, args.l2[0]) for num_items in args.items]
    runs += [(args.items[0], l2) for l2 in args.l2[1:]]
    for num_items, l2 in runs:
        load = os.getloadavg()[0]
        command = [sys.executable, __file__, "--child", str(num_items)]
        command += ["--users", str(args.users), "--l2", str(l2)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(
                f"child for {num_items} items exited {run.returncode}: {run.stderr[-2000:]}"
            )
        result = json.loads(run.stdout.strip().splitlines()[-1])
        predicted = result["rss_before_model_gb"] + result["estimate_gb"]
        record(
            {
                "backend": result["backend"],
                "what": f"EASE.fit (l2={l2:g}, {result['solve_dtype']} solve), synthetic "
                f"{num_items:,} items (power-law), {args.users:,} users",
                "command": f"python benchmarks/bench_ease_large.py --items {num_items} --l2 {l2:g}",
                "load": round(load, 2),
                "dataset": f"synthetic-{num_items}",
                "metrics": {
                    "fit_s": {"mean": round(result["fit_s"], 1), "sd": 0.0},
                    "peak_rss_gb": {"mean": round(result["peak_rss_gb"], 2), "sd": 0.0},
                    "predicted_peak_gb": {"mean": round(predicted, 2), "sd": 0.0},
                    "estimate_gb": {"mean": round(result["estimate_gb"], 2), "sd": 0.0},
                },
                "notes": (
                    f"{result['interactions']:,} interactions, {result['items_with_users']:,} "
                    "items with users; predicted peak = RSS before the model "
                    f"({result['rss_before_model_gb']:.2f} GB) + ease_memory_bytes; "
                    f"peak/predicted = {result['peak_rss_gb'] / predicted:.3f}; scores finite: "
                    f"{result['finite_scores']}; one BLAS thread"
                ),
            }
        )
    if not args.skip_crash_check:
        load = os.getloadavg()[0]
        outcome = crash_check(args.crash_items)
        record(
            {
                "what": f"bare numpy.linalg.cholesky(2*I), {args.crash_items:,} items, "
                "child process",
                "command": "python benchmarks/bench_ease_large.py",
                "load": round(load, 2),
                "dataset": f"identity-{args.crash_items}",
                "metrics": {
                    "exit_default_threads": {
                        "mean": outcome["default_threads"]["returncode"],
                        "sd": 0.0,
                    },
                    "exit_one_thread": {"mean": outcome["one_thread"]["returncode"], "sd": 0.0},
                    "one_thread_s": {"mean": outcome["one_thread"]["seconds"], "sd": 0.0},
                },
                "notes": f"exit -11 = SIGSEGV; BLAS: {'; '.join(blas)}",
            }
        )


if __name__ == "__main__":
    main()
