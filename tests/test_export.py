"""SavedModel export: every model family served without keras_aerec matches the Keras model.

The module fixture fits one tiny model per family, exports it (in-process under
TensorFlow, through the TensorFlow subprocess under JAX and torch) and serves every
export in one fresh, isolated Python process where neither keras_aerec nor Keras can be
imported; each parametrised case then compares one family's served outputs with the
Keras model.

Off TensorFlow every export starts a TensorFlow subprocess (seconds each), so by default
only the families whose trip through a `.keras` file reloaded under TensorFlow differs
in kind run there: item codes computed on the backend (I-AutoRec), an embedding and two
inputs (CDAE), a GRU with `Sampling` (SVAE). `KERAS_AEREC_EXPORT_ALL=1` runs every family
on every backend.
"""

import argparse
import errno
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.cli import export as export_cli
from keras_aerec.cli.common import CommandError
from keras_aerec.data.batching import RowBatches
from keras_aerec.export import saved_model
from keras_aerec.export.saved_model import export_saved_model, write_models_config
from keras_aerec.models.auto_rec import AutoRec
from keras_aerec.models.cdae import CDAE
from keras_aerec.models.deep_rec import DeepRec
from keras_aerec.models.ease import EASE
from keras_aerec.models.mult_dae import MultDAE
from keras_aerec.models.mult_vae import MultVAE
from keras_aerec.models.svae import SVAE

pytestmark = pytest.mark.backend

NUM_USERS, NUM_ITEMS, K = 24, 18, 5
TOLERANCE = 1e-5
ITEM_IDS = 1000 + 7 * np.arange(NUM_ITEMS)  # original ids, not positions
STRING_ITEM_IDS = np.array([f"movie-{i}" for i in range(NUM_ITEMS)])
USER_IDS = np.array([f"user-{i}" for i in range(NUM_USERS)])
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")

# Served in a fresh interpreter (-I) where keras_aerec and Keras cannot be imported.
SERVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["keras_aerec"] = None
    sys.modules["keras"] = None
    try:
        import keras_aerec
    except ImportError:
        pass
    else:
        raise SystemExit("keras_aerec is importable")
    import numpy as np
    import tensorflow as tf

    from tensorflow_serving.apis import prediction_log_pb2

    def numpy(value):
        value = value.numpy()
        return value.astype(str) if value.dtype == object else value

    manifest = json.load(open(sys.argv[1]))
    for family, entry in manifest.items():
        loaded = tf.saved_model.load(entry["path"])
        requests = np.load(entry["requests"])
        outputs, structure = {}, {}
        for signature in sorted(loaded.signatures):
            function = loaded.signatures[signature]
            specs = function.structured_input_signature[1]
            structure[signature] = {
                "inputs": {n: [s.dtype.name, s.shape.as_list()] for n, s in specs.items()},
                "outputs": {
                    n: s.dtype.name for n, s in function.structured_outputs.items()
                },
            }
            prefix = signature + "/"
            inputs = {
                key[len(prefix):]: tf.constant(requests[key])
                for key in requests.files
                if key.startswith(prefix)
            }
            if not inputs:
                continue
            for name, value in function(**inputs).items():
                outputs[prefix + name] = numpy(value)
        # The vocabulary file, read as a client would, without TensorFlow.
        with open(entry["path"] + "/assets/item_ids.txt", encoding="utf-8") as file:
            outputs["assets/item_ids"] = np.array(file.read().splitlines())
        # TF Serving's warm-up: parse every record with the serving protos and replay it.
        replayed = []
        warmup = entry["path"] + "/assets.extra/tf_serving_warmup_requests"
        for record in tf.data.TFRecordDataset(warmup):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            request = log.predict_log.request
            function = loaded.signatures[request.model_spec.signature_name]
            result = function(
                **{n: tf.constant(tf.make_ndarray(t)) for n, t in request.inputs.items()}
            )
            assert all(v.shape[0] == 2 for v in result.values() if v.shape.rank), request
            replayed.append(request.model_spec.signature_name)
        structure["warmup"] = replayed
        checkpoint = tf.train.load_checkpoint(entry["path"] + "/variables/variables")
        structure["variables"] = sorted(checkpoint.get_variable_to_shape_map())
        np.savez(entry["outputs"], **outputs)
        json.dump(structure, open(entry["structure"], "w"))
    """
)

# The documented signatures (docs/serving.md): kind -> signature -> (inputs, outputs).
_TOP_K = {"item_ids", "scores"}
_RATED_TOP_K = {"item_ids", "scores", "predicted_ratings"}
_IDS_TOP_K = {"item_ids", "scores", "unknown_item_count"}
_IDS_RATED_TOP_K = {"item_ids", "predicted_ratings", "unknown_item_count"}
_VOCABULARY = {"item_vocabulary": ({"positions"}, {"item_ids"})}


def _id_forms(inputs, outputs):
    return {
        "recommend_ids": (inputs, outputs),
        "recommend_ids_excluding": (inputs | {"exclude_item_ids"}, outputs),
    }


SIGNATURE_NAMES = {
    "rows": {
        "serving_default": ({"user_items"}, {"scores"}),
        "recommend": ({"user_items"}, _TOP_K),
        **_id_forms({"item_ids"}, _IDS_TOP_K),
        **_VOCABULARY,
    },
    "cdae": {
        "serving_default": ({"user_index", "user_items"}, {"scores"}),
        "recommend": ({"user_index", "user_items"}, _TOP_K),
        **_id_forms({"user_index", "item_ids"}, _IDS_TOP_K),
        **_VOCABULARY,
    },
    "sequences": {
        "serving_default": ({"sequences"}, {"scores"}),
        "recommend": ({"sequences"}, _TOP_K),
        **_id_forms({"item_ids"}, _IDS_TOP_K),
        **_VOCABULARY,
    },
    "rating_rows": {
        "serving_default": ({"ratings"}, {"predicted_ratings"}),
        "recommend": ({"ratings"}, _RATED_TOP_K),
        **_id_forms({"item_ids", "ratings"}, _IDS_RATED_TOP_K),
        **_VOCABULARY,
    },
    "rating_pairs": {
        "serving_default": ({"user_id", "item_id"}, {"predicted_ratings"}),
        "recommend": ({"user_id"}, _RATED_TOP_K),
        **_id_forms({"user_id"}, _IDS_RATED_TOP_K),
        **_VOCABULARY,
        "user_vocabulary": ({"positions"}, {"user_ids"}),
    },
}


# === Data and reference implementations ===


def _ratings():
    rng = np.random.default_rng(0)
    dense = np.where(
        rng.random((NUM_USERS, NUM_ITEMS)) < 0.35, rng.integers(1, 6, (NUM_USERS, NUM_ITEMS)), 0
    )
    dense[-1] = 0  # a user without ratings
    dense[:, -1] = 0  # an item without ratings
    dense[0, :-3] = 4  # a user with fewer than K unrated items
    return sp.csr_matrix(dense.astype("float32"))


def _requests_rows(train):
    rows = train[:8].toarray()
    rows[2] = 0  # an empty row
    return rows


def _top_k_reference(scores, excluded, item_ids, missing_id):
    """Top-K as `TopNRecommender.recommend`: stable, lower position first on ties."""
    scores = np.where(excluded, -np.inf, scores).astype("float32")
    order = np.argsort(-scores, axis=1, kind="stable")
    top = np.take_along_axis(scores, order[:, : K + 1], axis=1)
    ids = item_ids[order[:, :K]].astype(item_ids.dtype)
    ids[np.isneginf(top[:, :K])] = missing_id
    return ids, top


def _untied(sorted_scores):
    """Ranks (of K) whose order is certain: a score clear of its neighbours' or equal to
    them (clipped ratings: the lower position first on both sides), or -inf."""
    with np.errstate(invalid="ignore"):  # -inf - -inf
        differences = np.abs(np.diff(sorted_scores, axis=1))
        gaps = (differences > 1e-4) | (differences == 0)
    before = np.concatenate([np.ones((len(sorted_scores), 1), bool), gaps[:, : K - 1]], axis=1)
    return (before & gaps[:, :K]) | np.isneginf(sorted_scores[:, :K])


UNKNOWN_INTEGER_ID, UNKNOWN_STRING_ID = 999_999, "no-such-item"


def _padded(lists, padding):
    """A batch of id lists as the REST API stacks `instances`: one width, padded at the end."""
    width = max(len(values) for values in lists) + 1  # at least one padding per row
    return np.array([list(values) + [padding] * (width - len(values)) for values in lists])


def _id_lists(rows, item_ids):
    """Each row's item ids (and values), padded; row 1 also holds an unknown id."""
    unknown_id = UNKNOWN_STRING_ID if item_ids.dtype.kind == "U" else UNKNOWN_INTEGER_ID
    ids = [list(item_ids[np.flatnonzero(row)]) for row in rows]
    values = [list(row[np.flatnonzero(row)]) for row in rows]
    ids[1].append(unknown_id)
    values[1].append(5.0)
    unknown = np.zeros(len(rows), "int64")
    unknown[1] = 1
    return _padded(ids, _missing(item_ids)), _padded(values, 0.0).astype("float32"), unknown


