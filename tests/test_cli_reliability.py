"""The CLI under bad input and faults: quiet start, run identity, atomic saves, resume."""

import contextlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from keras_aerec.cli import _saved_run, common
from keras_aerec.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "tfg_optimizer", "empty op name")


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _subprocess(args, **kwargs):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, **kwargs
    )


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ quiet, fast start


def test_help_imports_no_backend_and_is_fast():
    code = (
        "import sys\n"
        "from keras_aerec_cli import build_parser\n"
        "parser = build_parser()\n"
        "for command in ('', 'demo', 'benchmark', 'train', 'evaluate', 'recommend', 'export', 'tune'):\n"
        "    try:\n"
        "        parser.parse_args([command, '--help'] if command else ['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n"
    )
    result = _subprocess(["-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    # `python -m keras_aerec` imports the package first: it must defer the backend too.
    for module in ("keras_aerec_cli", "keras_aerec"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        help_run = _subprocess(["-m", module, "--help"])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU time rather than wall time: the figure must not depend on the machine's load.
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        assert help_run.returncode == 0 and "train" in help_run.stdout
        assert cpu < 1.5, f"python -m {module} --help took {cpu:.2f} s of CPU"


def test_import_keras_aerec_registers_models_for_load_model():
    # The command defers the imports; a plain `import keras_aerec` must not.
    code = (
        "import keras, keras_aerec\n"
        "print('keras_aerec>MultVAE' in keras.saving.get_custom_objects())\n"
    )
    result = _subprocess(["-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("keras-aerec ")


def test_static_names_match_the_recipes():
    from keras_aerec.cli import export
    from keras_aerec.experiments import MODELS, PROTOCOLS
    from keras_aerec.export import saved_model

    assert sorted(common.MODEL_NAMES) == sorted(MODELS)
    assert tuple(common.PROTOCOL_NAMES) == tuple(PROTOCOLS)
    assert export.DEFAULT_DIRECTORY == saved_model.DEFAULT_DIRECTORY
    assert export.MODELS_CONFIG == saved_model.MODELS_CONFIG


def test_backend_noise_filter_drops_only_noise():
    code = (
        "import os\n"
        "import keras_aerec_cli\n"
        "keras_aerec_cli._cli()  # the command's import path: no backend loaded yet\n"
        "from keras_aerec.cli.common import BackendNoiseFilter\n"
        "noise = BackendNoiseFilter(); noise.start()\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called\\n')\n"
        "os.write(2, b'I0000 00:00:1795.7 5818 port.cc:153] oneDNN custom operations\\n')\n"
        "os.write(2, b'E0000 00:00:17.3 99 meta_optimizer.cc:967] tfg_optimizer{} failed\\n')\n"
        "os.write(2, b'a real error\\n')\n"
        "noise.stop()\n"
    )
    result = _subprocess(["-c", code])
    assert result.stderr == "a real error\n"


# ------------------------------------------------------------------ numeric options


@pytest.mark.parametrize(
    "argv, words",
    [
        (["benchmark", "--epochs", "0"], ["--epochs", "positive"]),
        (["benchmark", "--epochs", "-5"], ["--epochs", "positive"]),
        (["train", "ease", "--batch-size", "0", "--output", "m.keras"], ["--batch-size"]),
        (["train", "ease", "--seed", "-1", "--output", "m.keras"], ["--seed"]),
        (["train", "ease", "--seed", "1e99", "--output", "m.keras"], ["--seed"]),
        (["train", "ease", "--set", "l2=NaN", "--output", "m.keras"], ["--set", "finite"]),
        (["tune", "ease", "--max-trials", "0"], ["--max-trials"]),
        (["train", "ease", "--threshold", "inf", "--output", "m.keras"], ["--threshold"]),
    ],
)
def test_numeric_options_are_checked_by_argparse(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert all(word in error for word in words), error


@pytest.mark.parametrize(
    "setting, words",
    [
        ("learning_rate=-0.01", ["learning_rate", "> 0", "-0.01"]),
        ("learning_rate=0", ["learning_rate", "> 0"]),
        ("hidden_units=0", ["hidden_units", "positive integer"]),
        ("hidden_units=abc", ["hidden_units", "number"]),
        ("l2=-1", ["l2", ">= 0"]),
    ],
)
def test_set_values_are_checked_before_training(setting, words, tmp_path):
    output = tmp_path / "m.keras"
    argv = ["train", "u-autorec", "--quick", "--set", setting, "--output", str(output)]
    code, _, err = _cli([*argv, "--quiet"])
    assert code == 2
    line = _one_line_error(err)
    assert all(word in line for word in words), line
    assert not output.exists()


def test_divergence_guard():
    from keras_aerec.experiments.training import DivergenceGuard, TrainingDivergedError

    def run(losses):
        guard = DivergenceGuard()
        guard.on_train_begin()
        for epoch, loss in enumerate(losses):
            guard.on_epoch_end(epoch, {"loss": loss})

    run([524.0, 300.0, 310.0, 290.0, 295.0, 280.0])  # healthy, with noise: no error
    run([100.0, 40.0, 45.0, 50.0, 55.0])  # rising, but below the first epoch: no error
    with pytest.raises(TrainingDivergedError, match="epoch 4: the loss rose for 3 epochs"):
        run([524.0, 700.0, 1300.0, 2212.0])
    with pytest.raises(TrainingDivergedError, match="epoch 2: the loss is nan"):
        run([1.0, float("nan")])
    with pytest.raises(TrainingDivergedError, match="over 10x"):
        run([100.0, 50.0, 600.0])


def test_diverging_training_saves_nothing(tmp_path):
    output = tmp_path / "m.keras"
    argv = ["train", "u-autorec", "--quick", "--epochs", "3", "--set", "l2=1e38"]
    code, _, err = _cli([*argv, "--output", str(output), "--quiet"])
    assert code == 2
    line = _one_line_error(err)
    assert "diverged" in line and "Nothing was saved" in line
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ run identity


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """A listening log (string ids, no ratings, a header) and an EASE model trained on it."""
    from keras_aerec.data.synthetic import synthetic

    folder = tmp_path_factory.mktemp("own")
    positives = synthetic(seed=0).to_implicit(3.0).matrix.tocoo()
    lines = ["listener,song"] + [
        f"u{row},song-{col}" for row, col in zip(positives.row, positives.col, strict=True)
    ]
    log = folder / "plays.csv"
    log.write_text("\n".join(lines) + "\n")
    model = folder / "ease.keras"
    argv = ["train", "ease", "--data-file", str(log), "--columns", "user_id,item_id"]
    code, out, err = _cli([*argv, "--header", "--implicit", "--output", str(model), "--quiet"])
    assert code == 0, err
    return log, model, out


def test_own_data_train_evaluate_recommend(own_data):
    log, model, train_out = own_data
    record = _saved_run.read_record(str(model))
    assert record["dataset"] == "file" and record["implicit"] is True
    code, out, err = _cli(["evaluate", str(model), "--quiet"])
    assert code == 0, err
    assert out.splitlines()[0] in train_out and out.splitlines()[-1] in train_out
    code, out, err = _cli(["recommend", str(model), "--user-id", "u3", "--k", "5", "--quiet"])
    assert code == 0, err
    assert out.startswith("top-5 for user u3 (ease, plays.csv):")
    items = [line.split()[1] for line in out.splitlines()[2:]]
    assert len(items) == 5 and all(item.startswith("song-") for item in items)
    heard = {line.split(",")[1] for line in log.read_text().splitlines() if line.startswith("u3,")}
    assert not heard & set(items)


def test_rating_model_refuses_implicit_data(own_data, tmp_path):
    log, _, _ = own_data
    argv = ["train", "u-autorec", "--data-file", str(log), "--columns", "user_id,item_id"]
    code, _, err = _cli([*argv, "--header", "--implicit", "--output", str(tmp_path / "m.keras")])
    assert code == 2
    assert "predicts ratings" in _one_line_error(err)


def test_evaluate_refuses_other_data(own_data, tmp_path):
    log, model, _ = own_data
    lines = log.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",song-0"  # one play moved to another song
    edited = tmp_path / "edited.csv"
    edited.write_text("\n".join(lines) + "\n")
    code, _, err = _cli(["evaluate", str(model), "--data-file", str(edited), "--quiet"])
    assert code == 2
    line = _one_line_error(err)
    assert "edited.csv" in line and "not the data the model was trained on" in line
    code, _, err = _cli(["evaluate", str(model), "--dataset", "synthetic", "--quiet"])
    assert code == 2
    assert "users instead of" in _one_line_error(err)


def test_sidecar_edits_are_refused_and_non_objects_named(own_data, tmp_path):
    import shutil

    _, model, _ = own_data
    copy = tmp_path / "ease.keras"
    shutil.copy(model, copy)
    code, _, err = _cli(["evaluate", str(copy), "--quiet"])
    assert code == 0, "the record inside the model is enough; the sidecar is a copy"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    sidecar["seed"] = 1
    copy.with_suffix(".json").write_text(json.dumps(sidecar))
    code, _, err = _cli(["evaluate", str(copy), "--quiet"])
    assert code == 2
    assert "seed=1 (model: 0)" in _one_line_error(err)
    copy.with_suffix(".json").write_text("[1, 2]")
    code, _, err = _cli(["evaluate", str(copy), "--quiet"])
    assert code == 2
    assert "JSON object" in _one_line_error(err)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_model_file(own_data, tmp_path, damage):
    _, model, _ = own_data
    data = bytearray(model.read_bytes())
    if damage == "flip":
        data[len(data) // 3] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    broken = tmp_path / "broken.keras"
    broken.write_bytes(bytes(data))
    code, _, err = _cli(["evaluate", str(broken), "--quiet"])
    assert code == 2
    assert "damaged" in _one_line_error(err)


# ------------------------------------------------------------------ atomic pair


class _FakeModel:
    """Saves a small zip as Keras would (what the atomicity of `publish_run` depends on)."""

    def __init__(self, version):
        self.version = version

    def save(self, path):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", json.dumps({"version": self.version}))


_KILL_AT = """
import os, sys, zipfile
sys.path.insert(0, {tests!r})
from test_cli_reliability import _FakeModel
from keras_aerec.cli import _saved_run
step = {step}
calls = []
def die_on(name, original):
    def wrapper(*args, **kwargs):
        calls.append(name)
        if len(calls) == step:
            os._exit(137)
        return original(*args, **kwargs)
    return wrapper
_saved_run.os.replace = die_on("replace", os.replace)
_saved_run.os.fsync = die_on("fsync", os.fsync)
zipfile.ZipFile.writestr = die_on("writestr", zipfile.ZipFile.writestr)
_saved_run.publish_run(_FakeModel(2), {path!r}, {{"model": "ease", "dataset": "synthetic",
                       "protocol": "article", "seed": 2}})
"""


def test_model_and_record_change_together_under_kill(tmp_path):
    path = str(tmp_path / "m.keras")
    record = {"model": "ease", "dataset": "synthetic", "protocol": "article", "seed": 1}
    tests = os.path.dirname(os.path.abspath(__file__))
    outcomes = []
    # Steps of publish_run: writestr (record into the zip), fsync, replace (model),
    # fsync, replace (sidecar); the last "step" lets it finish.
    for step in range(1, 7):
        _saved_run.publish_run(_FakeModel(1), path, record)
        result = _subprocess(["-c", _KILL_AT.format(tests=tests, step=step, path=path)])
        assert result.returncode in (0, 137), result.stderr
        seed = _saved_run.read_record(path)["seed"]  # never refused, never mixed
        with zipfile.ZipFile(path) as archive:
            version = json.loads(archive.read("config.json"))["version"]
        assert seed == version, f"kill at step {step}: model {version} with record {seed}"
        outcomes.append(seed)
        _saved_run.remove_leftovers(path)  # what the next `train` does first
        assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]
    assert outcomes[0] == 1 and outcomes[-1] == 2


def test_leftovers_of_dead_processes_are_removed(tmp_path):
    published = tmp_path / "m.keras"
    published.write_text("published")
    dead = tmp_path / ".m.99999999.tmp.keras"
    dead.write_text("partial")
    alive = tmp_path / f".m.{os.getppid()}.tmp.keras"
    alive.write_text("being written")
    removed = _saved_run.remove_leftovers(str(published))
    assert removed == [str(dead)]
    assert published.read_text() == "published" and alive.exists()


# ------------------------------------------------------------------ resume after kill -9


@pytest.mark.backend
def test_train_resumes_after_kill_and_prints_no_backend_noise(tmp_path):
    # CDAE's tracing makes TensorFlow log `E0000 ... tfg_optimizer ... empty op name`.
    output = tmp_path / "m.keras"
    argv = ["-m", "keras_aerec_cli", "train", "cdae", "--protocol", "recbole", "--quick"]
    argv += ["--epochs", "6", "--set", "learning_rate=0.002", "--output", str(output)]
    env = {**os.environ, "PYTHONPATH": ROOT}
    process = subprocess.Popen(
        [sys.executable, *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = tmp_path / ".m.keras.backup" / "latest.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["folder"] >= "epoch-00002":
            break
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = int(json.loads(latest.read_text())["folder"].split("-")[1])
    assert not output.exists()
    result = _subprocess(argv)
    assert result.returncode == 0, result.stderr
    assert f"resumed from epoch {done}" in result.stderr
    assert not [word for word in NOISE if word in result.stderr], result.stderr
    assert "test metrics" in result.stdout
    record = _saved_run.read_record(str(output))
    assert done < record["epochs_run"] <= 6 and 1 <= record["best_epoch"] <= record["epochs_run"]
    assert not (tmp_path / ".m.keras.backup").exists()


@pytest.mark.backend
def test_training_backup_restores_weights_history_and_early_stopping(tmp_path):
    import numpy as np

    from keras_aerec.data.synthetic import synthetic
    from keras_aerec.experiments import MODELS, get_protocol
    from keras_aerec.experiments.training import TrainingBackup, fit_model

    recipe = MODELS["multdae"]
    split = get_protocol("liang").split("ranking", synthetic(num_users=300, num_items=100), 0)

    def fit(epochs):
        model = recipe.build(split, recipe.hyperparameters(quick=True))
        backup = TrainingBackup(str(tmp_path / "backup"), identity="run")
        history = fit_model(
            model, "ranking", split.train, split.validation, epochs=epochs, batch_size=64,
            monitor="val_ndcg@20", ks=(20,), callbacks=[backup], verbose=0,
        )  # fmt: skip
        return model, history, backup

    trained, history, _ = fit(3)
    # A new process after a kill once training ended: no epoch left, the kept (best)
    # weights and the whole history come back from the backup.
    restored, resumed_history, backup = fit(3)
    assert backup.resumed_from == 3
    assert resumed_history.history == history.history
    for before, after in zip(trained.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_allclose(before, after)
    _, longer, _ = fit(4)
    assert (
        len(longer.history["loss"]) == 4 and longer.history["loss"][:3] == history.history["loss"]
    )
    assert not TrainingBackup(str(tmp_path / "backup"), identity="other").completed_epochs


# ------------------------------------------------------------------ reports, errors


def test_benchmark_reports_never_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["benchmark", "--models", "ease", "--epochs", "1", "--quiet"]
    for _ in range(2):
        code, _, err = _cli(argv)
        assert code == 0, err
    folders = sorted(os.listdir(tmp_path / "reports"))
    assert len(folders) == 2 and all(f.startswith("synthetic-article-") for f in folders)
    explicit = ["--output-dir", str(tmp_path / "mine")]
    assert _cli([*argv, *explicit])[0] == 0
    code, _, err = _cli([*argv, *explicit])
    assert code == 2 and "--overwrite" in _one_line_error(err)
    assert _cli([*argv, *explicit, "--overwrite"])[0] == 0


def test_tf_config_that_is_not_json_names_it(monkeypatch):
    from keras_aerec import distribute

    monkeypatch.setenv("TF_CONFIG", "{cluster: oops")
    with pytest.raises(
        ValueError, match=r"`TF_CONFIG` should be a JSON object .*\"index\": 0}}\. Received"
    ):
        distribute._check_tf_config()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    distribute._check_tf_config()


def test_unexpected_errors_are_one_line_with_a_debug_hint(monkeypatch, tmp_path):
    from keras_aerec.cli import train

    def broken(args):
        raise KeyError("internal")

    monkeypatch.setattr(train, "run", broken)
    argv = ["train", "ease", "--output", str(tmp_path / "m.keras")]
    code, _, err = _cli(argv)
    assert code == 2
    line = _one_line_error(err)
    assert line.startswith("keras-aerec train: error:") and "--debug" in line
    with pytest.raises(KeyError):
        _cli([*argv, "--debug"])


def test_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorflow")
    logs = tmp_path / "logs"
    argv = ["train", "multdae", "--protocol", "liang", "--quick", "--epochs", "1"]
    code, _, err = _cli([*argv, "--tensorboard", str(logs), "--output", str(tmp_path / "m.keras")])
    assert code == 0, err
    assert list(logs.rglob("events.out.tfevents*"))


def test_trial_numbers_are_one_based():
    pytest.importorskip("keras_tuner")
    from keras_aerec.hypermodels.search import trial_number

    assert trial_number("00") == 1 and trial_number("7") == 8
