import importlib
import inspect
import sys

import keras
import numpy as np
import pytest

keras_tuner = pytest.importorskip("keras_tuner")

from keras_aerec.data import (  # noqa: E402
    rating_holdout,
    strong_generalization,
    synthetic,
    temporal,
    weak_generalization,
)
from keras_aerec.data.sequences import time_ordered_part  # noqa: E402
from keras_aerec.evaluation.ranking import evaluate_ranking  # noqa: E402
from keras_aerec.experiments import MODELS  # noqa: E402
from keras_aerec.hypermodels import (  # noqa: E402
    HYPERMODELS,
    METRIC_DIRECTIONS,
    MultVAEHyperModel,
    SVAEHyperModel,
    get_objective,
)
from keras_aerec.hypermodels.base import decode_widths  # noqa: E402

# Training knobs and optimiser settings: the only names that are not constructor arguments.
TRAINING_KNOBS = {"batch_size", "learning_rate"}


@pytest.fixture(scope="module")
def data():
    return synthetic(num_users=160, num_items=200, density=0.08, seed=0)


@pytest.fixture(scope="module")
def splits(data):
    positives = data.to_implicit(3.0)
    return {
        "rating": rating_holdout(data, test=0.1, validation=0.1, seed=0),
        "strong": strong_generalization(positives, num_heldout_users=20, seed=0),
        "weak": weak_generalization(positives, test=0.2, validation=0.2, seed=0),
        "temporal": temporal(positives, num_heldout_users=20, seed=0),
    }


def _hypermodel(name, splits, **options):
    """The HyperModel of `name` on the split its protocol family uses."""
    hypermodel_class, fixed = HYPERMODELS[name]
    if MODELS[name].kind == "rating":
        split = splits["rating"]
    elif MODELS[name].kind == "sequence":
        split = splits["temporal"]
    else:  # CDAE's user vectors need the validation users in training
        split = splits["weak" if name == "cdae" else "strong"]
    return hypermodel_class.from_split(split, **fixed, **options), split


def test_missing_keras_tuner_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_tuner", None)
    for module in [name for name in sys.modules if name.startswith("keras_aerec.hypermodels")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError, match=r'pip install "keras-aerec\[tuning\]"'):
        importlib.import_module("keras_aerec.hypermodels")


@pytest.mark.backend
@pytest.mark.parametrize("name", sorted(HYPERMODELS))
def test_defaults_are_the_constructor_defaults(name, splits):
    hypermodel, _ = _hypermodel(name, splits)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    model = hypermodel.build(hp)
    constructor = inspect.signature(hypermodel.model_class.__init__).parameters
    config = model.get_config()
    for hp_name, value in hp.values.items():
        if hp_name in TRAINING_KNOBS:
            continue
        assert hp_name in constructor, (
            f"{hp_name} is not a {hypermodel.model_class.__name__} argument"
        )
        default = constructor[hp_name].default
        if isinstance(value, str) and isinstance(default, tuple | list):
            value = decode_widths(value)
            default = tuple(default)
        assert value == default, hp_name
        if hp_name in config:
            configured = config[hp_name]
            assert (tuple(configured) if isinstance(configured, list) else configured) == value
    if not hypermodel.recipe.closed_form:
        assert model.optimizer is not None  # build() returns a compiled model
        assert float(model.optimizer.learning_rate) == pytest.approx(hp.values["learning_rate"])
        assert hp.values["batch_size"] == hypermodel.recipe.batch_size


@pytest.mark.parametrize(
    "objective, kind, direction, message",
    [
        ("val_rmse", "ranking", None, "ranking evaluation writes"),
        ("val_ndcg@100", "rating", None, "rating evaluation writes"),
        ("ndcg@100", "ranking", None, "did you mean 'val_ndcg@100'"),
        ("val_ndcg@0", "ranking", None, "ranking evaluation writes"),
        ("val_ndcg", "ranking", None, "ranking evaluation writes"),
        ("val_auc@10", "ranking", None, "ranking evaluation writes"),
        ("val_rmse", "rating", "max", "should be 'min' \\(lower is better\\)"),
        ("val_recall@20", "ranking", "min", "should be 'max' \\(higher is better\\)"),
        (("val_rmse", "max"), "rating", None, "should be 'min'"),
        ("val_rmse", "rating", "up", "should be 'min' or 'max'"),
        (42, "rating", None, "should be a metric name"),
    ],
)
def test_bad_objectives_are_refused(objective, kind, direction, message):
    with pytest.raises(ValueError, match=message):
        get_objective(objective, kind, direction)


