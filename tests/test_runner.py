"""The benchmark runner's temporal protocol and SVAE (`keras-aerec benchmark`)."""

import json
import logging

import keras
import pytest

from keras_aerec.cli.main import main
from keras_aerec.data import Interactions, synthetic
from keras_aerec.data.splits import weak_generalization
from keras_aerec.experiments import MODELS, PROTOCOLS, needs_timestamped_data, run_benchmark
from keras_aerec.experiments.runner import TEMPORAL_SPLIT_LABEL, _model_names, get_protocol

# Tiny SVAE so that a test trains it in seconds.
TINY = ["item_embedding_dim", "rnn_units", "hidden_units", "latent_dim"]


@pytest.fixture(scope="module")
def data():
    return synthetic(num_users=200, num_items=150, density=0.1, seed=0)


@pytest.fixture(scope="module")
def untimed(data):
    return Interactions.from_csr(
        data.matrix, user_ids=data.user_ids, item_ids=data.item_ids, name="untimed"
    )


def test_temporal_is_a_protocol_and_svae_a_sequence_model():
    assert "temporal" in PROTOCOLS
    assert MODELS["svae"].kind == "sequence"
    assert needs_timestamped_data("temporal")
    assert needs_timestamped_data("article")
    assert not needs_timestamped_data("article", ["multvae", "ease"])
    assert not needs_timestamped_data("liang")


def test_temporal_protocol_without_timestamps_is_a_one_line_error(untimed):
    with pytest.raises(ValueError, match="'temporal' protocol needs interactions with") as error:
        run_benchmark(untimed, protocol="temporal", models=["ease"])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "protocol, models, message",
    [
        ("liang", ["svae"], "`models` should be among those the 'liang' protocol evaluates"),
        ("temporal", ["i-autorec"], "the 'temporal' protocol evaluates"),
    ],
)
def test_models_a_protocol_does_not_evaluate_are_refused(data, protocol, models, message):
    with pytest.raises(ValueError, match=message):
        run_benchmark(data, protocol=protocol, models=models)


def test_svae_without_timestamps(untimed, caplog):
    with pytest.raises(ValueError, match="svae reads time-ordered sequences"):
        run_benchmark(untimed, protocol="article", models=["svae"])
    with caplog.at_level(logging.WARNING, logger="keras_aerec"):
        names = _model_names(get_protocol("article"), None, has_timestamps=False)
    assert names == [name for name in MODELS if name != "svae"]
    assert "skipping svae" in caplog.text
    liang = _model_names(get_protocol("liang"), None, has_timestamps=True)
    assert "svae" not in liang


@pytest.mark.backend
def test_temporal_protocol_trains_svae_and_multvae_on_the_same_split(data):
    results = run_benchmark(
        data, protocol="temporal", models=["multvae", "svae"], epochs=2, quick=True, verbose=0
    )
    assert [result.model for result in results] == ["multvae", "svae"]
    assert {result.protocol for result in results} == {"temporal"}
    assert results[0].split == results[1].split
    for result in results:
        assert result.kind == "ranking"
        assert set(result.metrics) >= {"ndcg@10", "ndcg@100", "recall@100", "precision@100"}
        assert 0.0 < result.metrics["ndcg@100"] <= 1.0
        assert 1 <= result.epochs <= 2
        assert len(result.history["val_ndcg@100"]) >= 1


@pytest.mark.backend
def test_article_protocol_labels_svae_row_and_uses_timestamped_data(data, untimed):
    results = run_benchmark(
        untimed,
        protocol="article",
        models=["svae"],
        epochs=1,
        quick=True,
        verbose=0,
        timestamped=data,
    )
    (result,) = results
    assert result.protocol == f"article, {TEMPORAL_SPLIT_LABEL}"
    assert result.split.startswith(f"{TEMPORAL_SPLIT_LABEL} of the 200 timestamped users")
    assert 0.0 < result.metrics["ndcg@100"] <= 1.0


