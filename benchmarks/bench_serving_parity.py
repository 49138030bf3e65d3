"""Served id-list requests against the CLI's `recommend`, on real ML-1M users, per family.

For every exported model family: `keras-aerec train` (the demo's small layers, one epoch:
what is served need not be a good model), `keras-aerec export` (vocabulary, id-list
signatures, warm-up records, models.config), then the CLI's `recommend` logic
(`keras_aerec/cli/recommend.py`) for 20 users drawn from users 1..2999. A `python -I`
process that imports only TensorFlow and the tensorflow-serving-api protos then reads each
SavedModel's vocabulary from the SavedModel alone, builds one padded id-list request for
the 20 users from the raw ratings file as a client would (items rated > 3 as the user's
items, every rated item excluded; U-AutoRec: the user's ratings; I-AutoRec: the user id;
SVAE: the positives in time order), calls `recommend_ids_excluding`, replays the warm-up
records, and the ids must equal the CLI's exactly.

SVAE has no CLI `recommend` (it reads time-ordered sequences): its reference is the Python
API, `model.score` on the same sequence with the same exclusions.

    KERAS_BACKEND=tensorflow nice -n 5 python benchmarks/bench_serving_parity.py \\
        --data-dir ../shared/data

Writes benchmarks/results/serving_parity.json and exits non-zero on any difference.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

FAMILIES = ("i-autorec", "u-autorec", "deeprec", "cdae", "multvae", "multdae", "ease", "svae")
REQUESTS = {  # how a client builds the id-list request of each family from its ratings
    "i-autorec": "user",
    "deeprec": "user",  # its recipe is item-based
    "u-autorec": "ratings",
    "cdae": "positives",
    "multvae": "positives",
    "multdae": "positives",
    "ease": "positives",
    "svae": "sequence",
}
NUM_USERS, K, THRESHOLD = 20, 10, 3.0
RATINGS = os.path.join("ml-1m", "ratings_no_timestamp.dat")
TIMESTAMPED = os.path.join("ml-1m", "ratings_users0001-2999_with_timestamps.dat")


def read_ratings(path):
    """`{user: [(item, rating), ...]}` in file order, from `user::item::rating[::time]` lines."""
    ratings = {}
    with open(path, encoding="latin-1") as file:
        for line in file:
            user, item, rating = line.split("::")[:3]
            ratings.setdefault(int(user), []).append((int(item), float(rating)))
    return ratings


# === The serving side: only TensorFlow and the serving protos ===


def serve(manifest_path):
    """Runs in `python -I`: keras_aerec and Keras are made unimportable."""
    sys.modules["keras_aerec"] = sys.modules["keras"] = None
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    with open(manifest_path) as file:
        manifest = json.load(file)
    ratings = read_ratings(os.path.join(manifest["data_dir"], RATINGS))
    sequences = read_ratings(os.path.join(manifest["data_dir"], TIMESTAMPED))  # time order
    users = manifest["users"]
    results = {}
    for family, entry in manifest["families"].items():
        start = time.perf_counter()
        loaded = tf.saved_model.load(entry["path"])
        with open(os.path.join(entry["path"], "assets", "item_ids.txt")) as file:
            listed = file.read().splitlines()
        vocabulary = read_vocabulary(loaded.signatures["item_vocabulary"])
        assert [str(value) for value in vocabulary.tolist()] == listed, family
        known = set(vocabulary.tolist())
        rated = [[item for item, _ in ratings[user]] for user in users]
        form = REQUESTS[family]
        if form == "user":
            inputs = {"user_id": np.array(users, dtype="int64")}
            asked = rated
        elif form == "ratings":
            asked = rated
            values = [[rating for _, rating in ratings[user]] for user in users]
            inputs = {"item_ids": padded(asked, -1), "ratings": padded(values, 0.0, "float32")}
        else:
            source = sequences if form == "sequence" else ratings
            asked = [
                [item for item, rating in source[user] if rating > THRESHOLD] for user in users
            ]
            inputs = {"item_ids": padded(asked, -1)}
            if "user_index" in entry:
                inputs["user_index"] = np.array(entry["user_index"], dtype="int64")
        inputs["exclude_item_ids"] = padded(rated, -1)
        outputs = loaded.signatures["recommend_ids_excluding"](
            **{name: tf.constant(value) for name, value in inputs.items()}
        )
        unknown = [
            sum(item not in known for item in items) + sum(item not in known for item in excluded)
            for items, excluded in zip(
                asked if form != "user" else [[]] * len(users), rated, strict=True
            )
        ]
        assert outputs["unknown_item_count"].numpy().tolist() == unknown, family
        replayed = 0
        warmup = os.path.join(entry["path"], "assets.extra", "tf_serving_warmup_requests")
        for record in tf.data.TFRecordDataset(warmup):
            request = prediction_log_pb2.PredictionLog.FromString(
                record.numpy()
            ).predict_log.request
            loaded.signatures[request.model_spec.signature_name](
                **{name: tf.constant(tf.make_ndarray(t)) for name, t in request.inputs.items()}
            )
            replayed += 1
        results[family] = {
            "item_ids": outputs["item_ids"].numpy().tolist(),
            "unknown_item_count": unknown,
            "warmup_records": replayed,
            "serve_s": time.perf_counter() - start,
        }
    with open(manifest["output"], "w") as file:
        json.dump(results, file)


def read_vocabulary(signature, page=1000):
    """Pages through `item_vocabulary` until the missing id (-1) marks the end."""
    import numpy as np
    import tensorflow as tf

    pages = []
    while True:
        positions = tf.range(len(pages) * page, (len(pages) + 1) * page, dtype=tf.int64)
        ids = signature(positions=positions)["item_ids"].numpy()
        pages.append(ids[ids != -1])
        if len(pages[-1]) < page:
            return np.concatenate(pages)


def padded(lists, padding, dtype="int64"):
    """The REST API's stacking of `instances`: one width, padding at the end."""
    import numpy as np

    width = max(len(values) for values in lists)
    return np.array([list(v) + [padding] * (width - len(v)) for v in lists], dtype=dtype)