def test_objectives_take_the_metric_direction():
    assert get_objective(None, "ranking").name == "val_ndcg@100"
    assert get_objective(None, "rating").direction == "min"
    assert get_objective("val_recall@20", "ranking").direction == "max"
    assert get_objective(keras_tuner.Objective("val_mae", "min"), "rating").direction == "min"
    assert set(METRIC_DIRECTIONS) == {"rmse", "mae", "precision", "recall", "ndcg"}


@pytest.mark.backend
def test_ranking_fit_writes_the_objective_and_sets_annealing(splits):
    split = splits["strong"]
    hypermodel = MultVAEHyperModel.from_split(split, objective="val_recall@20", epochs=2)
    assert 20 in hypermodel.ks
    hp = keras_tuner.HyperParameters()
    hp.values.update({"hidden_dims": "300", "latent_dim": 50, "anneal_cap": 0.5})
    hp.values.update({"total_anneal_steps": 200, "batch_size": 125})
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, split.train, split.validation)
    assert len(history.history["val_recall@20"]) == 2
    assert 0.0 <= history.history["val_ndcg@100"][-1] <= 1.0
    sampling = model.get_layer("sampling")
    updates = 2 * int(np.ceil(split.train.shape[0] / 125))
    assert float(keras.ops.convert_to_numpy(sampling.anneal_step)) == updates
    assert float(keras.ops.convert_to_numpy(sampling.kl_weight())) == pytest.approx(
        min(0.5, updates / 200)
    )
    assert model.get_config()["anneal_cap"] == 0.5


@pytest.mark.backend
def test_svae_fit_reads_time_ordered_sequences_and_sets_annealing(splits):
    split = splits["temporal"]
    hypermodel = SVAEHyperModel.from_split(split, objective="val_recall@20", epochs=2)
    hp = keras_tuner.HyperParameters()
    hp.values.update({"item_embedding_dim": 64, "rnn_units": 100, "hidden_units": 100})
    hp.values.update({"latent_dim": 32, "next_k": 2, "max_len": 50, "batch_size": 32})
    hp.values.update({"anneal_cap": 0.5, "total_anneal_steps": 200, "learning_rate": 1e-2})
    model = hypermodel.build(hp)
    assert (model.next_k, model.max_len, model.rnn_units) == (2, 50, 100)
    history = hypermodel.fit(hp, model, split.train_timestamps, split.validation)
    assert len(history.history["val_recall@20"]) == 2
    # The validation users were read in time order, and the best epoch's weights restored.
    again = evaluate_ranking(model, time_ordered_part(split.validation), ks=(20,))
    assert again["recall@20"] == pytest.approx(max(history.history["val_recall@20"]))
    assert model.get_config()["anneal_cap"] == 0.5
    assert model.get_config()["total_anneal_steps"] == 200


def test_svae_fit_needs_the_training_timestamps(splits):
    split = splits["strong"]  # random fold-in, no timestamps of the held-out users
    hypermodel = SVAEHyperModel.from_split(split, epochs=1)
    hp = keras_tuner.HyperParameters()
    hp.values.update({"item_embedding_dim": 64, "rnn_units": 100, "hidden_units": 100})
    model = hypermodel.build(hp)
    with pytest.raises(ValueError, match="fold_in_timestamps"):
        hypermodel.fit(hp, model, split.train_timestamps, split.validation)


@pytest.mark.backend
def test_rating_fit_stops_early_on_validation_rmse(splits):
    hypermodel, split = _hypermodel("i-autorec", splits, epochs=8, patience=1)
    hp = keras_tuner.HyperParameters()
    hp.values.update({"hidden_units": 100, "learning_rate": 0.05})
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, split.train, split.validation)
    rmse = history.history["val_rmse"]
    assert 1 <= len(rmse) <= 8
    if len(rmse) < 8:  # stopped: the last epoch did not improve on the best
        assert rmse[-1] >= min(rmse)


@pytest.mark.backend
def test_cdae_fit_passes_user_positions(splits):
    hypermodel, split = _hypermodel("cdae", splits, epochs=1)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, split.train, split.validation)
    assert 0.0 <= history.history["val_ndcg@100"][0] <= 1.0


@pytest.mark.backend
def test_closed_form_fit_reports_one_epoch_to_the_tuner_callbacks(splits):
    hypermodel, split = _hypermodel("ease", splits)
    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, dict(logs)))

    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    logs = hypermodel.fit(hp, model, split.train, split.validation, callbacks=[Recorder()])
    assert seen == [(0, logs)]
    assert 0.0 < logs["val_ndcg@100"] <= 1.0
    assert hp.values == {"l2": 500.0}


@pytest.mark.backend
def test_fit_without_validation_is_refused(splits):
    hypermodel, split = _hypermodel("ease", splits)
    hp = keras_tuner.HyperParameters()
    with pytest.raises(ValueError, match="validation part"):
        hypermodel.fit(hp, hypermodel.build(hp), split.train, None)
