"""Start-up cost of `keras-aerec --help`: wall and CPU seconds, medians of several runs.

    python benchmarks/bench_cli_start.py --runs 5 [--baseline ../main]

CPU seconds (user + system of the child) do not depend on the machine's load as wall
seconds do; both are recorded. `--baseline` times another checkout the same way (e.g. the
one before the CLI stopped importing a backend for `--help`). Writes
benchmarks/results/cli_start.json.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _time_help(checkout: str, runs: int) -> dict:
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "keras_aerec_cli", "--help"],
            env={**os.environ, "PYTHONPATH": checkout},
            cwd=checkout,
            capture_output=True,
            check=True,
        )
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {
        "wall_s": {"median": round(statistics.median(walls), 3)},
        "cpu_s": {"median": round(statistics.median(cpus), 3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="another checkout to time the same way")
    args = parser.parse_args()
    from keras_aerec.experiments.report import provenance, save_figures

    run = provenance()
    load = round(os.getloadavg()[0], 1)
    figures = []
    for label, checkout in [("this checkout", ROOT), ("baseline", args.baseline)]:
        if checkout is None:
            continue
        metrics = _time_help(os.path.abspath(checkout), args.runs)
        figures.append(
            {
                "section": "CLI",
                "what": f"keras-aerec --help, {label}",
                "command": "python benchmarks/bench_cli_start.py"
                + (" --baseline CHECKOUT" if args.baseline else ""),
                "code": [
                    "keras_aerec_cli.py",
                    "keras_aerec/__init__.py",
                    "keras_aerec/cli/main.py",
                    "keras_aerec/cli/common.py",
                ],
                **run,
                "commit": run["commit"] if checkout == ROOT else "baseline",
                "load": load,
                "dataset": None,
                "protocol": None,
                "seeds": [],
                "metrics": metrics,
                "published": {"value": None, "source": None},
                "notes": f"median of {args.runs} runs; CPU = user + system seconds of the child",
            }
        )
        print(label, metrics)
    path = save_figures(
        os.path.join(ROOT, "benchmarks", "results", "cli_start.json"), "CLI start-up", figures
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