# === The reference side: keras_aerec and the CLI ===


def cli(*arguments, work):
    command = [sys.executable, "-m", "keras_aerec.cli.main", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, cwd=work)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(arguments[:2])} failed:\n{result.stderr[-3000:]}")


def cli_recommendations(model_path, data_dir, users):
    """The CLI's `recommend` for each user (its own functions, one data load)."""
    from keras_aerec.cli._saved_run import load_run
    from keras_aerec.cli.recommend import (
        _by_predicted_rating,
        _by_ranking_score,
        _user_position,
    )

    args = argparse.Namespace(model=model_path, dataset=None, data_dir=data_dir, quiet=True)
    model, _, recipe, _, interactions, split = load_run(args)
    recommendations, user_index = [], []
    for user in users:
        position = _user_position(interactions, str(user))
        rated = interactions.item_ids[interactions.matrix[position].indices]
        if recipe.kind == "rating":
            item_ids, _ = _by_predicted_rating(model, split, user, K)
        else:
            item_ids, _ = _by_ranking_score(model, split, user, rated, K)
        recommendations.append([int(item) for item in item_ids])
        if recipe.name == "cdae":  # CDAE's request carries the user's training row
            user_index.append(int(list(split.train_user_ids).index(user)))
    return recommendations, user_index


