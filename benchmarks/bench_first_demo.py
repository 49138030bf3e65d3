"""Time from nothing to the demo's first result: a fresh clone, `make demo`, a new venv.

    python benchmarks/bench_first_demo.py [--runs 1]

Clones this checkout's HEAD into a temporary folder and runs the README's `make demo`
there (it builds its own `.venv`, installing only what the demo needs), timing the
install, the first model's result line and the whole demo. Package downloads come from
the registry (or pip's cache), so the figure depends on the network as well as the load.
Writes benchmarks/results/first_demo.json.
"""

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time

from keras_aerec.experiments.report import provenance, save_figures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "first_demo.json")
# The runner's line for a finished model, e.g. "i-autorec, seed 0: rmse=1.0228, ... in 3.8 s".
RESULT_LINE = re.compile(r"^[a-z-]+(, seed \d+)?: (rmse|precision@\d+)=")


def one_run() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        checkout = os.path.join(folder, "keras_aerec")
        subprocess.run(["git", "clone", "-q", ROOT, checkout], check=True)
        start = time.perf_counter()
        marks = {}
        process = subprocess.Popen(
            ["make", "demo"],
            cwd=checkout,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in process.stdout:
            now = time.perf_counter() - start
            if "keras-aerec demo" in line and "install_s" not in marks:
                marks["install_s"] = now
            if RESULT_LINE.match(line) and "first_result_s" not in marks:
                marks["first_result_s"] = now
        if process.wait() != 0:
            raise SystemExit(f"make demo failed in {checkout}")
        marks["total_s"] = time.perf_counter() - start
        return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    load = round(os.getloadavg()[0], 1)
    runs = [one_run() for _ in range(args.runs)]
    metrics = {
        name: {"mean": round(statistics.median(r[name] for r in runs), 1), "sd": None}
        for name in ("install_s", "first_result_s", "total_s")
    }
    figure = {
        "section": "Getting started",
        "what": "fresh clone -> `make demo` (new venv, JAX only) -> first result / whole demo",
        "command": f"python benchmarks/bench_first_demo.py --runs {args.runs}",
        "code": ["Makefile", "pyproject.toml", "keras_aerec/cli/main.py"],
        **provenance(),
        "load": load,
        "dataset": "synthetic (embedded)",
        "protocol": "article (demo recipes)",
        "seeds": [0],
        "metrics": metrics,
        "published": {"value": None, "source": None},
        "notes": f"median of {args.runs} run(s); the install takes packages from pip's cache "
        "when they are there",
    }
    print(metrics)
    save_figures(RESULTS, "Time to the first demo result", [figure])


if __name__ == "__main__":
    main()
