import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("KERAS_AEREC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir():
    """The MovieLens copies (../shared/data); skips the test with a message when absent."""
    if not (DATA_DIR / "ml-1m").is_dir():
        pytest.skip(f"MovieLens copies not found at {DATA_DIR} (set KERAS_AEREC_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    try:
        import keras

        keras.utils.set_random_seed(0)
    except ImportError:  # pragma: no cover
        pass
