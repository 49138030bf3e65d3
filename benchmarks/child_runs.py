"""Running one measurement in a child process under a given Keras backend.

The backend (and peak memory, and compilation caches) belong to a process, so the
benchmark scripts measure each (backend, case) in a fresh child that prints one JSON line.
"""

import json
import os
import subprocess
import sys


def run_child(script: str, arguments: list, backend: str, label: str, env=None) -> dict:
    """Runs `python script ARGUMENTS` with `KERAS_BACKEND=backend` (and the variables in
    `env`); its last stdout line parsed as JSON. A failing child ends the benchmark with
    its stderr's tail."""
    done = subprocess.run(
        [sys.executable, script, *map(str, arguments)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "KERAS_BACKEND": backend},
    )
    if done.returncode != 0:
        raise SystemExit(f"{label} on {backend} exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
