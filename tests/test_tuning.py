import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import pytest

keras_tuner = pytest.importorskip("keras_tuner")

from keras_aerec.cli import tune  # noqa: E402
from keras_aerec.data import synthetic  # noqa: E402
from keras_aerec.experiments import MODELS  # noqa: E402
from keras_aerec.hypermodels import HYPERMODELS, TUNERS, run_search  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    return synthetic(num_users=400, num_items=200, density=0.05, seed=0)


def _trial_states(project: Path) -> dict:
    states = {}
    for path in project.glob("trial_*/trial.json"):
        try:
            trial = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):  # being written
            continue
        states[trial["trial_id"]] = trial["status"]
    return states


def test_every_benchmark_model_has_a_hypermodel():
    assert set(HYPERMODELS) == set(MODELS)
    assert tuple(TUNERS) == tune.TUNER_NAMES


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"model_name": "autorecc"}, "`model_name` should be one of"),
        ({"tuner": "grid"}, "`tuner` should be one of"),
        ({"max_trials": 0}, "`max_trials` should be a positive integer"),
        ({"objective": "val_rmse"}, "ranking evaluation writes"),
        ({"objective": "val_ndcg@1000"}, "needs at least 1000 items"),
        ({"objective": "val_ndcg@100", "direction": "min"}, "should be 'max'"),
        (
            {"model_name": "i-autorec", "objective": "val_rmse", "direction": "max"},
            "should be 'min'",
        ),
        ({"model_name": "i-autorec", "objective": "val_recall@20"}, "rating evaluation writes"),
        ({"model_name": "ease", "tuner": "hyperband"}, "closed form"),
        ({"protocol": "article"}, "has none: use 'liang', 'recbole' or 'temporal'"),
        ({"model_name": "svae", "protocol": "liang"}, "evaluates svae \\(article, temporal\\)"),
        ({"model_name": "i-autorec", "protocol": "temporal"}, "evaluates i-autorec"),
        ({"protocol": "leave-one-out"}, "`protocol` should be one of"),
    ],
)
def test_bad_input_fails_before_any_trial(data, tmp_path, arguments, message):
    arguments = {"model_name": "multvae", "max_trials": 2, **arguments}
    with pytest.raises(ValueError, match=message):
        run_search(interactions=data, directory=str(tmp_path / "search"), **arguments)
    assert not list(tmp_path.glob("search/*/trial_*"))


@pytest.mark.backend
def test_search_summary_compares_best_with_defaults(data, tmp_path):
    directory = tmp_path / "search"
    summary = run_search(
        "multvae", data, max_trials=2, epochs=2, directory=str(directory), seed=0, verbose=0
    )
    saved = json.loads((directory / "summary.json").read_text())
    assert saved["best"] == json.loads(json.dumps(summary["best"]))
    assert [trial["trial_id"] for trial in saved["trials"]] == ["0", "1"]
    assert all(trial["status"] == "COMPLETED" for trial in saved["trials"])
    defaults = saved["defaults"]
    assert defaults["trial_id"] == "0"  # the first trial runs the paper's defaults
    assert defaults["hyperparameters"]["latent_dim"] == 200
    assert defaults["hyperparameters"]["anneal_cap"] == 0.2
    for role in ("best", "defaults"):
        assert 0.0 <= saved[role]["test"]["ndcg@100"] <= 1.0
        assert saved[role]["score"] == pytest.approx(saved[role]["metrics"]["val_ndcg@100"])
    assert saved["best"]["score"] >= defaults["score"]
    assert {hp["name"] for hp in saved["search_space"]} >= {
        "latent_dim",
        "batch_size",
        "anneal_cap",
    }
    assert all(1 <= trial["epochs_run"] <= 2 for trial in saved["trials"])
    markdown = (directory / "summary.md").read_text()
    assert "## Best configuration vs the paper's defaults" in markdown
    assert "| defaults | 1 |" in markdown  # KerasTuner's "Trial #1"

    # A finished search reloads without training again (the resume test covers a kill).
    again = run_search("multvae", data, max_trials=2, epochs=2, directory=str(directory))
    assert again["trials"] == saved["trials"] and again["best"] == saved["best"]
    # Other settings in the same directory are refused rather than mixed in.
    with pytest.raises(ValueError, match="holds a search with other settings"):
        run_search("multvae", data, max_trials=2, epochs=3, directory=str(directory))