def _with_id_forms(requests, expected, id_inputs, unknown, key, excluded, item_ids, value="scores"):
    """Adds `recommend_ids[_excluding]` requests and what they should return.

    `key` ranks the items (the dense form's scores, or the predicted ratings), `excluded`
    the items the id lists exclude themselves. The exclusion list names each row's best
    item and, in row 0, an unknown id.
    """
    missing = _missing(item_ids)
    ids, top = _top_k_reference(key, excluded, item_ids, missing)
    unknown_id = UNKNOWN_STRING_ID if item_ids.dtype.kind == "U" else UNKNOWN_INTEGER_ID
    exclude = [[best] if best != missing else [] for best in ids[:, 0]]
    exclude[0].append(unknown_id)
    asked = np.isin(item_ids[None, :], np.array([sum(exclude, [])], dtype=item_ids.dtype))
    mask = np.array([np.isin(item_ids, np.array(row, dtype=item_ids.dtype)) for row in exclude])
    assert asked.any() and mask.any()
    excluded_ids, excluded_top = _top_k_reference(key, excluded | mask, item_ids, missing)
    unknown_excluded = unknown.copy()
    unknown_excluded[0] += 1
    for signature, extra, (top_ids, top_values), counts in (
        ("recommend_ids", {}, (ids, top), unknown),
        (
            "recommend_ids_excluding",
            {"exclude_item_ids": _padded(exclude, missing)},
            (excluded_ids, excluded_top),
            unknown_excluded,
        ),
    ):
        for name, request in {**id_inputs, **extra}.items():
            requests[f"{signature}/{name}"] = request
        expected[f"{signature}/item_ids"] = top_ids
        expected[f"{signature}/{value}"] = top_values
        expected[f"{signature}/unknown_item_count"] = counts


