"""Shared driver of the tuning scripts: arguments, ML-1M loading, summaries in results/."""

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

TUNING_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = os.environ.get(
    "KERAS_AEREC_DATA_DIR", str(TUNING_DIR.parent.parent / "shared" / "data")
)


def search_movielens(name: str, description: str, **search) -> dict:
    """Parses the command line, runs `run_search` on ML-1M, copies the summaries.

    Args:
        name: the search's name: its state goes to `tuning/runs/NAME/`, its summaries to
            `tuning/results/NAME.json` and `.md`.
        description: the script's help text.
        **search: `run_search` arguments (`model_name`, `protocol`, `tuner`, `max_trials`,
            `epochs`, `objective`); `--max-trials`, `--epochs` and `--tuner` override them.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="folder holding ml-1m/")
    parser.add_argument("--directory", default=str(TUNING_DIR / "runs" / name))
    parser.add_argument("--tuner", default=search.pop("tuner", "random"))
    parser.add_argument("--max-trials", type=int, default=search.pop("max_trials"))
    parser.add_argument("--epochs", type=int, default=search.pop("epochs", None))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    args = parser.parse_args()

    from keras_aerec.data import load_movielens
    from keras_aerec.hypermodels import run_search
    from keras_aerec.hypermodels.search import SUMMARY_JSON, SUMMARY_MARKDOWN

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    summary = run_search(
        interactions=load_movielens("1m", data_dir=args.data_dir),
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        directory=args.directory,
        seed=args.seed,
        overwrite=args.overwrite,
        verbose=2,
        **search,
    )
    results = TUNING_DIR / "results"
    results.mkdir(exist_ok=True)
    for source, suffix in ((SUMMARY_JSON, ".json"), (SUMMARY_MARKDOWN, ".md")):
        shutil.copyfile(os.path.join(args.directory, source), results / f"{name}{suffix}")
    print((results / f"{name}.md").read_text())
    return summary