@pytest.mark.backend
def test_hyperband_search_of_autorec(data, tmp_path):
    autorec = run_search(
        "i-autorec", data, tuner="hyperband", max_trials=2, epochs=3, directory=str(tmp_path / "a")
    )
    assert len(autorec["trials"]) == 2
    assert all("tuner/epochs" in trial["hyperparameters"] for trial in autorec["trials"])
    assert 0.0 < autorec["best"]["test"]["rmse"] < 4.0


@pytest.mark.backend
def test_bayesian_search_of_ease(data, tmp_path):
    pytest.importorskip("sklearn", reason="the bayesian tuner needs keras-tuner[bayesian]")
    summary = run_search("ease", data, tuner="bayesian", max_trials=3, directory=str(tmp_path))
    assert len(summary["trials"]) == 3 and summary["defaults"]["trial_id"] == "0"


def test_bayesian_without_scikit_learn_names_the_extra(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"keras-tuner\[bayesian\]"):
        run_search("ease", data, tuner="bayesian", max_trials=3, directory=str(tmp_path))
    assert not list(tmp_path.iterdir())


CHILD = textwrap.dedent(
    """
    import sys

    from keras_aerec.data import synthetic
    from keras_aerec.hypermodels import base, run_search

    directory, log = sys.argv[1], sys.argv[2]
    train = base.AutoencoderHyperModel.fit

    def logged_fit(self, hp, model, *args, **kwargs):
        # The tuner's callbacks carry the trial: record which trial trains.
        trial_id = next(c.trial.trial_id for c in kwargs["callbacks"] if hasattr(c, "trial"))
        with open(log, "a") as handle:
            handle.write(trial_id + "\\n")
        return train(self, hp, model, *args, **kwargs)

    base.AutoencoderHyperModel.fit = logged_fit
    data = synthetic(num_users=400, num_items=200, density=0.05, seed=0)
    run_search("i-autorec", data, max_trials=3, epochs=3, directory=directory)
    """
)


# KerasTuner's oracle files and our resume logic do not depend on the backend, so this and the
# other resume test run under the suite's first backend only; each hypermodel's training is
# tested on every backend in test_hypermodels.py.
def test_search_killed_with_sigkill_resumes_without_rerunning_finished_trials(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory, log = tmp_path / "search", tmp_path / "fits.log"
    project = directory / "i-autorec"
    command = [sys.executable, str(script), str(directory), str(log)]
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}

    child = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while "COMPLETED" not in _trial_states(project).values():
            assert child.poll() is None, "the search ended before a trial completed"
            assert time.monotonic() < deadline, "no trial completed in 120 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    finished = {key for key, status in _trial_states(project).items() if status == "COMPLETED"}
    assert 1 <= len(finished) < 3
    first_run = log.read_text().split()

    subprocess.run(command, env=env, cwd=REPO_ROOT, check=True, stderr=subprocess.DEVNULL)
    second_run = log.read_text().split()[len(first_run) :]
    assert not finished & set(second_run), "a finished trial was trained again"
    interrupted = set(first_run) - finished
    assert interrupted <= set(second_run), "the interrupted trial was not re-run"
    states = _trial_states(project)
    assert sorted(states) == ["0", "1", "2"]
    assert set(states.values()) == {"COMPLETED"}
    summary = json.loads((directory / "summary.json").read_text())
    assert len(summary["trials"]) == 3 and summary["best"] is not None


def _parse(argv):
    parser = argparse.ArgumentParser(prog="keras-aerec")
    tune.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.backend
