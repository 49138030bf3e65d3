"""Top-N accuracy and speed of EASE, Mult-VAE, Mult-DAE and CDAE on MovieLens 1M.

Protocols (`--protocol`):

- `liang`: Liang et al. 2018's strong generalization. Ratings > 3 are positives, users
  with >= 5 positives are kept; 600 validation and 600 test users (disjoint, unseen in
  training), each split at random into 80 % fold-in (the model's input, excluded from the
  ranking) and 20 % holdout. Recall@R = hits / min(R, |relevant|). The epoch (and EASE's
  lambda) is chosen on validation NDCG@100. The split is drawn with the run's seed.
- `recbole`: RecBole's ML-1M benchmark. Ratings >= 3 are positives, 10-core, random
  8:1:1 per user (weak generalization), full ranking, Recall = hits / |relevant|; the
  epoch (and lambda) is chosen on validation NDCG@10. At test time the input (and the
  excluded items) are the user's train + validation interactions (RecBole feeds the
  training rows and excludes train + validation).
- `article`: the article's per-user 80/20 holdout of ratings > 3 (weak generalization).
  The article has no validation data, so the models train on the full 80 % for a fixed
  number of epochs (`article_epochs` below) and EASE uses a fixed lambda, both taken from
  the runs under the `recbole` protocol (the same users and a similar training size); the
  test is never used for any choice.

Every model and seed runs in a fresh process, so the peak RSS (`getrusage`) is that
run's. Epoch time is the `fit` time per epoch without validation passes; `eval` is the
time of the full-ranking test evaluation; `fit` is the whole training including
validation passes (EASE: the final closed form; `select_seconds` in the JSON is its
lambda search). `--speed` instead times, per model in a fresh process, 3 epochs after a
warm-up epoch at batches of 500 and 100 users, EASE's closed form (best of 3), the test
evaluation (best of 2) and the peak RSS, with the load average before and after (the
machine is shared, so accuracy runs' timings are noisier).

    KERAS_BACKEND=jax python benchmarks/bench_topn_models.py --data-dir ../shared/data \
        --protocol liang --models ease multvae multdae cdae --seeds 0 1 2 \
        [--set multvae.total_anneal_steps=2000] [--json runs.jsonl] [--speed]

The backend defaults to JAX (fastest Mult-VAE epochs measured here, 2-core CPU).
"""

import argparse
import ast
import concurrent.futures
import json
import multiprocessing
import os
import resource
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

PROTOCOLS = {
    "liang": {
        "metrics": ("recall@20", "recall@50", "ndcg@100"),
        "select": "ndcg@100",
        "recall_normalization": "min",
    },
    "recbole": {
        "metrics": ("ndcg@10", "recall@10"),
        "select": "ndcg@10",
        "recall_normalization": "relevant",
    },
    "article": {
        "metrics": ("precision@100", "recall@100", "ndcg@100"),
        "select": None,
        "recall_normalization": "min",
    },
}

PUBLISHED = {
    "liang": {
        "multvae": "ML-20M: 0.395 / 0.537 / 0.426",
        "multdae": "ML-20M: 0.387 / 0.524 / 0.419",
        "cdae": "ML-20M: 0.391 / 0.523 / 0.418",
        "ease": "ML-20M: 0.391 / 0.521 / 0.420",
    },
    "recbole": {
        "ease": "0.2865 / 0.2139",
        "multvae": "0.2523 / 0.1995",
        "cdae": "0.2500 / 0.1936",
        "multdae": "0.2425 / 0.1972",
    },
    "article": {
        "cdae": "0.0894 / 0.4137 / 0.2528",
        "multvae": "0.0886 / 0.4115 / 0.2508",
        "ease": "0.0757 / 0.4181 / 0.2561 (ESAE)",
        "multdae": "-",
    },
}

