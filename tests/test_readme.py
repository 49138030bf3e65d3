"""The README's Python blocks run as written, so they never rot.

Blocks run in order in one namespace, in a temporary folder holding the `ratings.csv` the
quickstart reads. A block right after a `<!-- not run ... -->` line is skipped (it needs
the network or a server); every other block must run.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.DOTALL)


def python_blocks(text):
    """(code, runs) for each ```python block of `text`, in order."""
    return [
        (match["code"], not match["before"].strip().startswith("<!-- not run"))
        for match in _BLOCK.finditer(text)
    ]


def write_ratings_csv(path, num_users=300, num_items=200, seed=0):
    """A small log with string ids and 1-5 ratings, the shape the quickstart expects."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        for item in rng.choice(num_items, size=rng.integers(8, 30), replace=False):
            rows.append((f"user{user}", f"song{item}", int(rng.integers(1, 6))))
    pd.DataFrame(rows, columns=["user", "item", "rating"]).to_csv(path, index=False)


def test_python_blocks_are_found_and_skips_are_marked():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    assert blocks[0][1], "the quickstart (first block) must run"
    assert "from_dataframe" in blocks[0][0] and "export_saved_model" in blocks[0][0]
    assert python_blocks("x\n<!-- not run: net -->\n```python\nraise\n```\n") == [("raise", False)]


@pytest.mark.backend
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_ratings_csv(tmp_path / "ratings.csv")
    namespace = {"__name__": "__readme__"}
    ran = 0
    for code, runs in python_blocks(README.read_text(encoding="utf-8")):
        if runs:
            exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
            ran += 1
    assert ran >= 1
    # What the quickstart promises: original ids, best first, a saved model and an export.
    assert namespace["item_ids"].shape == (3, 10)
    assert str(namespace["item_ids"][0, 0]).startswith("song")
    assert np.all(np.diff(namespace["scores"], axis=1) <= 0)
    assert (tmp_path / "multvae.keras").is_file()
    assert any((tmp_path / "saved_models").glob("*/1/saved_model.pb"))