def _fit(model, data):
    """One epoch: exports need a fitted model; what they serve need not be a good one."""
    # Eager under TensorFlow: tracing would cost more than these few tiny batches.
    eager = keras.backend.backend() == "tensorflow"
    model.compile(optimizer=keras.optimizers.Adam(0.01), run_eagerly=eager)
    model.fit(data, epochs=1, verbose=0)
    return model


def _batches(rows, **kwargs):
    # Full batches only: one traced shape per function under JAX.
    return RowBatches(rows, batch_size=8, seed=0, drop_remainder=True, **kwargs)


# === One tiny fitted model per family: (model, export kwargs, requests, expected) ===


def _implicit_family(model_class, item_ids, **config):
    train = _ratings()
    train.data[:] = 1.0
    model = _fit(
        model_class(num_items=NUM_ITEMS, item_ids=item_ids, seed=0, **config), _batches(train)
    )
    rows = _requests_rows(train)
    ids, top = _top_k_reference(model.score(rows), rows != 0, item_ids, _missing(item_ids))
    requests = {"serving_default/user_items": rows, "recommend/user_items": rows}
    expected = {
        "serving_default/scores": model.score(rows),
        "recommend/item_ids": ids,
        "recommend/scores": top,
    }
    lists, _, unknown = _id_lists(rows, item_ids)
    _with_id_forms(
        requests, expected, {"item_ids": lists}, unknown, model.score(rows), rows != 0, item_ids
    )
    keras_ids, _ = model.recommend(rows, k=K)  # the reference is `recommend` (None: missing)
    np.testing.assert_array_equal(keras_ids[keras_ids != None], ids[keras_ids != None])  # noqa: E711
    return model, {}, requests, expected, "rows"


def _mult_vae():
    return _implicit_family(MultVAE, ITEM_IDS, hidden_dims=(8,), latent_dim=4)


def _mult_dae():
    return _implicit_family(MultDAE, STRING_ITEM_IDS, hidden_dims=(), latent_dim=4)


def _ease():
    train = _ratings()
    train.data[:] = 1.0
    model = EASE(num_items=NUM_ITEMS, l2=5.0, item_ids=ITEM_IDS).fit(train)
    rows = _requests_rows(train)
    scores = model.score(rows)
    ids, top = _top_k_reference(scores, rows != 0, ITEM_IDS, -1)
    requests = {"serving_default/user_items": rows, "recommend/user_items": rows}
    expected = {
        "serving_default/scores": scores,
        "recommend/item_ids": ids,
        "recommend/scores": top,
    }
    lists, _, unknown = _id_lists(rows, ITEM_IDS)
    _with_id_forms(requests, expected, {"item_ids": lists}, unknown, scores, rows != 0, ITEM_IDS)
    return model, {}, requests, expected, "rows"


def _cdae():
    train = _ratings()
    train.data[:] = 1.0
    model = _fit(
        CDAE(num_users=NUM_USERS, num_items=NUM_ITEMS, hidden_dim=6, item_ids=ITEM_IDS, seed=0),
        _batches(train, user_index=True),
    )
    rows = _requests_rows(train)
    users = np.array([0, 1, -1, 3, 4, -1, 6, 7])
    scores = model.score(rows, users=users)
    ids, top = _top_k_reference(scores, rows != 0, ITEM_IDS, -1)
    requests = {
        f"{s}/{n}": v
        for s in ("serving_default", "recommend")
        for n, v in (("user_index", users), ("user_items", rows))
    }
    expected = {
        "serving_default/scores": scores,
        "recommend/item_ids": ids,
        "recommend/scores": top,
    }
    lists, _, unknown = _id_lists(rows, ITEM_IDS)
    inputs = {"user_index": users, "item_ids": lists}
    _with_id_forms(requests, expected, inputs, unknown, scores, rows != 0, ITEM_IDS)
    return model, {}, requests, expected, "cdae"


def _svae():
    train = _ratings()
    rng = np.random.default_rng(1)
    sequences = [rng.permutation(train[u].indices) for u in range(NUM_USERS - 1)]
    model = SVAE(
        num_items=NUM_ITEMS,
        item_embedding_dim=4,
        rnn_units=4,
        hidden_units=4,
        latent_dim=2,
        next_k=2,
        max_len=4,
        item_ids=ITEM_IDS,
        seed=0,
    )
    _fit(model, model.batches(sequences[:16], batch_size=8, seed=0))  # 2 full batches
    chosen = [sequences[u] for u in (0, 1, 2, 3, 5)]  # lengths above and below max_len
    id_sequences = [ITEM_IDS[s] for s in chosen]
    width = max(len(s) for s in chosen) + 1
    padded = np.full((len(chosen), width), -1, dtype="int64")
    for row, ids in enumerate(id_sequences):
        padded[row, : len(ids)] = ids
    scores = model.score(id_sequences)
    seen = np.zeros(scores.shape, bool)
    for row, positions in enumerate(chosen):
        seen[row, positions] = True
    ids, top = _top_k_reference(scores, seen, ITEM_IDS, -1)
    keras_ids, _ = model.recommend(id_sequences, k=K)
    np.testing.assert_array_equal(keras_ids, ids)
    requests = {"serving_default/sequences": padded, "recommend/sequences": padded}
    expected = {
        "serving_default/scores": scores,
        "recommend/item_ids": ids,
        "recommend/scores": top,
    }
    with_unknown = padded.copy()
    with_unknown[1, len(id_sequences[1])] = UNKNOWN_INTEGER_ID  # skipped, counted
    unknown = np.zeros(len(chosen), "int64")
    unknown[1] = 1
    inputs = {"item_ids": with_unknown}
    _with_id_forms(requests, expected, inputs, unknown, scores, seen, ITEM_IDS)
    return model, {}, requests, expected, "sequences"