# Model arguments and training settings; `--set model.arg=value` overrides them. Adam with
# batches of 100 users: 5x more updates per epoch than the paper's 500 at the same cost per
# epoch, which reached a given validation NDCG in far fewer epochs on this CPU.
TRAIN = {"learning_rate": 1e-3, "batch_size": 100, "eval_every": 2, "patience": 3}
PRESETS = {
    "ease": {"model": {"l2": 500.0}, "lambdas": [200.0, 500.0, 1000.0, 2000.0]},
    "multvae": {
        "model": {"hidden_dims": (600,), "latent_dim": 200, "dropout": 0.5},
        "train": {**TRAIN, "max_epochs": 60, "article_epochs": None},
    },
    "multdae": {
        "model": {"hidden_dims": (600,), "latent_dim": 200, "dropout": 0.5},
        "train": {**TRAIN, "max_epochs": 60, "article_epochs": None},
    },
    "cdae": {
        "model": {"hidden_dim": 50, "corruption_ratio": 0.5, "activation": "relu"},
        "train": {**TRAIN, "max_epochs": 100, "article_epochs": None},
    },
}


def load_split(protocol, data_dir, seed):
    from keras_aerec.data.movielens import load_movielens
    from keras_aerec.data.splits import strong_generalization, weak_generalization

    ratings = load_movielens("1m", data_dir=data_dir)
    if protocol == "liang":
        data = ratings.to_implicit(3.0).filter_min_interactions(users=5)
        return strong_generalization(
            data, num_heldout_users=600, num_validation_users=600, seed=seed
        )
    if protocol == "recbole":
        data = ratings.to_implicit(2.0).k_core(10)
        return weak_generalization(data, test=0.1, validation=0.1, seed=seed)
    return weak_generalization(ratings.to_implicit(3.0), test=0.2, seed=seed)


def build(name, settings, split, seed):
    from keras_aerec.models.cdae import CDAE
    from keras_aerec.models.mult_dae import MultDAE
    from keras_aerec.models.mult_vae import MultVAE

    num_users, num_items = split.train.shape
    kwargs = dict(settings["model"], item_ids=split.item_ids, seed=seed)
    if name == "cdae":
        return CDAE(num_users, num_items, **kwargs)
    return {"multvae": MultVAE, "multdae": MultDAE}[name](num_items, **kwargs)


def evaluate(model, part, protocol, ks):
    from keras_aerec.evaluation.ranking import evaluate_ranking

    return evaluate_ranking(
        model,
        part,
        ks=ks,
        recall_normalization=PROTOCOLS[protocol]["recall_normalization"],
    )


def test_ks(protocol):
    return sorted({int(name.split("@")[1]) for name in PROTOCOLS[protocol]["metrics"]})


def run_ease(settings, split, protocol):
    from keras_aerec.models.ease import EASE

    spec = PROTOCOLS[protocol]
    started = time.perf_counter()
    curve = []
    best_lambda = settings["model"]["l2"]
    if spec["select"] is not None:
        select_k = int(spec["select"].split("@")[1])
        for l2 in settings["lambdas"]:
            model = EASE(split.num_items, l2=l2, item_ids=split.item_ids).fit(split.train)
            value = evaluate(model, split.validation, protocol, (select_k,))[spec["select"]]
            curve.append({"l2": l2, spec["select"]: value})
        best_lambda = max(curve, key=lambda point: point[spec["select"]])["l2"]
    select_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model = EASE(split.num_items, l2=best_lambda, item_ids=split.item_ids).fit(split.train)
    return model, {
        "l2": best_lambda,
        "fit_seconds": time.perf_counter() - started,
        "select_seconds": select_seconds,
        "curve": curve,
    }


