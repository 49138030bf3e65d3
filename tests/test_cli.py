import json
import os
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
    assert header[:3] == ["model", "protocol", "epochs"]
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
