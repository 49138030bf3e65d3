import contextlib
import io
import json
import os
import shutil
import stat

import pytest

from keras_aerec.cli.main import main

pytestmark = pytest.mark.backend

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, separator, *body = rows
    assert all(set(cell) <= {"-", ":"} for cell in separator)
    return [header, *body]


def test_benchmark_writes_table_json_and_plots(tmp_path, capsys):
    output = tmp_path / "report"
    code = main(
        [
            "benchmark",
            "--dataset",
            "synthetic",
            "--protocol",
            "article",
            "--models",
            "ease",
            "u-autorec",
            "--epochs",
            "2",
            "--output-dir",
            str(output),
            "--quiet",
        ]
    )
    assert code == 0
    header, *rows = _table_rows((output / "report.md").read_text())
    assert header[:5] == ["model", "protocol", "seeds", "best epoch", "epochs run"]
    assert [row[0] for row in rows] == ["ease", "u-autorec"]
    ndcg = header.index("ndcg@100")
    rmse = header.index("rmse")
    assert 0.0 < float(rows[0][ndcg]) <= 1.0
    assert 0.0 < float(rows[1][rmse]) < 2.0
    results = json.loads((output / "results.json").read_text())["results"]
    assert results[1]["history"]["val_rmse"], "learning curve of the rating model is recorded"
    pngs = sorted(path.name for path in output.glob("*.png"))
    assert pngs == ["learning_curves.png", "ranking_metrics.png", "rating_metrics.png"]
    for name in pngs:
        assert (output / name).read_bytes()[:8] == PNG_MAGIC
    assert "wrote" in capsys.readouterr().out


def test_unknown_model_lists_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--models", "autorecc"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "autorecc" in error and "multvae" in error


def test_unknown_dataset_lists_valid_ones(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--dataset", "ml-2m"])
    error = capsys.readouterr().err
    assert "ml-2m" in error and "latest-small" in error


def test_missing_data_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "ml-1m").mkdir()
    code = main(["benchmark", "--dataset", "ml-1m", "--data-dir", str(tmp_path), "--quiet"])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "ratings" in error and str(tmp_path) in error
    assert "Traceback" not in error


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    code = main(["demo", "--output-dir", str(locked / "out")])
    assert code == 2
    assert "output directory" in capsys.readouterr().err


def test_output_directory_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("not a directory")
    code = main(["demo", "--output-dir", str(target)])
    assert code == 2
    error = capsys.readouterr().err
    assert "output directory" in error and "Traceback" not in error


# --------------------------------------------------------------- train / evaluate / recommend

TRAINED = {"ease": "article", "u-autorec": "article", "cdae": "recbole"}