def run_neural(name, settings, split, protocol, seed):
    import keras

    from keras_aerec.data.batching import RowBatches

    spec = PROTOCOLS[protocol]
    train = settings["train"]
    keras.utils.set_random_seed(seed)
    model = build(name, settings, split, seed)
    model.compile(optimizer=keras.optimizers.Adam(train["learning_rate"]))
    batches = RowBatches(
        split.train, batch_size=train["batch_size"], seed=seed, user_index=name == "cdae"
    )
    started = time.perf_counter()
    epoch_seconds = 0.0
    if spec["select"] is None:
        if not train["article_epochs"]:
            raise ValueError(f"Set `{name}.article_epochs` for the article protocol.")
        epochs = int(train["article_epochs"])
        model.fit(batches, epochs=epochs, verbose=0)
        epoch_seconds = time.perf_counter() - started
        return model, {"epochs": epochs, "s_per_epoch": epoch_seconds / epochs, "curve": []}

    select_k = int(spec["select"].split("@")[1])
    best, best_epoch, best_weights, waited, epoch, curve = -1.0, 0, None, 0, 0, []
    while epoch < train["max_epochs"] and waited < train["patience"]:
        chunk = min(train["eval_every"], train["max_epochs"] - epoch)
        chunk_started = time.perf_counter()
        model.fit(batches, epochs=epoch + chunk, initial_epoch=epoch, verbose=0)
        epoch_seconds += time.perf_counter() - chunk_started
        epoch += chunk
        value = evaluate(model, split.validation, protocol, (select_k,))[spec["select"]]
        curve.append({"epoch": epoch, spec["select"]: value})
        if value > best:
            best, best_epoch, best_weights, waited = value, epoch, model.get_weights(), 0
        else:
            waited += 1
    model.set_weights(best_weights)
    fit_seconds = time.perf_counter() - started
    return model, {
        "epochs": best_epoch,
        "epochs_run": epoch,
        "s_per_epoch": epoch_seconds / epoch,
        "fit_seconds": fit_seconds,
        "validation": best,
        "curve": curve,
        "total_updates": epoch * len(batches),
    }


