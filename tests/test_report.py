import json
import os

import pytest

from keras_aerec.experiments import report
from keras_aerec.experiments.report import save_figures


def _figure(backend, value):
    return {"what": "fit", "backend": backend, "metrics": {"fit_s": {"mean": value, "sd": 0.0}}}


def _read(path):
    with open(path) as handle:
        return json.load(handle)


def test_save_figures_writes_a_new_file(tmp_path):
    path = str(tmp_path / "results" / "topic.json")
    assert save_figures(path, "Topic", [_figure("jax", 1.0)]) == path
    assert _read(path) == {"title": "Topic", "figures": [_figure("jax", 1.0)]}


def test_save_figures_replaces_only_what_replaces_names(tmp_path):
    path = str(tmp_path / "topic.json")
    old = {
        "title": "Old",
        "intro": "prose",
        "figures": [_figure("jax", 1.0), _figure("torch", 2.0)],
    }
    with open(path, "w") as handle:
        json.dump(old, handle)
    save_figures(path, "New", [_figure("jax", 3.0)], replaces=lambda f: f["backend"] == "jax")
    assert _read(path) == {
        "title": "New",
        "intro": "prose",
        "figures": [_figure("torch", 2.0), _figure("jax", 3.0)],
    }
    # Without `replaces` the new figures are all there is.
    save_figures(path, "New", [_figure("tensorflow", 4.0)])
    assert _read(path)["figures"] == [_figure("tensorflow", 4.0)]


def test_save_figures_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "topic.json")
    save_figures(path, "Topic", [_figure("jax", 1.0)])
    with pytest.raises(TypeError):
        save_figures(path, "Topic", [{"metrics": object()}])  # not JSON-serializable
    assert _read(path)["figures"] == [_figure("jax", 1.0)]
    assert os.listdir(tmp_path) == ["topic.json"]  # no temporary file left behind


def test_benchmarks_md_ignores_prose_edits_but_not_code_edits():
    # A figure goes stale when what its code computes changes, not when a docstring or a
    # comment does (make_benchmarks_md marked figures stale for docstring-only edits).
    from benchmarks.make_benchmarks_md import _program

    source = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    prose = (
        'def f(x):\n    """Other words,\n    two lines."""\n    # a new comment\n    return x + 1\n'
    )
    code = 'def f(x):\n    """Doc."""\n    return x + 2  # one\n'
    assert _program(source) == _program(prose)
    assert _program(source) != _program(code)
    assert _program("not python {") == "not python {"


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("fpu sse2 avx avx2 avx512f avx512_bf16 avx512vl", "AVX512-BF16"),
        ("fpu sse2 avx avx2 avx512f avx512vl", "AVX512"),
        ("fpu sse2 avx fma avx2 bmi2", "AVX2"),
        ("fpu sse2 avx", "AVX"),
        ("fp asimd evtstrm", ""),
        ("", ""),
    ],
)
def test_vector_extensions_names_the_widest(flags, expected):
    # Hosts of the same CPU name differ in these, and timings with them (report.machine).
    assert report.vector_extensions(flags) == expected


def test_machine_names_cores_and_memory():
    text = report.machine()
    assert text.startswith(f"{os.cpu_count()}-core ")
    assert text.endswith(("GPU", "no GPU"))


def test_same_backend_and_what_replaces_only_the_rerun_figures(tmp_path):
    path = str(tmp_path / "topic.json")
    save_figures(path, "Topic", [_figure("jax", 1.0), _figure("torch", 2.0)])
    new = [_figure("jax", 3.0)]
    save_figures(path, "Topic", new, replaces=report.same_backend_and_what(new))
    values = {f["backend"]: f["metrics"]["fit_s"]["mean"] for f in _read(path)["figures"]}
    assert values == {"jax": 3.0, "torch": 2.0}


def test_single_run_figure_rounds_metrics_and_lets_fields_override_provenance():
    run_info = {"commit": "abc1234", "backend": "jax", "machine": "m"}
    figure = report.single_run_figure(
        "Speed",
        "epoch",
        "python benchmarks/x.py",
        ("keras_aerec/models/svae.py",),
        {"epoch_s": 1.234567, "steps": 12},
        load=1.23456,
        notes="n",
        run_info=run_info,
        backend="torch",
    )
    assert figure["backend"] == "torch" and figure["commit"] == "abc1234"
    assert figure["metrics"] == {
        "epoch_s": {"mean": 1.2346, "sd": 0.0},
        "steps": {"mean": 12, "sd": 0.0},
    }
    assert figure["load"] == 1.23 and figure["seeds"] == [0]
    assert figure["code"] == ["keras_aerec/models/svae.py"]
    assert list(figure)[:4] == ["section", "what", "command", "code"]


def test_commit_of_flags_uncommitted_package_code(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "keras_aerec").mkdir()
    (tmp_path / "keras_aerec" / "m.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = report.commit_of(str(tmp_path))
    assert clean and "+" not in clean
    (tmp_path / "results.json").write_text("{}")  # results written by a run do not count
    assert report.commit_of(str(tmp_path)) == clean
    (tmp_path / "keras_aerec" / "m.py").write_text("x = 2\n")
    assert report.commit_of(str(tmp_path)) == clean + "+modified"