def _user_rating_family(model):
    train = _ratings()
    _fit(model, _batches(model.rating_rows(train), y="x"))
    rows = _requests_rows(train)
    raw = model.score(rows)
    ids, top = _top_k_reference(raw, rows != 0, ITEM_IDS, -1)
    predicted = np.where(np.isneginf(top[:, :K]), -np.inf, np.clip(top[:, :K], 1.0, 5.0))
    requests = {"serving_default/ratings": rows, "recommend/ratings": rows}
    expected = {
        "serving_default/predicted_ratings": np.clip(raw, 1.0, 5.0),
        "recommend/item_ids": ids,
        "recommend/scores": top,
        "recommend/predicted_ratings": predicted,
    }
    lists, values, unknown = _id_lists(rows, ITEM_IDS)
    _with_id_forms(
        requests,
        expected,
        {"item_ids": lists, "ratings": values},
        unknown,
        np.clip(raw, 1.0, 5.0),  # ranked by predicted rating, as the CLI's recommend
        rows != 0,
        ITEM_IDS,
        "predicted_ratings",
    )
    return model, {}, requests, expected, "rating_rows"


def _u_autorec():
    return _user_rating_family(
        AutoRec(num_inputs=NUM_ITEMS, hidden_units=6, variant="user", item_ids=ITEM_IDS)
    )


def _deep_rec():
    return _user_rating_family(
        DeepRec(num_inputs=NUM_ITEMS, hidden_units=(8, 4), dropout=0.2, item_ids=ITEM_IDS)
    )


def _item_rating_family(model):
    train = _ratings()
    _fit(model, _batches(model.rating_rows(train), y="x"))
    rows = model.rating_rows(train)  # items x users
    raw = model.score(rows).T  # users x items
    rated_items = np.bincount(train.indices, minlength=NUM_ITEMS) > 0
    rated_users = np.diff(train.indptr) > 0
    scores = np.where(rated_items, raw, 3.0)
    request_users = np.array([0, 1, 5, NUM_USERS - 1, 7])  # user 23 has no ratings
    ids, top = _top_k_reference(
        scores[request_users],
        (train[request_users].toarray() != 0) | ~rated_users[request_users, None],
        ITEM_IDS,
        -1,
    )
    top_items = np.searchsorted(ITEM_IDS, np.where(ids < 0, ITEM_IDS[0], ids))
    predicted = np.where(rated_items[top_items], np.clip(top[:, :K], 1.0, 5.0), top[:, :K])
    predicted[np.isneginf(top[:, :K])] = -np.inf
    pair_users = np.array([0, 1, 2, 3, NUM_USERS - 1, 4])
    pair_items = np.array([0, 5, 9, NUM_ITEMS - 1, 3, 11])
    pair_ratings = model.predict_ratings(USER_IDS[pair_users], ITEM_IDS[pair_items], train)
    requests = {
        "serving_default/user_id": np.append(USER_IDS[pair_users], ["nobody", "user-1"]),
        "serving_default/item_id": np.append(ITEM_IDS[pair_items], [ITEM_IDS[0], 999]),
        "recommend/user_id": np.append(USER_IDS[request_users], "nobody"),
    }
    unknown = np.full((1, K + 1), -np.inf, dtype="float32")
    expected = {
        "serving_default/predicted_ratings": np.append(pair_ratings, [3.0, 3.0]),
        "recommend/item_ids": np.vstack([ids, np.full((1, K), -1)]),
        "recommend/scores": np.vstack([top, unknown]),
        "recommend/predicted_ratings": np.vstack([predicted, unknown[:, :K]]),
    }
    # The id form ranks by predicted rating (the default for items without ratings).
    key = np.where(rated_items, np.clip(raw, 1.0, 5.0), 3.0)[request_users]
    excluded = (train[request_users].toarray() != 0) | ~rated_users[request_users, None]
    _with_id_forms(
        requests,
        expected,
        {"user_id": requests["recommend/user_id"]},
        np.zeros(len(request_users) + 1, "int64"),
        np.vstack([key, np.zeros((1, NUM_ITEMS), "float32")]),
        np.vstack([excluded, np.ones((1, NUM_ITEMS), bool)]),  # an unknown user: nothing
        ITEM_IDS,
        "predicted_ratings",
    )
    return model, {"ratings": train}, requests, expected, "rating_pairs"


def _i_autorec():
    return _item_rating_family(
        AutoRec(
            num_inputs=NUM_USERS,
            hidden_units=6,
            variant="item",
            num_rows=NUM_ITEMS,
            user_ids=USER_IDS,
            item_ids=ITEM_IDS,
        )
    )


def _i_deep_rec_tied():
    # Its output is DeepRec's tied decoder (the first encoder applied transposed).
    return _item_rating_family(
        DeepRec(
            num_inputs=NUM_USERS,
            hidden_units=(6, 4),
            dropout=0.2,
            tied=True,
            variant="item",
            user_ids=USER_IDS,
            item_ids=ITEM_IDS,
        )
    )


def _missing(item_ids):
    return "" if item_ids.dtype.kind == "U" else -1


FAMILIES = {
    "i_autorec": _i_autorec,
    "i_deep_rec_tied": _i_deep_rec_tied,
    "u_autorec": _u_autorec,
    "deep_rec": _deep_rec,
    "mult_vae": _mult_vae,
    "mult_dae": _mult_dae,
    "cdae": _cdae,
    "ease": _ease,
    "svae": _svae,
}


OFF_TENSORFLOW_FAMILIES = ("i_autorec", "cdae", "svae")