def run(name, settings, protocol, data_dir, seed):
    """One model, one seed, in its own process."""
    import keras

    split = load_split(protocol, data_dir, seed)
    if name == "ease":
        model, info = run_ease(settings, split, protocol)
    else:
        model, info = run_neural(name, settings, split, protocol, seed)
    started = time.perf_counter()
    results = evaluate(model, split.test, protocol, test_ks(protocol))
    info["eval_seconds"] = time.perf_counter() - started
    info.setdefault("fit_seconds", info.get("s_per_epoch", 0) * info.get("epochs", 0))
    info.update(
        {
            "model": name,
            "protocol": protocol,
            "seed": seed,
            "backend": keras.backend.backend(),
            "settings": settings,
            "test": {metric: results[metric] for metric in PROTOCOLS[protocol]["metrics"]},
            "test_users": results["num_users"],
            "train_shape": list(split.train.shape),
            "train_interactions": int(split.train.nnz),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    return info


def speed(name, settings, protocol, data_dir, seed, epochs=3):
    """Epoch time (batches of 500 and 100 users), EASE fit, evaluation time, peak RSS."""
    import keras

    from keras_aerec.data.batching import RowBatches
    from keras_aerec.models.ease import EASE

    split = load_split(protocol, data_dir, seed)
    info = {"model": name, "protocol": protocol, "backend": keras.backend.backend()}
    info["load_before"] = os.getloadavg()[0]
    if name == "ease":
        fits = []
        for _ in range(3):
            started = time.perf_counter()
            model = EASE(split.num_items, item_ids=split.item_ids).fit(split.train)
            fits.append(time.perf_counter() - started)
        info["fit_seconds"] = min(fits)
    else:
        for batch_size in (500, 100):
            keras.utils.set_random_seed(seed)
            model = build(name, settings, split, seed)
            model.compile(optimizer=keras.optimizers.Adam(settings["train"]["learning_rate"]))
            batches = RowBatches(
                split.train, batch_size=batch_size, seed=seed, user_index=name == "cdae"
            )
            model.fit(batches, epochs=1, verbose=0)  # compilation / tracing
            started = time.perf_counter()
            model.fit(batches, epochs=epochs, verbose=0)
            info[f"s_per_epoch_{batch_size}"] = (time.perf_counter() - started) / epochs
    evaluations = []
    for _ in range(2):
        started = time.perf_counter()
        evaluate(model, split.test, protocol, test_ks(protocol))
        evaluations.append(time.perf_counter() - started)
    info["eval_seconds"] = min(evaluations)
    info["test_users"] = split.test.num_users
    info["load_after"] = os.getloadavg()[0]
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return info


def speed_table(runs):
    lines = [
        "| model | backend | s/epoch (batch 500) | s/epoch (batch 100) | EASE fit s "
        "| eval s (test users) | peak RSS MB | load avg before/after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        cells = [run["model"], run["backend"]]
        for key in ("s_per_epoch_500", "s_per_epoch_100", "fit_seconds"):
            cells.append(f"{run[key]:.2f}" if key in run else "-")
        cells.append(f"{run['eval_seconds']:.2f} ({run['test_users']})")
        cells.append(f"{run['peak_rss_mb']:.0f}")
        cells.append(f"{run['load_before']:.1f} / {run['load_after']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_sd(values):
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def parse_overrides(pairs):
    settings = json.loads(json.dumps(PRESETS))
    for pair in pairs:
        key, _, raw = pair.partition("=")
        model, _, argument = key.partition(".")
        value = ast.literal_eval(raw)
        preset = settings[model]
        if argument in preset.get("train", {}):
            preset["train"][argument] = value
        elif argument == "lambdas":
            preset["lambdas"] = list(value)
        else:
            preset["model"][argument] = value
    return settings


def table(protocol, runs):
    metrics = PROTOCOLS[protocol]["metrics"]
    header = ["model", "backend", *metrics, "epochs", "s/epoch", "fit s", "eval s", "RSS MB"]
    lines = ["| " + " | ".join([*header, "published"]) + " |", "|" + "---|" * (len(header) + 1)]
    for label in dict.fromkeys(run["label"] for run in runs):
        group = [run for run in runs if run["label"] == label]
        name = group[0]["model"]
        cells = [label, group[0]["backend"]]
        cells += [mean_sd([run["test"][metric] for run in group]) for metric in metrics]
        if name == "ease":
            cells.append("λ=" + "/".join(f"{run['l2']:g}" for run in group))
            cells.append("-")
        else:
            cells.append("/".join(str(run["epochs"]) for run in group))
            cells.append(f"{statistics.mean(run['s_per_epoch'] for run in group):.2f}")
        cells.append(f"{statistics.mean(run['fit_seconds'] for run in group):.1f}")
        cells.append(f"{statistics.mean(run['eval_seconds'] for run in group):.2f}")
        cells.append(f"{max(run['peak_rss_mb'] for run in group):.0f}")
        cells.append(PUBLISHED[protocol][name])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", default="../shared/data", help="MovieLens folder (default: ../shared/data)"
    )
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="liang")
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="MODEL.ARG=VALUE")
    parser.add_argument("--json", help="append every run (with its validation curve) here")
    parser.add_argument("--label", help="name of the model in the table (default: its name)")
    parser.add_argument(
        "--speed",
        action="store_true",
        help="measure epoch time, EASE fit, evaluation time and peak RSS (first seed only)",
    )
    args = parser.parse_args()
    settings = parse_overrides(args.set)

    runs = []
    context = multiprocessing.get_context("spawn")
    if args.speed:
        for name in args.models:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                info = pool.submit(
                    speed, name, settings[name], args.protocol, args.data_dir, args.seeds[0]
                ).result()
            runs.append(info)
            if args.json:
                with open(args.json, "a") as out:
                    out.write(json.dumps(info) + "\n")
        print(speed_table(runs))
        return
    for name in args.models:
        for seed in args.seeds:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                info = pool.submit(
                    run, name, settings[name], args.protocol, args.data_dir, seed
                ).result()
            info["label"] = args.label or name
            runs.append(info)
            print(
                f"{args.protocol} {name} seed={seed}: "
                + ", ".join(f"{k}={v:.4f}" for k, v in info["test"].items())
                + f", epochs={info.get('epochs', '-')}, fit={info['fit_seconds']:.1f}s, "
                f"eval={info['eval_seconds']:.2f}s, rss={info['peak_rss_mb']:.0f}MB",
                flush=True,
            )
            if args.json:
                with open(args.json, "a") as out:
                    out.write(json.dumps(info) + "\n")
    print(table(args.protocol, runs))


if __name__ == "__main__":
    main()
