"""KerasTuner search spaces: one `keras_tuner.HyperModel` per model family.

Needs the `tuning` extra (`pip install "keras-aerec[tuning]"`: KerasTuner, and TensorBoard
for TensorFlow). Each HyperModel takes the data-dependent arguments (numbers of users and
items) in `__init__`; `build(hp)` returns a compiled model whose hyperparameters are
named like the model's constructor arguments and default to the paper's values; training
knobs (batch size, KL annealing) are tuned in `fit(hp, model, train, validation)`, which
writes the protocol's validation metrics (`val_ndcg@100`, `val_rmse`, ...) into the logs.
`run_search` runs a whole resumable search under a benchmark protocol.
"""

from keras_aerec.hypermodels.auto_rec import AutoRecHyperModel
from keras_aerec.hypermodels.base import (
    METRIC_DIRECTIONS,
    AutoencoderHyperModel,
    ClosedFormHyperModel,
    get_objective,
)
from keras_aerec.hypermodels.cdae import CDAEHyperModel
from keras_aerec.hypermodels.deep_rec import DeepRecHyperModel
from keras_aerec.hypermodels.ease import EASEHyperModel
from keras_aerec.hypermodels.mult_dae import MultDAEHyperModel
from keras_aerec.hypermodels.mult_vae import MultVAEHyperModel
from keras_aerec.hypermodels.search import HYPERMODELS, TUNERS, check_search, run_search
from keras_aerec.hypermodels.svae import SVAEHyperModel

__all__ = [
    "HYPERMODELS",
    "METRIC_DIRECTIONS",
    "TUNERS",
    "AutoRecHyperModel",
    "AutoencoderHyperModel",
    "CDAEHyperModel",
    "ClosedFormHyperModel",
    "DeepRecHyperModel",
    "EASEHyperModel",
    "MultDAEHyperModel",
    "MultVAEHyperModel",
    "SVAEHyperModel",
    "check_search",
    "get_objective",
    "run_search",
]