def test_cli_tune_writes_the_summary(tmp_path, capsys):
    directory = tmp_path / "cli"
    args = _parse(
        [
            "tune",
            "ease",
            "--dataset",
            "synthetic",
            "--max-trials",
            "2",
            "--directory",
            str(directory),
            "--quiet",
        ]
    )
    tune.run(args)
    output = capsys.readouterr().out
    assert "| defaults | 1 |" in output
    assert f"wrote {directory / 'summary.json'}" in output
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["model"] == "ease" and len(summary["trials"]) == 2
    assert summary["defaults"]["hyperparameters"] == {"l2": 500.0}
    assert summary["best"]["best_epoch"] is None  # closed form: no epochs


# CLI plumbing (protocol, objective, summary): one backend; SVAE's hypermodel is tested on
# every backend in test_hypermodels.py.
def test_cli_tune_svae_under_the_temporal_protocol(tmp_path, capsys):
    directory = tmp_path / "svae"
    command = "tune svae --dataset synthetic --protocol temporal --max-trials 1 --epochs 1"
    args = _parse([*command.split(), "--directory", str(directory), "--quiet"])
    tune.run(args)
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["model"] == "svae" and summary["protocol"] == "temporal"
    assert summary["objective"] == {"name": "val_ndcg@100", "direction": "max"}
    assert summary["defaults"]["hyperparameters"]["rnn_units"] == 200
    assert summary["defaults"]["hyperparameters"]["total_anneal_steps"] == 20000
    assert 0.0 < summary["defaults"]["test"]["ndcg@100"] <= 1.0
    assert summary["kind"] == "ranking"


def test_cli_tune_refuses_bad_arguments_before_loading_data(tmp_path, capsys):
    args = _parse(
        [
            "tune",
            "i-autorec",
            "--objective",
            "val_rmse",
            "--direction",
            "max",
            "--data-dir",
            str(tmp_path),
        ]
    )
    with pytest.raises(ValueError, match="should be 'min'"):
        tune.run(args)
    # SVAE under a protocol without time order: refused before the data is loaded.
    args = _parse(["tune", "svae", "--protocol", "liang", "--data-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="should be one that evaluates svae"):
        tune.run(args)
    with pytest.raises(SystemExit):
        _parse(["tune", "autorecc"])
    assert "invalid choice: 'autorecc'" in capsys.readouterr().err


def test_trial_created_but_not_yet_in_oracle_state_is_rerun_on_resume(tmp_path, monkeypatch):
    """A kill right after a new trial's trial.json is written (RUNNING), before oracle.json
    lists it as ongoing, must not lose the trial: the resumed search trains it."""
    data = synthetic(num_users=300, num_items=150, density=0.05, seed=0)
    directory = tmp_path / "search"
    run_search("i-autorec", data, max_trials=2, epochs=1, directory=str(directory))
    project = directory / "i-autorec"
    # Rewind the state to the moment of such a kill: trial 1 RUNNING, unknown to the oracle.
    trial_file = project / "trial_1" / "trial.json"
    trial = json.loads(trial_file.read_text())
    trial.update(status="RUNNING", metrics={"metrics": {}})
    trial_file.write_text(json.dumps(trial))
    oracle_file = project / "oracle.json"
    oracle = json.loads(oracle_file.read_text())
    oracle["end_order"] = [trial_id for trial_id in oracle["end_order"] if trial_id != "1"]
    oracle["ongoing_trials"] = {}
    oracle_file.write_text(json.dumps(oracle))

    from keras_aerec.hypermodels import base

    trained = []
    original_fit = base.AutoencoderHyperModel.fit

    def logged_fit(self, hp, model, *args, **kwargs):
        trained.append(next(c.trial.trial_id for c in kwargs["callbacks"] if hasattr(c, "trial")))
        return original_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(base.AutoencoderHyperModel, "fit", logged_fit)
    run_search("i-autorec", data, max_trials=2, epochs=1, directory=str(directory))
    assert trained == ["1"]
    assert _trial_states(project) == {"0": "COMPLETED", "1": "COMPLETED"}