def _run_cli(argv):
    """`main(argv)` with its stdout and stderr captured (usable in module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _metric_block(output: str) -> list[str]:
    """The `test metrics (...)` title and its metric lines."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("test metrics"))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line)
    return block


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each model of TRAINED trained once (quick, 2 epochs): name -> (path, stdout)."""
    folder = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, protocol in TRAINED.items():
        path = folder / f"{name}.keras"
        argv = ["train", name, "--dataset", "synthetic", "--protocol", protocol, "--quick"]
        code, out, err = _run_cli([*argv, "--epochs", "2", "--output", str(path), "--quiet"])
        assert code == 0, err
        runs[name] = (path, out)
    return runs


def test_train_writes_model_sidecar_and_metrics(trained):
    path, out = trained["u-autorec"]
    assert path.is_file()
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["model"] == "u-autorec" and sidecar["dataset"] == "synthetic"
    assert sidecar["protocol"] == "article" and sidecar["seed"] == 0
    assert sidecar["hyperparameters"]["hidden_units"] == 100  # the quick recipe
    assert sidecar["epochs_run"] == 2 and 1 <= sidecar["best_epoch"] <= 2
    assert set(sidecar["validation_metrics"]) == {"val_rmse", "val_mae"}
    assert 0.0 < sidecar["test_metrics"]["rmse"] < 2.0
    assert "validation metrics" in out and f"wrote {path}" in out
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], "the atomic save leaves no temporary file"


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_evaluate_prints_the_metrics_train_printed(trained, name):
    path, train_out = trained[name]
    code, out, err = _run_cli(["evaluate", str(path), "--quiet"])
    assert code == 0, err
    block = _metric_block(out)
    assert len(block) > 1
    assert block == _metric_block(train_out)


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_recommend_prints_k_unseen_items_with_titles(trained, name):
    from keras_aerec.data.synthetic import synthetic

    path, _ = trained[name]
    code, out, err = _run_cli(["recommend", str(path), "--user-id", "3", "--k", "5", "--quiet"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("top-5 for user 3")
    rows = [line.split() for line in lines[2:]]
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4, 5]
    assert all(row[3] == "Item" and row[4] == row[1] for row in rows), "titles of synthetic data"
    scores = [float(row[2]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    rated = set(synthetic(seed=0).matrix[3].indices)  # item ids are positions
    assert not rated & {int(row[1]) for row in rows}


def test_recommend_unknown_user_is_one_line(trained):
    path, _ = trained["ease"]
    code, out, err = _run_cli(["recommend", str(path), "--user-id", "123456", "--quiet"])
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert "123456" in err and "Traceback" not in err


def test_evaluate_on_another_dataset_folder_names_the_missing_file(trained, tmp_path):
    path, _ = trained["ease"]
    code, _, err = _run_cli(
        ["evaluate", str(path), "--dataset", "1m", "--data-dir", str(tmp_path), "--quiet"]
    )
    assert code == 2
    assert "ratings.dat" in err and str(tmp_path) in err


def test_evaluate_without_sidecar(trained, tmp_path):
    path, train_out = trained["ease"]
    copy = tmp_path / "alone.keras"
    shutil.copy(path, copy)
    code, out, err = _run_cli(["evaluate", str(copy), "--quiet"])
    assert code == 0, "the run record lives inside the model file"
    assert _metric_block(out) == _metric_block(train_out)


def test_evaluate_a_keras_file_not_written_by_train(tmp_path):
    import zipfile

    foreign = tmp_path / "foreign.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("config.json", "{}")
    code, _, err = _run_cli(["evaluate", str(foreign), "--quiet"])
    assert code == 2
    assert "foreign.json" in err and "keras-aerec train" in err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "autorecc", "--output", "m.keras"], ["autorecc", "multvae"]),
        (["train", "ease", "--protocol", "strong", "--output", "m.keras"], ["strong", "liang"]),
        (["train", "ease", "--dataset", "ml-2m", "--output", "m.keras"], ["ml-2m", "100k"]),
        (["train", "ease"], ["--output"]),
        (["recommend", "m.keras", "--user-id", "1", "--k", "0"], ["--k", "positive"]),
    ],
)
def test_bad_names_list_the_valid_ones(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert all(word in error for word in expected), error


def _train_argv(output, *extra):
    return ["train", "ease", "--quick", "--output", str(output), "--quiet", *extra]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_data", ["ratings.dat", "ml-1m"]),
        ("not_keras", ["`--output`", ".keras"]),
        ("unknown_hyperparameter", ["`--set`", "dropout_ratee"]),
        ("missing_model", ["nothing.keras", "not found"]),
        ("protocol_without_model_kind", ["temporal", "u-autorec"]),
        ("output_under_a_file", ["output directory", "file.txt"]),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(case, expected, tmp_path):
    output = tmp_path / "model.keras"
    (tmp_path / "file.txt").write_text("not a directory")
    argv = {
        "missing_data": _train_argv(output, "--dataset", "1m", "--data-dir", str(tmp_path)),
        "not_keras": _train_argv(tmp_path / "model.h5"),
        "unknown_hyperparameter": _train_argv(output, "--set", "dropout_ratee=0.5"),
        "missing_model": ["evaluate", str(tmp_path / "nothing.keras"), "--quiet"],
        "output_under_a_file": _train_argv(tmp_path / "file.txt" / "model.keras"),
        "protocol_without_model_kind": [
            "train",
            "u-autorec",
            "--protocol",
            "temporal",
            "--output",
            str(output),
            "--quiet",
        ],
    }[case]
    code, _, err = _run_cli(argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in expected), err
    assert "Traceback" not in err
    if case == "missing_data":
        assert str(tmp_path) in err
    assert not output.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_train_into_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    code, _, err = _run_cli(_train_argv(locked / "out" / "model.keras"))
    assert code == 2
    assert "output directory" in err and "Traceback" not in err


def test_train_data_parallel(tmp_path):
    import keras

    pytest.importorskip("keras_aerec.distribute")
    if keras.backend.backend() not in ("tensorflow", "jax"):
        pytest.skip("data_parallel supports TensorFlow and JAX")
    output = tmp_path / "model.keras"
    argv = ["train", "multdae", "--quick", "--epochs", "1", "--distribute", "auto"]
    code, out, err = _run_cli([*argv, "--output", str(output), "--quiet"])
    assert code == 0, err
    assert json.loads(output.with_suffix(".json").read_text())["distribute"] == "auto"


def test_train_reports_epochs_and_kept_epoch(trained):
    _, out = trained["u-autorec"]
    assert "of 2 epochs; kept epoch" in out or "early stopping ended training" in out


@pytest.mark.realdata
def test_recommend_real_movielens_titles(data_dir, tmp_path):
    from keras_aerec.data.movielens import load_movielens

    output = tmp_path / "ease.keras"
    argv = ["train", "ease", "--dataset", "100k", "--data-dir", str(data_dir)]
    code, _, err = _run_cli([*argv, "--output", str(output), "--quiet"])
    assert code == 0, err
    code, out, err = _run_cli(["recommend", str(output), "--user-id", "1", "--k", "10", "--quiet"])
    assert code == 0, err
    rows = out.splitlines()[2:]
    assert len(rows) == 10
    movies = load_movielens("100k", data_dir)
    titles = movies.items["title"]
    rated = set(movies.item_ids[movies.matrix[0].indices])  # user 1 is the first row
    for row in rows:
        item_id = int(row.split()[1])
        assert item_id not in rated
        assert titles[item_id] in row


def test_benchmark_dtype_policy_is_applied_and_recorded(tmp_path):
    import keras

    output = tmp_path / "report"
    arguments = ["benchmark", "--dataset", "synthetic", "--models", "multdae", "--epochs", "1"]
    arguments += ["--output-dir", str(output), "--quiet"]
    with pytest.raises(SystemExit):
        main([*arguments, "--dtype-policy", "bfloat16"])
    try:
        assert main([*arguments, "--dtype-policy", "mixed_bfloat16"]) == 0
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")
    figure = json.loads((output / "results.json").read_text())["figures"][0]
    assert figure["dtype_policy"] == "mixed_bfloat16"