def _selected(family):
    return (
        keras.backend.backend() == "tensorflow"
        or os.environ.get("KERAS_AEREC_EXPORT_ALL") == "1"
        or family in OFF_TENSORFLOW_FAMILIES
    )


@pytest.fixture(scope="module")
def built():
    """One fitted tiny model per selected family (or the error building it raised)."""
    results = {}
    for family, build in FAMILIES.items():
        if not _selected(family):
            continue
        keras.utils.set_random_seed(0)
        try:
            results[family] = build()
        except Exception as error:  # reported by the family's own test case
            results[family] = error
    return results


def _model(built, family):
    if isinstance(built[family], Exception):
        raise built[family]
    return built[family][0]


@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    """Exports every family, then serves them all in one isolated interpreter."""
    root = tmp_path_factory.mktemp("export")
    results = {family: error for family, error in built.items() if isinstance(error, Exception)}
    built = {family: entry for family, entry in built.items() if family not in results}

    def export(family):
        model, kwargs, requests, expected, kind = built[family]
        requests = {"item_vocabulary/positions": np.arange(len(model.item_ids) + 1), **requests}
        if getattr(model, "user_ids", None) is not None:
            requests["user_vocabulary/positions"] = np.arange(len(model.user_ids) + 1)
        path = export_saved_model(model, root / "saved_models", k=K, **kwargs)
        np.savez(root / f"{family}.requests.npz", **requests)
        return {"path": path, "expected": expected, "kind": kind}

    # Off TensorFlow each export runs a TensorFlow subprocess: two at a time.
    workers = 1 if keras.backend.backend() == "tensorflow" else 2
    with ThreadPoolExecutor(workers) as pool:
        futures = {family: pool.submit(export, family) for family in built}
    manifest = {}
    for family, future in futures.items():
        if future.exception() is not None:
            results[family] = future.exception()
            continue
        results[family] = future.result()
        manifest[family] = {
            "path": results[family]["path"],
            **{
                name: str(root / f"{family}.{name}.{suffix}")
                for name, suffix in (("requests", "npz"), ("outputs", "npz"), ("structure", "json"))
            },
        }
    (root / "manifest.json").write_text(json.dumps(manifest))
    run = subprocess.run(
        [sys.executable, "-I", "-c", SERVE_SCRIPT, str(root / "manifest.json")],
        cwd=root,
        capture_output=True,
        text=True,
        env=_isolated_environment(),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for family, entry in manifest.items():
        with np.load(entry["outputs"]) as outputs:
            results[family]["served"] = {name: outputs[name] for name in outputs.files}
        results[family]["structure"] = json.loads(open(entry["structure"]).read())
    return results


def _isolated_environment():
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return environment


@pytest.mark.parametrize("family", list(FAMILIES))
def test_served_signatures_match_the_keras_model(served, built, family):
    if not _selected(family):
        pytest.skip(
            f"{family} exports through the same TensorFlow subprocess as the families run "
            "here; checked under TensorFlow (KERAS_AEREC_EXPORT_ALL=1 runs it here)"
        )
    result = served[family]
    if isinstance(result, Exception):
        raise result
    assert os.path.basename(result["path"]) == "1"
    structure = result["structure"]
    signatures = SIGNATURE_NAMES[result["kind"]]
    assert set(structure) == {*signatures, "variables", "warmup"}
    assert sorted(structure["warmup"]) == sorted(signatures)  # every record replayed
    assert not [name for name in structure["variables"] if "optimizer" in name]
    for signature, (inputs, outputs) in signatures.items():
        assert set(structure[signature]["inputs"]) == inputs, signature
        assert set(structure[signature]["outputs"]) == outputs, signature
    expected, actual = result["expected"], result["served"]
    # The vocabulary, position by position, then the missing id past the end.
    model = _model(built, family)
    vocabulary = actual.pop("item_vocabulary/item_ids")
    np.testing.assert_array_equal(vocabulary[:-1], np.asarray(model.item_ids))
    assert vocabulary[-1] == _missing(np.asarray(model.item_ids))
    np.testing.assert_array_equal(actual.pop("assets/item_ids"), vocabulary[:-1].astype(str))
    if "user_vocabulary/user_ids" in actual:
        users = actual.pop("user_vocabulary/user_ids")
        np.testing.assert_array_equal(users, [*model.user_ids, ""])
    assert set(actual) == set(expected)
    ranked = {}  # signature -> the expected ranking values (k + 1 of them)
    for name, values in expected.items():
        signature, output = name.split("/")
        if output == "item_ids":
            continue
        served_values = actual[name]
        if signature.startswith("recommend") and output in ("scores", "predicted_ratings"):
            if values.shape[1] == K + 1:
                ranked[signature] = values
                values = values[:, :K]
        if output == "unknown_item_count":
            np.testing.assert_array_equal(served_values, values, name)
            continue
        assert served_values.shape == values.shape, name
        np.testing.assert_array_equal(np.isneginf(served_values), np.isneginf(values), name)
        finite = np.isfinite(values)
        assert np.abs(served_values[finite] - values[finite]).max() <= TOLERANCE, name
    assert set(ranked) == {"recommend", "recommend_ids", "recommend_ids_excluding"}
    for signature, values in ranked.items():
        untied = _untied(values)
        name = f"{signature}/item_ids"
        np.testing.assert_array_equal(actual[name][untied], expected[name][untied], name)
        assert untied.mean() > 0.8, name  # the comparison is not vacuous


def test_i_autorec_signatures_take_original_ids(served):
    structure = served["i_autorec"]["structure"]
    assert structure["serving_default"]["inputs"] == {
        "user_id": ["string", [None]],
        "item_id": ["int64", [None]],
    }
    assert structure["recommend"]["inputs"] == {"user_id": ["string", [None]]}
    assert structure["recommend"]["outputs"] == {
        "item_ids": "int64",
        "scores": "float32",
        "predicted_ratings": "float32",
    }


DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
LISTING_START = "<!-- saved_model_cli listing: generated by tests/test_export.py -->"
LISTING_END = "<!-- end of the saved_model_cli listing -->"


def _saved_model_cli_show(path):
    shown = subprocess.run(
        [SAVED_MODEL_CLI, "show", "--all", "--dir", path],
        capture_output=True,
        text=True,
        env=_isolated_environment(),
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    return shown.stdout


@pytest.mark.parametrize("family", ["mult_vae", "i_autorec"])
def test_saved_model_cli_lists_the_documented_signatures(served, family):
    """`saved_model_cli show --all` lists the signatures; docs/serving.md shows the same.

    `KERAS_AEREC_UPDATE_DOCS=1` rewrites the docs' listing (MultVAE) from this output.
    """
    if keras.backend.backend() != "tensorflow":
        pytest.skip(
            "the SavedModel is the same TensorFlow graph whichever backend trained "
            "the model; its listing is checked under TensorFlow"
        )
    if not os.path.exists(SAVED_MODEL_CLI):
        pytest.skip("saved_model_cli is not installed next to this Python")
    result = served[family]
    if isinstance(result, Exception):
        raise result
    shown = _saved_model_cli_show(result["path"])
    for signature, (inputs, outputs) in SIGNATURE_NAMES[result["kind"]].items():
        assert f"signature_def['{signature}']" in shown
        for name in inputs:
            assert f"inputs['{name}']" in shown
        for name in outputs:
            assert f"outputs['{name}']" in shown
    if family != "mult_vae":
        return
    # The signature part, without the op list (its order changes from run to run).
    listing = "```text\n" + shown.split("The MetaGraph with tag set")[0].strip() + "\n```"
    path = os.path.join(DOCS, "serving.md")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    before, _, rest = text.partition(LISTING_START + "\n")
    documented, _, after = rest.partition("\n" + LISTING_END)
    if os.environ.get("KERAS_AEREC_UPDATE_DOCS") == "1":
        with open(path, "w", encoding="utf-8") as file:
            file.write(f"{before}{LISTING_START}\n{listing}\n{LISTING_END}{after}")
        documented = listing
    assert documented == listing, "docs/serving.md: rerun with KERAS_AEREC_UPDATE_DOCS=1"


# === Errors and layout (the SavedModel writer is faked: no TensorFlow build needed) ===


@pytest.fixture(scope="module")
def fitted():
    return _ease()[0]


@pytest.fixture
def fake_writer(monkeypatch):
    """Replaces the TensorFlow build with a small file write (records the plans)."""
    plans = []

    def write(model, plan, arrays, path):
        plans.append(plan)
        with open(os.path.join(path, "saved_model.pb"), "w") as file:
            file.write(plan["kind"])

    monkeypatch.setattr(saved_model, "_write_saved_model", write)
    return plans


def _tree(path):
    return sorted(
        os.path.relpath(os.path.join(folder, name), path)
        for folder, folders, files in os.walk(path)
        for name in folders + files
    )


def test_versions_increment_and_are_never_overwritten(tmp_path, fitted, fake_writer):
    assert export_saved_model(fitted, tmp_path, k=K, name="ease") == str(tmp_path / "ease" / "1")
    assert export_saved_model(fitted, tmp_path, k=K, name="ease") == str(tmp_path / "ease" / "2")
    assert export_saved_model(fitted, tmp_path, version=7, k=K, name="ease").endswith("7")
    assert export_saved_model(fitted, tmp_path, k=K, name="ease").endswith("8")
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match="`version` 7 already exists"):
        export_saved_model(fitted, tmp_path, version=7, k=K, name="ease")
    assert _tree(tmp_path) == before


def test_default_name_and_directory(tmp_path, fitted, fake_writer, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = export_saved_model(fitted, k=K)
    assert path == os.path.join("saved_models", fitted.name, "1")


def test_interrupted_export_leaves_no_version(tmp_path, fitted, monkeypatch):
    def interrupted(model, plan, arrays, path):
        with open(os.path.join(path, "saved_model.pb"), "w") as file:
            file.write("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(saved_model, "_write_saved_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(fitted, tmp_path / "models", k=K, name="ease")
    assert not (tmp_path / "models").exists()  # the folders it created are gone too
    (tmp_path / "models" / "ease" / "3").mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(fitted, tmp_path / "models", k=K, name="ease")
    assert _tree(tmp_path / "models") == ["ease", "ease/3"]


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_exports_are_removed(tmp_path, fitted, fake_writer, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    root, work = tmp_path / "models" / "ease", tmp_path / "tmp"
    dead, alive = _dead_pid(), os.getpid()
    leftovers = [
        root / f".tmp-next-{dead}-abc",
        root / f".tmp-3-{dead}-xyz",
        work / f"keras_aerec_export_{dead}_q1",
    ]
    kept = [
        root / "1",  # a published version
        root / f".tmp-next-{alive}-def",  # an export in progress
        work / f"keras_aerec_export_{alive}_q2",
        work / "someone_else",
    ]
    for folder in leftovers + kept:
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_text("x")
    assert export_saved_model(fitted, tmp_path / "models", k=K, name="ease").endswith("2")
    assert [folder for folder in leftovers if folder.exists()] == []
    assert all((folder / "saved_model.pb").exists() for folder in kept)


def test_disk_full_is_one_clear_error(tmp_path, fitted, monkeypatch, capsys):
    from tensorflow import errors

    def disk_full(model, plan, arrays, path):
        with open(os.path.join(path, "saved_model.pb"), "w") as file:
            file.write("partial")
        raise errors.ResourceExhaustedError(
            None, None, f"{path}/variables/variables.data; No space left on device"
        )

    monkeypatch.setattr(saved_model, "_write_saved_model", disk_full)
    with pytest.raises(OSError, match="No space left on the device") as raised:
        export_saved_model(fitted, tmp_path / "models", k=K, name="ease")
    assert raised.value.errno == errno.ENOSPC
    assert not (tmp_path / "models").exists()
    from keras_aerec.cli.common import logger
    from keras_aerec.cli.main import main

    # main() points the package logger at the captured stderr: restored afterwards.
    for name in ("handlers", "level", "propagate"):
        monkeypatch.setattr(
            logger, name, list(logger.handlers) if name == "handlers" else getattr(logger, name)
        )
    fitted.save(tmp_path / "ease.keras")
    arguments = ["export", str(tmp_path / "ease.keras"), "--directory", str(tmp_path), "--k", "3"]
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "No space left on the device" in error[0], error


def test_warmup_without_the_serving_protos_names_the_install(
    tmp_path, fitted, fake_writer, monkeypatch
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        saved_model.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "tensorflow_serving" else find_spec(name, *args),
    )
    with pytest.raises(ImportError, match="pip install --no-deps tensorflow-serving-api"):
        export_saved_model(fitted, tmp_path, k=K)
    assert _tree(tmp_path) == []
    export_saved_model(fitted, tmp_path, k=K, name="ease", warmup=False)
    assert fake_writer[-1]["warmup"] is False


def test_models_config_lists_every_model_and_keeps_operator_settings(tmp_path, fitted, fake_writer):
    export_saved_model(fitted, tmp_path, k=K, name="ease")
    path = write_models_config(tmp_path, base_path="/models")
    assert path == os.path.join(tmp_path, "models.config")
    with open(path) as file:
        text = file.read()
    assert text == (
        'model_config_list {\n  config {\n    name: "ease"\n'
        '    base_path: "/models/ease"\n    model_platform: "tensorflow"\n  }\n}\n'
    )
    # What an operator adds by hand survives the next update: a policy, another model.
    edited = text.replace(
        '"tensorflow"\n', '"tensorflow"\n    model_version_policy { specific { versions: 1 } }\n'
    ).removesuffix("}\n")
    edited += '  config { name: "elsewhere" base_path: "/srv/x" model_platform: "tensorflow" }\n}\n'
    with open(path, "w") as file:
        file.write(edited)
    export_saved_model(fitted, tmp_path, k=K, name="ease_2")
    write_models_config(tmp_path)
    with open(path) as file:
        text = file.read()
    assert f'base_path: "{tmp_path}/ease"' in text and f'base_path: "{tmp_path}/ease_2"' in text
    assert "specific { versions: 1 }" in text and 'base_path: "/srv/x"' in text
    assert text.count("config {") == 3 and "/models/ease" not in text
    with open(path, "w") as file:
        file.write("model_config_list { config { name: 'x' }")
    with pytest.raises(ValueError, match="should be a TF Serving model config"):
        write_models_config(tmp_path)


def test_unfitted_model_is_refused(tmp_path, fake_writer):
    model = MultDAE(num_items=NUM_ITEMS, hidden_dims=(), latent_dim=4)
    with pytest.raises(ValueError, match="should be fitted before export"):
        export_saved_model(model, tmp_path, k=K)
    model.compile(optimizer="adam")  # compiled is not fitted
    with pytest.raises(ValueError, match="should be fitted before export"):
        export_saved_model(model, tmp_path, k=K)
    with pytest.raises(ValueError, match="should be fitted before export"):
        export_saved_model(EASE(num_items=NUM_ITEMS, l2=5.0), tmp_path, k=K)
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("k", [0, NUM_ITEMS + 1, 2.5, True])
def test_k_outside_the_catalogue_is_refused(tmp_path, fitted, fake_writer, k):
    with pytest.raises(
        ValueError, match=rf"`k` should be an integer between 1 and .*\({NUM_ITEMS}\)"
    ):
        export_saved_model(fitted, tmp_path, k=k)
    assert _tree(tmp_path) == []


def test_target_that_is_not_a_model_root_is_refused(tmp_path, fitted, fake_writer):
    (tmp_path / "ease").mkdir()
    (tmp_path / "ease" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not a model root.*'notes.txt'"):
        export_saved_model(fitted, tmp_path, k=K, name="ease")
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(ValueError, match="is not a model root.*it is a file"):
        export_saved_model(fitted, tmp_path, k=K, name="file")
    (tmp_path / "version" / "1").mkdir(parents=True)
    (tmp_path / "version" / "1" / "saved_model.pb").write_text("a SavedModel")
    with pytest.raises(ValueError, match="is itself a SavedModel"):
        export_saved_model(fitted, tmp_path / "version" / "1", k=K, name="ease")
    with pytest.raises(ValueError, match="`name` should be a folder name"):
        export_saved_model(fitted, tmp_path, k=K, name="../escape")
    with pytest.raises(ValueError, match="`version` should be a positive integer"):
        export_saved_model(fitted, tmp_path, version=0, k=K)
    assert _tree(tmp_path) == [
        "ease",
        "ease/notes.txt",
        "file",
        "version",
        "version/1",
        "version/1/saved_model.pb",
    ]
    assert (tmp_path / "file").read_text() == "keep me"


def test_model_without_serving_support_is_refused(tmp_path, fake_writer):
    inputs = keras.Input((NUM_ITEMS,))
    plain = keras.Model(inputs, keras.layers.Dense(NUM_ITEMS)(inputs))
    with pytest.raises(ValueError, match="should be a keras_aerec model with serving support"):
        export_saved_model(plain, tmp_path, k=K)
    assert _tree(tmp_path) == []


def test_item_based_rating_model_needs_its_training_ratings(tmp_path, built, fitted, fake_writer):
    train = _ratings()
    model = _model(built, "i_autorec")
    with pytest.raises(ValueError, match="`ratings` should be the users x items training"):
        export_saved_model(model, tmp_path, k=K)
    with pytest.raises(ValueError, match=rf"`k` should be .*\({NUM_ITEMS}\)"):
        export_saved_model(model, tmp_path, k=NUM_ITEMS + 1, ratings=train)
    with pytest.raises(ValueError, match="`ratings` is only used by item-based"):
        export_saved_model(fitted, tmp_path, k=K, ratings=train)
    assert _tree(tmp_path) == []
    path = export_saved_model(model, tmp_path, k=K, ratings=train)
    assert fake_writer[-1]["kind"] == "rating_pairs" and path.endswith("1")


def test_item_based_export_refuses_a_sample_of_its_ratings(tmp_path, built, fake_writer):
    model = _model(built, "i_autorec")
    sample = _ratings().tolil()
    sample[4:16] = 0  # 13 of the 24 users left without a rating
    with pytest.raises(ValueError, match="13 of its 24 users have none"):
        export_saved_model(model, tmp_path, k=K, ratings=sample.tocsr())
    assert _tree(tmp_path) == []


# === CLI ===


def _cli_parser():
    parser = argparse.ArgumentParser(prog="keras-aerec")
    export_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_exports_a_keras_file(tmp_path, fitted, fake_writer, capsys):
    fitted.save(tmp_path / "ease.keras")
    args = _cli_parser().parse_args(
        [
            "export",
            str(tmp_path / "ease.keras"),
            "--directory",
            str(tmp_path / "out"),
            "--k",
            "4",
            "--version",
            "3",
        ]
    )
    export_cli.run(args)
    assert fake_writer[-1]["k"] == 4
    assert (tmp_path / "out" / fitted.name / "3" / "saved_model.pb").exists()
    assert str(tmp_path / "out" / fitted.name / "3") in capsys.readouterr().out


def test_cli_reads_the_ratings_of_an_item_based_model(tmp_path, built, fake_writer):
    train = _ratings()
    model = _model(built, "i_autorec")
    model.save(tmp_path / "autorec.keras")
    rows, columns = train.nonzero()
    lines = [
        f"{USER_IDS[u]}::{ITEM_IDS[i]}::{int(train[u, i])}"
        for u, i in zip(rows, columns, strict=True)
    ]
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    sp.save_npz(tmp_path / "ratings.npz", train)
    for ratings in ("ratings.dat", "ratings.npz"):
        args = _cli_parser().parse_args(
            [
                "export",
                str(tmp_path / "autorec.keras"),
                "--directory",
                str(tmp_path / "out"),
                "--k",
                "3",
                "--ratings",
                str(tmp_path / ratings),
            ]
        )
        export_cli.run(args)
    assert _tree(tmp_path / "out" / model.name) == [
        "1",
        "1/saved_model.pb",
        "2",
        "2/saved_model.pb",
    ]
    with pytest.raises(ValueError, match="`--ratings` should be"):
        export_cli.run(
            _cli_parser().parse_args(
                ["export", str(tmp_path / "autorec.keras"), "--directory", str(tmp_path / "out")]
            )
        )


def test_cli_refuses_ratings_for_a_model_that_is_not_item_based(tmp_path, fitted, fake_writer):
    fitted.save(tmp_path / "ease.keras")
    (tmp_path / "ratings.dat").write_text("user-0::1000::5\n")
    args = _cli_parser().parse_args(
        ["export", str(tmp_path / "ease.keras"), "--ratings", str(tmp_path / "ratings.dat")]
    )
    with pytest.raises(ValueError, match="`--ratings` is only used by item-based .* for EASE "):
        export_cli.run(args)


def test_cli_writes_the_models_config(tmp_path, fitted, fake_writer, capsys):
    fitted.save(tmp_path / "ease.keras")
    out = str(tmp_path / "out")
    arguments = ["export", str(tmp_path / "ease.keras"), "--directory", out, "--k", "3"]
    arguments += ["--name", "ease"]
    export_cli.run(_cli_parser().parse_args([*arguments, "--models-config", "--base-path", "/m"]))
    assert 'base_path: "/m/ease"' in (tmp_path / "out" / "models.config").read_text()
    assert "models.config" in capsys.readouterr().out
    with pytest.raises(ValueError, match="`--base-path` is only used with `--models-config`"):
        export_cli.run(_cli_parser().parse_args([*arguments, "--base-path", "/m"]))


def test_cli_reports_a_missing_model_file(tmp_path):
    args = _cli_parser().parse_args(["export", str(tmp_path / "missing.keras")])
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export_cli.run(args)


def test_cli_reports_a_damaged_model_file(tmp_path):
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(b"not a zip archive")
    args = _cli_parser().parse_args(["export", str(damaged)])
    with pytest.raises(CommandError, match="damaged"):
        export_cli.run(args)