# CLI plumbing only: the temporal protocol's training is tested on every backend above.
def test_cli_benchmark_temporal_protocol(tmp_path, capsys):
    output = tmp_path / "report"
    command = "benchmark --dataset synthetic --protocol temporal --models svae ease --epochs 1"
    code = main([*command.split(), "--output-dir", str(output), "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((output / "results.json").read_text())["results"]
    assert [(r["model"], r["protocol"]) for r in results] == [
        ("svae", "temporal"),
        ("ease", "temporal"),
    ]
    assert "| svae | temporal |" in (output / "report.md").read_text()


def test_cli_benchmark_temporal_refuses_a_rating_model(capsys):
    code = main(["benchmark", "--dataset", "synthetic", "--protocol", "temporal",
                 "--models", "u-autorec", "--quiet"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "'temporal' protocol evaluates" in error


def test_seeds_make_one_result_each_and_a_rerun_reads_finished_ones_back(data, tmp_path, caplog):
    first = run_benchmark(
        data, protocol="article", models=["ease"], seeds=[0, 1], resume_dir=tmp_path
    )
    assert [result.seed for result in first] == [0, 1]
    # Each seed redraws the split: the two runs differ.
    assert first[0].metrics["ndcg@100"] != first[1].metrics["ndcg@100"]
    assert sorted(p.name for p in (tmp_path / "finished").iterdir()) == [
        "ease-seed0.json",
        "ease-seed1.json",
    ]
    with caplog.at_level(logging.INFO, logger="keras_aerec"):
        again = run_benchmark(
            data, protocol="article", models=["ease"], seeds=[0, 1], resume_dir=tmp_path
        )
    assert caplog.text.count("finished in an earlier run, not retrained") == 2
    assert [result.to_dict() for result in again] == [result.to_dict() for result in first]
    # Other settings (another model's l2 here: another seed list) retrain what differs.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="keras_aerec"):
        run_benchmark(data, protocol="article", models=["ease"], seeds=[1, 2], resume_dir=tmp_path)
    assert caplog.text.count("not retrained") == 1


def test_a_stored_result_of_other_settings_is_retrained(data, tmp_path, caplog):
    run_benchmark(data, protocol="article", models=["ease"], resume_dir=tmp_path)
    path = tmp_path / "finished" / "ease-seed0.json"
    stored = json.loads(path.read_text())
    stored["key"]["recipe"]["hyperparameters"]["l2"] = 1.0
    path.write_text(json.dumps(stored))
    with caplog.at_level(logging.INFO, logger="keras_aerec"):
        run_benchmark(data, protocol="article", models=["ease"], resume_dir=tmp_path)
    assert "made with other settings or code; retraining" in caplog.text


def test_a_stored_result_of_older_code_is_retrained(data, tmp_path, caplog, monkeypatch):
    from keras_aerec.experiments import runner

    run_benchmark(data, protocol="article", models=["ease"], resume_dir=tmp_path)
    stored = json.loads((tmp_path / "finished" / "ease-seed0.json").read_text())
    assert "keras_aerec/models/ease.py" in stored["key"]["code"]
    # The same settings after an edit of ease.py: its blob id differs.
    edited = {**stored["key"]["code"], "keras_aerec/models/ease.py": "0" * 40}
    monkeypatch.setattr(runner, "source_blobs", lambda model: edited)
    with caplog.at_level(logging.INFO, logger="keras_aerec"):
        run_benchmark(data, protocol="article", models=["ease"], resume_dir=tmp_path)
    assert "made with other settings or code; retraining" in caplog.text
    assert "not retrained" not in caplog.text


def test_a_stored_result_of_another_dtype_policy_is_retrained(data, tmp_path, caplog):
    run_benchmark(data, protocol="article", models=["ease"], resume_dir=tmp_path)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        with caplog.at_level(logging.INFO, logger="keras_aerec"):
            run_benchmark(data, protocol="article", models=["ease"], resume_dir=tmp_path)
    finally:
        keras.config.set_dtype_policy("float32")
    assert "made with other settings or code; retraining" in caplog.text
    assert "not retrained" not in caplog.text


def test_seeds_are_checked(data):
    with pytest.raises(ValueError, match="`seeds` should be non-negative integers"):
        run_benchmark(data, protocol="article", models=["ease"], seeds=[0, -1])


def test_report_gives_mean_and_sd_over_seeds(data, tmp_path):
    from keras_aerec.experiments.report import markdown_table, write_report

    results = run_benchmark(data, protocol="article", models=["ease"], seeds=[0, 1, 2])
    values = [result.metrics["ndcg@100"] for result in results]
    table = markdown_table(results)
    assert "best epoch" in table and "epochs run" in table
    mean = sum(values) / 3
    assert f"{mean:.4f} ± " in table
    write_report(results, str(tmp_path), dataset="synthetic", command="keras-aerec benchmark")
    (figure,) = json.loads((tmp_path / "results.json").read_text())["figures"]
    assert figure["seeds"] == [0, 1, 2]
    assert figure["metrics"]["ndcg@100"]["mean"] == pytest.approx(mean)
    assert figure["metrics"]["ndcg@100"]["sd"] > 0
    assert "keras_aerec/models/ease.py" in figure["code"]
    assert set(figure["code_blobs"]) == set(figure["code"])


@pytest.mark.backend
def test_the_seed_reaches_the_batch_order(data):
    # Same split and initialisation, other batch order: other weights.
    from keras_aerec.experiments.runner import train_and_evaluate

    spec = get_protocol("liang")
    split = spec.split("ranking", data, 0)
    losses = []
    for seed in (0, 1):
        keras.utils.set_random_seed(0)
        _, result = train_and_evaluate(
            MODELS["multdae"], split, spec, epochs=1, quick=True, verbose=0, seed=seed
        )
        losses.append(result.history["loss"][0])
    assert losses[0] != losses[1]


def test_recbole_scores_test_users_from_their_training_rows_only(data):
    from keras_aerec.evaluation.ranking import evaluate_ranking
    from keras_aerec.experiments.training import evaluate_model
    from keras_aerec.models.ease import EASE

    spec = get_protocol("recbole")
    split = weak_generalization(data.to_implicit(2.0), test=0.2, validation=0.2, seed=0)
    model = EASE(num_items=split.num_items, l2=10.0)
    model.fit(split.train)
    ours = spec.evaluate(model, split, "ranking")
    expected = evaluate_ranking(
        lambda fold_in, users: model.score(split.train[users]),
        split.test,
        ks=(10,),
        recall_normalization="relevant",
    )
    assert ours["ndcg@10"] == pytest.approx(expected["ndcg@10"])
    # Reading train + validation (the test part's fold-in) scores differently.
    both = evaluate_model(model, split, "ranking", ks=(10,), recall_normalization="relevant")
    assert both["ndcg@10"] != pytest.approx(ours["ndcg@10"])


def test_a_recipe_under_a_protocol_merges_its_overrides():
    recipe = MODELS["multvae"]
    recbole = recipe.for_protocol("recbole")
    assert recbole.defaults == {**recipe.defaults, "latent_dim": 64, "anneal_cap": 0.5}
    assert recbole.fingerprint() != recipe.fingerprint()
    assert recipe.for_protocol("article") is recipe
    # An override replaces a base default: Liang's schedule anneals beta over its whole
    # 200-epoch run (2000 updates of 500 users on ML-1M), not the base 1000 updates.
    liang = recipe.for_protocol("liang")
    assert recipe.defaults["total_anneal_steps"] == 1000
    assert liang.defaults["total_anneal_steps"] == 2000
    assert (liang.epochs, liang.batch_size) == (200, 500)
    # The fingerprint is JSON data: what a stored result is compared with.
    assert json.loads(json.dumps(recbole.fingerprint())) == recbole.fingerprint()


def test_svae_trains_longer_under_temporal_than_in_the_article_table():
    # The article table keeps SVAE's 10 epochs (its time budget); the temporal protocol,
    # where SVAE's own figure is measured, runs up to 20, both halving the rate on plateaus.
    recipe = MODELS["svae"]
    temporal, article = recipe.for_protocol("temporal"), recipe.for_protocol("article")
    assert (temporal.epochs, temporal.patience) == (20, 4)
    assert article is recipe and (article.epochs, article.patience) == (10, 3)
    assert temporal.lr_patience == article.lr_patience == 1
    assert temporal.defaults == article.defaults and temporal.defaults["l2"] == 1e-4