def svae_recommendations(model_path, data_dir, users):
    """SVAE's Python API: `model.score` of the time-ordered positives, rated items excluded."""
    import keras
    import numpy as np

    from keras_aerec.export._plan import import_custom_objects

    import_custom_objects()
    model = keras.saving.load_model(model_path)
    ratings = read_ratings(os.path.join(data_dir, RATINGS))
    sequences = read_ratings(os.path.join(data_dir, TIMESTAMPED))
    item_ids = np.asarray(model.item_ids)
    recommendations = []
    for user in users:
        sequence = [item for item, rating in sequences[user] if rating > THRESHOLD]
        scores = model.score([np.array([i for i in sequence if i in set(item_ids.tolist())])])[0]
        rated = np.isin(item_ids, [item for item, _ in ratings[user]] + sequence)
        scores = np.where(rated, -np.inf, scores)
        recommendations.append(item_ids[np.argsort(-scores, kind="stable")[:K]].tolist())
    return recommendations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--models", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder")
    parser.add_argument(
        "--output", default=os.path.join("benchmarks", "results", "serving_parity.json")
    )
    args = parser.parse_args()
    data_dir = os.path.abspath(args.data_dir)
    if not os.path.exists(os.path.join(data_dir, RATINGS)):
        raise SystemExit(f"no ML-1M copy with {RATINGS} under {data_dir}")
    import numpy as np

    work = args.work_dir or tempfile.mkdtemp(prefix="serving_parity_")
    os.makedirs(work, exist_ok=True)
    users = sorted(
        np.random.default_rng(args.seed)
        .choice(np.arange(1, 3000), NUM_USERS, replace=False)
        .tolist()
    )
    saved_models = os.path.join(work, "saved_models")
    manifest = {
        "data_dir": data_dir,
        "users": users,
        "families": {},
        "output": os.path.join(work, "served.json"),
    }
    references, timings = {}, {}
    for family in args.models:
        model_path = os.path.join(work, f"{family}.keras")
        timings[family] = {}
        start = time.perf_counter()
        cli(
            "train",
            family,
            "--dataset",
            "1m",
            "--data-dir",
            data_dir,
            "--quick",
            "--epochs",
            "1",
            "--output",
            model_path,
            "--quiet",
            work=work,
        )
        timings[family]["train_s"] = time.perf_counter() - start
        start = time.perf_counter()
        extra = ["--ratings", os.path.join(data_dir, RATINGS)] if REQUESTS[family] == "user" else []
        cli(
            "export",
            model_path,
            "--directory",
            saved_models,
            "--name",
            family,
            "--k",
            str(K),
            "--models-config",
            *extra,
            "--quiet",
            work=work,
        )
        timings[family]["export_s"] = time.perf_counter() - start
        start = time.perf_counter()
        entry = {
            "path": os.path.join(
                saved_models,
                family,
                str(
                    max(
                        int(v)
                        for v in os.listdir(os.path.join(saved_models, family))
                        if v.isdigit()
                    )
                ),
            )
        }
        if family == "svae":
            references[family] = svae_recommendations(model_path, data_dir, users)
        else:
            references[family], user_index = cli_recommendations(model_path, data_dir, users)
            if user_index:
                entry["user_index"] = user_index
        timings[family]["reference_s"] = time.perf_counter() - start
        manifest["families"][family] = entry
    with open(os.path.join(work, "manifest.json"), "w") as file:
        json.dump(manifest, file)
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            os.path.abspath(__file__),
            "--serve",
            os.path.join(work, "manifest.json"),
        ],
        capture_output=True,
        text=True,
        env=environment,
    )
    if result.returncode != 0:
        raise SystemExit(f"serving process failed:\n{result.stderr[-3000:]}")
    with open(manifest["output"]) as file:
        served = json.load(file)
    figures, failed = [], []
    load = os.getloadavg()[0]
    from keras_aerec.experiments.report import provenance, save_figures

    run = provenance()
    for family in args.models:
        identical = sum(
            a == b for a, b in zip(served[family]["item_ids"], references[family], strict=True)
        )
        if identical != NUM_USERS:
            failed.append(family)
        print(
            f"{family:10s} identical top-{K}: {identical}/{NUM_USERS} users; warm-up records {served[family]['warmup_records']}; "
            + ", ".join(f"{name} {value:.1f}" for name, value in timings[family].items())
            + f", serve_s {served[family]['serve_s']:.1f}"
        )
        figures.append(
            {
                "section": "Serving",
                "what": f"{family}: served recommend_ids_excluding vs the CLI's recommend, top-{K}, identical ids",
                "command": "python benchmarks/bench_serving_parity.py --data-dir ../shared/data",
                "code": [
                    "keras_aerec/export/_tf_builder.py",
                    "keras_aerec/export/_plan.py",
                    "keras_aerec/export/saved_model.py",
                    "keras_aerec/cli/recommend.py",
                ],
                **run,
                "load": round(load, 2),
                "dataset": "ml-1m",
                "protocol": "article"
                if family != "svae"
                else "temporal (timestamped users 1..2999)",
                "seeds": [args.seed],
                "metrics": {
                    "users_identical": {"mean": identical, "sd": 0.0},
                    "users": {"mean": NUM_USERS, "sd": 0.0},
                    **{
                        name: {"mean": round(value, 1), "sd": 0.0}
                        for name, value in timings[family].items()
                    },
                    "serve_s": {"mean": round(served[family]["serve_s"], 1), "sd": 0.0},
                },
                "published": {"value": None, "source": None},
                "notes": "quick layers, 1 epoch; reference: CLI recommend logic"
                if family != "svae"
                else "quick layers, 1 epoch; reference: model.score with the same exclusions (no CLI recommend for SVAE)",
            }
        )
    save_figures(args.output, "TF Serving parity with the CLI on ML-1M", figures)
    print(
        f"wrote {args.output}; median serve_s {statistics.median(s['serve_s'] for s in served.values()):.1f}; load {load:.2f}"
    )
    if failed:
        raise SystemExit(f"served ids differ from the reference for: {', '.join(failed)}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
