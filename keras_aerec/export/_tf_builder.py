"""Builds and writes the SavedModel of a serving plan; TensorFlow backend only.

Run in the exporting process when the active backend is TensorFlow; otherwise run as
`python -m keras_aerec.export._tf_builder WORK_DIR OUTPUT_DIR` under
`KERAS_BACKEND=tensorflow`, where WORK_DIR holds `plan.json`, `arrays.npz` and
`model.keras` (written by `saved_model.py`). Every lookup (original ids, training
ratings) and the top-k happen in the graph with core TensorFlow ops, so the SavedModel
loads without keras_aerec or Keras.
"""

import json
import os
import shutil
import sys
import traceback

import keras
import numpy as np
import tensorflow as tf

from keras_aerec.export import _plan

ERROR_FILE = "error.json"
MISSING_INTEGER_ID = -1
MISSING_STRING_ID = ""
# Vocabulary files in the SavedModel's assets/, one id a line in column order.
VOCABULARY_FILES = {"item_ids": "item_ids.txt", "user_ids": "user_ids.txt"}
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_NEGATIVE_INFINITY = float("-inf")


def write_saved_model(model, plan, arrays, path):
    """Writes the SavedModel of `plan` (see `_plan.serving_plan`) to the folder `path`."""
    module = tf.Module()
    # The model's variables only: tracking the model itself would save its optimizer too.
    module.model_variables = [] if model is None else list(model.variables)
    module.item_ids = _variable(arrays["item_ids"], "item_ids")
    string_ids = arrays["item_ids"].dtype.kind == "U"
    module.missing_item_id = MISSING_STRING_ID if string_ids else MISSING_INTEGER_ID
    module.item_table = _id_table(arrays["item_ids"])
    signatures = _BUILDERS[plan["kind"]](module, model, plan, arrays)
    signatures.update(_vocabulary_signatures(module, arrays))
    # save() copies tracked assets into assets/; their sources live in the (staging)
    # output folder so that nothing is left elsewhere if the process is killed.
    sources = os.path.join(path, ".vocabulary")
    module.vocabulary_files = [
        tf.saved_model.Asset(_write_lines(arrays[name], os.path.join(sources, file_name)))
        for name, file_name in VOCABULARY_FILES.items()
        if name in arrays
    ]
    module.signature_functions = signatures
    tf.saved_model.save(module, path, signatures=signatures)
    shutil.rmtree(sources)
    if plan.get("warmup", False):
        _write_warmup_requests(path, plan, arrays, signatures)


# === Shared pieces ===


def _variable(array, name):
    """A constant stored with the weights (not in the graph, which is capped at 2 GB)."""
    return tf.Variable(np.asarray(array), trainable=False, name=name)


def _id_spec(ids, shape, name):
    dtype = tf.string if ids.dtype.kind == "U" else tf.int64
    return tf.TensorSpec(shape, dtype, name=name)


def _id_table(ids):
    """Original id -> position (-1 for ids the model does not know)."""
    keys = tf.constant(ids)
    values = tf.range(len(ids), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)


def _write_lines(ids, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.writelines(f"{value}\n" for value in ids.tolist())
    return path


def _top_k(module, scores, excluded, k):
    """Top-k of `scores` without the `excluded` entries, as original ids; best first.

    `tf.math.top_k` keeps the lower position first among equal scores, as
    `TopNRecommender.recommend` does. Entries past a row's last eligible item get
    `-inf` and the missing id (-1, or "" for string ids).
    """
    scores = tf.where(excluded, _NEGATIVE_INFINITY, scores)
    top = tf.math.top_k(scores, k=k, sorted=True)
    missing = tf.math.is_inf(top.values) & (top.values < 0)
    item_ids = tf.where(
        missing,
        tf.constant(module.missing_item_id, dtype=module.item_ids.dtype),
        tf.gather(module.item_ids, top.indices),
    )
    return item_ids, top.values, top.indices, missing


def _scatter_mask(rows, columns, shape):
    """Boolean (rows x items) mask, True at the given (row, column) pairs."""
    pairs = tf.stack([tf.cast(rows, tf.int64), tf.cast(columns, tf.int64)], axis=1)
    counts = tf.scatter_nd(pairs, tf.ones_like(rows, dtype=tf.float32), shape)
    return counts > 0


def _batch_shape(ids, num_items):
    return tf.stack([tf.shape(ids, out_type=tf.int64)[0], num_items])


def _lookup_items(module, item_ids):
    """Positions of a padded batch of item-id lists (-1: padding or unknown), unknowns per row.

    The padding value (-1, or "" for string ids) is skipped without being counted.
    """
    positions = module.item_table.lookup(item_ids)
    unknown = (positions < 0) & tf.not_equal(item_ids, module.missing_item_id)
    return positions, tf.reduce_sum(tf.cast(unknown, tf.int64), axis=1)


def _listed_items(module, item_ids, num_items):
    """`(listed, unknown_count)`: a (batch x items) mask of the known ids of each list."""
    positions, unknown = _lookup_items(module, item_ids)
    where = tf.where(positions >= 0)
    listed = _scatter_mask(
        where[:, 0], tf.gather_nd(positions, where), _batch_shape(item_ids, num_items)
    )
    return listed, unknown


def _id_signatures(module, specs, rank, num_items, k, value_name="scores"):
    """`recommend_ids` and `recommend_ids_excluding`: the id-list request forms.

    `rank(*inputs)` returns `(key, excluded, unknown_count)`: the ranking key of every
    item, the items never to return and the count of unknown ids per row.
    `recommend_ids_excluding` takes one more input, `exclude_item_ids`, a padded batch of
    item-id lists the application wants left out (unknown ones are counted too).
    """
    exclude_spec = tf.TensorSpec([None, None], module.item_ids.dtype, name="exclude_item_ids")

    def outputs(key, excluded, unknown):
        item_ids, top, _, _ = _top_k(module, key, excluded, k)
        return {"item_ids": item_ids, value_name: top, "unknown_item_count": unknown}

    @tf.function(input_signature=specs)
    def recommend_ids(*inputs):
        return outputs(*rank(*inputs))

    @tf.function(input_signature=[*specs, exclude_spec])
    def recommend_ids_excluding(*inputs):
        key, excluded, unknown = rank(*inputs[:-1])
        listed, unknown_excluded = _listed_items(module, inputs[-1], num_items)
        return outputs(key, excluded | listed, unknown + unknown_excluded)

    return {"recommend_ids": recommend_ids, "recommend_ids_excluding": recommend_ids_excluding}


def _vocabulary_signatures(module, arrays):
    """`item_vocabulary` (and `user_vocabulary` where users are inputs): id of each position.

    Positions past the end (or negative) give the missing id, so a client that only
    speaks to TF Serving pages through the vocabulary until it sees one. (TF Serving's
    REST API refuses a signature without inputs, hence `positions`.)
    """
    positions = tf.TensorSpec([None], tf.int64, name="positions")

    def lookup(ids, missing, positions):
        inside = (positions >= 0) & (positions < tf.size(ids, out_type=tf.int64))
        found = tf.gather(ids, tf.where(inside, positions, 0))
        return tf.where(inside, found, tf.constant(missing, dtype=ids.dtype))

    @tf.function(input_signature=[positions])
    def item_vocabulary(positions):
        return {"item_ids": lookup(module.item_ids, module.missing_item_id, positions)}

    signatures = {"item_vocabulary": item_vocabulary}
    if "user_ids" in arrays:
        module.user_ids = _variable(arrays["user_ids"], "user_ids")
        missing_user = (
            MISSING_STRING_ID if arrays["user_ids"].dtype.kind == "U" else MISSING_INTEGER_ID
        )

        @tf.function(input_signature=[positions])
        def user_vocabulary(positions):
            return {"user_ids": lookup(module.user_ids, missing_user, positions)}

        signatures["user_vocabulary"] = user_vocabulary
    return signatures


# === Implicit models ===


def _rows(module, model, plan, arrays):
    num_items, k = plan["num_items"], plan["k"]
    user_items = tf.TensorSpec([None, num_items], tf.float32, name="user_items")

    @tf.function(input_signature=[user_items])
    def serve(user_items):
        return {"scores": _float(model(user_items, training=False))}

    @tf.function(input_signature=[user_items])
    def recommend(user_items):
        scores = _float(model(user_items, training=False))
        item_ids, top_scores, _, _ = _top_k(module, scores, user_items != 0, k)
        return {"item_ids": item_ids, "scores": top_scores}

    def rank(item_ids):
        listed, unknown = _listed_items(module, item_ids, num_items)
        return _float(model(_float(listed), training=False)), listed, unknown

    specs = [_id_spec(arrays["item_ids"], [None, None], "item_ids")]
    return {
        "serving_default": serve,
        "recommend": recommend,
        **_id_signatures(module, specs, rank, num_items, k),
    }


def _cdae(module, model, plan, arrays):
    num_items, num_users, k = plan["num_items"], plan["num_users"], plan["k"]
    user_index = tf.TensorSpec([None], tf.int64, name="user_index")
    specs = [user_index, tf.TensorSpec([None, num_items], tf.float32, name="user_items")]

    def scores_of(user_index, user_items):
        # A position outside the training users is a new user (-1): scored from the row,
        # after the same fold-in of its user vector as `CDAE.score` (`fold_in_steps`).
        known = (user_index >= 0) & (user_index < num_users)
        user_index = tf.cast(tf.where(known, user_index, -1), tf.int32)
        scores = _float(model([user_index, user_items], training=False))
        if model.fold_in_steps:
            weights = [tf.convert_to_tensor(weight) for weight in model.fold_in_weights()]
            folded = _float(model.fold_in_outputs(_float(user_items), weights))
            scores = tf.where(known[:, None], scores, folded)
        return scores

    @tf.function(input_signature=specs)
    def serve(user_index, user_items):
        return {"scores": scores_of(user_index, user_items)}

    @tf.function(input_signature=specs)
    def recommend(user_index, user_items):
        scores = scores_of(user_index, user_items)
        item_ids, top_scores, _, _ = _top_k(module, scores, user_items != 0, k)
        return {"item_ids": item_ids, "scores": top_scores}

    def rank(user_index, item_ids):
        listed, unknown = _listed_items(module, item_ids, num_items)
        return scores_of(user_index, _float(listed)), listed, unknown

    id_specs = [user_index, _id_spec(arrays["item_ids"], [None, None], "item_ids")]
    return {
        "serving_default": serve,
        "recommend": recommend,
        **_id_signatures(module, id_specs, rank, num_items, k),
    }


def _sequences(module, model, plan, arrays):
    num_items, max_len, k = plan["num_items"], plan["max_len"], plan["k"]
    spec = _id_spec(arrays["item_ids"], [None, None], "sequences")
    layers = {
        name: model.get_layer(name)
        for name in ("item_embedding", "gru", "encoder", "z_mean", "decoder", "logits")
    }

    def positions_and_scores(sequences):
        positions = module.item_table.lookup(sequences)  # padding, unknown ids: -1
        known = positions >= 0
        # Known items, left-aligned in their order, then the most recent `max_len`.
        order = tf.argsort(tf.cast(~known, tf.int32), axis=1, stable=True)
        compact = tf.gather(positions, order, batch_dims=1)
        lengths = tf.reduce_sum(tf.cast(known, tf.int64), axis=1)
        width = tf.minimum(tf.shape(positions, out_type=tf.int64)[1], max_len)
        start = tf.maximum(lengths - max_len, 0)
        index = start[:, None] + tf.range(width)[None, :]
        kept = index < lengths[:, None]
        last_column = tf.maximum(tf.shape(positions, out_type=tf.int64)[1] - 1, 0)
        window = tf.gather(compact, tf.minimum(index, last_column), batch_dims=1)
        tokens = tf.cast(tf.where(kept, window + 1, 0), tf.int32)  # item + 1, 0 = padding
        states = layers["gru"](layers["item_embedding"](tokens), training=False)
        last = tf.gather(states, tf.maximum(tf.minimum(lengths, max_len) - 1, 0), batch_dims=1)
        code = layers["z_mean"](layers["encoder"](last))
        scores = _float(layers["logits"](layers["decoder"](code)))
        # A sequence without any known item has nothing to predict from.
        scores = tf.where(lengths[:, None] > 0, scores, _NEGATIVE_INFINITY)
        return scores

    @tf.function(input_signature=[spec])
    def serve(sequences):
        return {"scores": positions_and_scores(sequences)}

    @tf.function(input_signature=[spec])
    def recommend(sequences):
        scores = positions_and_scores(sequences)
        seen, _ = _listed_items(module, sequences, num_items)
        item_ids, top_scores, _, _ = _top_k(module, scores, seen, k)
        return {"item_ids": item_ids, "scores": top_scores}

    def rank(item_ids):
        listed, unknown = _listed_items(module, item_ids, num_items)
        return positions_and_scores(item_ids), listed, unknown

    # The id-list form of SVAE is its sequence, oldest first, under the common name.
    id_specs = [_id_spec(arrays["item_ids"], [None, None], "item_ids")]
    return {
        "serving_default": serve,
        "recommend": recommend,
        **_id_signatures(module, id_specs, rank, num_items, k),
    }


# === Rating models ===


def _rating_rows(module, model, plan, arrays):
    num_items, side_size, k = plan["num_items"], plan["side_information_size"], plan["k"]
    low, high = plan["rating_range"]
    specs = [tf.TensorSpec([None, num_items], tf.float32, name="ratings")]
    id_specs = [
        _id_spec(arrays["item_ids"], [None, None], "item_ids"),
        tf.TensorSpec([None, None], tf.float32, name="ratings"),
    ]
    if side_size:
        side = tf.TensorSpec([None, side_size], tf.float32, name="side_information")
        specs.append(side)
        id_specs.append(side)

    def reconstruct(ratings, side_information=None):
        inputs = (
            ratings if side_information is None else tf.concat([ratings, side_information], axis=1)
        )
        return _float(model(inputs, training=False))

    @tf.function(input_signature=specs)
    def serve(*inputs):
        return {"predicted_ratings": tf.clip_by_value(reconstruct(*inputs), low, high)}

    @tf.function(input_signature=specs)
    def recommend(*inputs):
        scores = reconstruct(*inputs)
        item_ids, top_scores, _, missing = _top_k(module, scores, inputs[0] != 0, k)
        predicted = tf.where(missing, _NEGATIVE_INFINITY, tf.clip_by_value(top_scores, low, high))
        return {"item_ids": item_ids, "scores": top_scores, "predicted_ratings": predicted}

    def rank(item_ids, ratings, *side_information):
        # The user's ratings as a dense row; an id listed twice has its ratings added.
        positions, unknown = _lookup_items(module, item_ids)
        where = tf.where(positions >= 0)
        pairs = tf.stack([where[:, 0], tf.gather_nd(positions, where)], axis=1)
        shape = _batch_shape(item_ids, num_items)
        dense = tf.scatter_nd(pairs, tf.gather_nd(ratings, where), shape)
        rated = _scatter_mask(pairs[:, 0], pairs[:, 1], shape)
        # Ranked by predicted rating, as `recommend` on the command line (ties: lower position).
        predicted = tf.clip_by_value(reconstruct(dense, *side_information), low, high)
        return predicted, rated, unknown

    return {
        "serving_default": serve,
        "recommend": recommend,
        **_id_signatures(module, id_specs, rank, num_items, k, "predicted_ratings"),
    }


def _rating_pairs(module, model, plan, arrays):
    del model  # the item codes and the last linear map hold everything served
    num_items, k, default = plan["num_items"], plan["k"], plan["default_rating"]
    low, high = plan["rating_range"]
    activation = keras.activations.get(plan["activation"])
    module.user_table = _id_table(arrays["user_ids"])
    for name in ("item_codes", "bias", "user_rated", "item_rated", "indptr", "indices"):
        setattr(module, name, _variable(arrays[name], name))
    module.user_weights = _variable(arrays["kernel"].T, "user_weights")  # users x hidden
    user_spec = _id_spec(arrays["user_ids"], [None], "user_id")
    item_spec = _id_spec(arrays["item_ids"], [None], "item_id")

    def user_positions(user_id):
        users = module.user_table.lookup(user_id)
        clamped = tf.maximum(users, 0)
        rated = (users >= 0) & tf.gather(module.user_rated, clamped)
        return clamped, rated

    @tf.function(input_signature=[user_spec, item_spec])
    def serve(user_id, item_id):
        users, user_rated = user_positions(user_id)
        items = module.item_table.lookup(item_id)
        items_clamped = tf.maximum(items, 0)
        raw = tf.reduce_sum(
            tf.gather(module.item_codes, items_clamped) * tf.gather(module.user_weights, users),
            axis=1,
        ) + tf.gather(module.bias, users)
        raw = _float(activation(raw))
        seen = user_rated & (items >= 0) & tf.gather(module.item_rated, items_clamped)
        return {"predicted_ratings": tf.where(seen, tf.clip_by_value(raw, low, high), default)}

    def scores_of(user_id):
        """Every item's score for the users (`default` for items without ratings), excluded."""
        users, user_rated = user_positions(user_id)
        raw = (
            tf.matmul(tf.gather(module.user_weights, users), module.item_codes, transpose_b=True)
            + tf.gather(module.bias, users)[:, None]
        )
        scores = tf.where(module.item_rated[None, :], _float(activation(raw)), default)
        # The user's training ratings, read from the embedded CSR matrix.
        starts = tf.gather(module.indptr, users)
        limits = tf.where(user_rated, tf.gather(module.indptr, users + 1), starts)
        entries = tf.ragged.range(starts, limits)
        rated = _scatter_mask(
            entries.value_rowids(),
            tf.gather(module.indices, entries.flat_values),
            _batch_shape(users, num_items),
        )
        return scores, rated | ~user_rated[:, None]  # unknown users get no recommendation

    @tf.function(input_signature=[user_spec])
    def recommend(user_id):
        scores, excluded = scores_of(user_id)
        item_ids, top_scores, top_items, missing = _top_k(module, scores, excluded, k)
        clipped = tf.where(
            tf.gather(module.item_rated, top_items),
            tf.clip_by_value(top_scores, low, high),
            top_scores,
        )
        predicted = tf.where(missing, _NEGATIVE_INFINITY, clipped)
        return {"item_ids": item_ids, "scores": top_scores, "predicted_ratings": predicted}

    def rank(user_id):
        # Ranked by predicted rating, as `recommend` on the command line (ties: lower position).
        scores, excluded = scores_of(user_id)
        predicted = tf.where(
            module.item_rated[None, :], tf.clip_by_value(scores, low, high), scores
        )
        return predicted, excluded, tf.zeros_like(user_id, dtype=tf.int64)

    return {
        "serving_default": serve,
        "recommend": recommend,
        **_id_signatures(module, [user_spec], rank, num_items, k, "predicted_ratings"),
    }


def _float(tensor):
    return tf.cast(tensor, tf.float32)


_BUILDERS = {
    _plan.ROWS: _rows,
    _plan.CDAE_ROWS: _cdae,
    _plan.SEQUENCES: _sequences,
    _plan.RATING_ROWS: _rating_rows,
    _plan.RATING_PAIRS: _rating_pairs,
}


# === TF Serving warm-up ===


def _write_warmup_requests(path, plan, arrays, signatures):
    """`assets.extra/tf_serving_warmup_requests`: one small PredictLog per signature.

    TF Serving replays these records when it loads the version, so that the first client
    request does not pay for the graph's first run.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    os.makedirs(os.path.join(path, os.path.dirname(WARMUP_FILE)), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(path, WARMUP_FILE)) as writer:
        for name, function in signatures.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=plan["model_name"], signature_name=name)
            )
            for spec in function.input_signature:
                request.inputs[spec.name].CopyFrom(tf.make_tensor_proto(warmup_input(spec, arrays)))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def warmup_input(spec, arrays):
    """A two-row request value for the input `spec`: real ids, padding, a new user."""
    ids = arrays["user_ids" if spec.name == "user_id" else "item_ids"]
    example = np.resize(ids, 3)
    padding = MISSING_STRING_ID if ids.dtype.kind == "U" else MISSING_INTEGER_ID
    if spec.name == "user_index":
        return np.array([0, -1], dtype="int64")
    if spec.name == "positions":
        return np.array([0, len(ids)], dtype="int64")  # an id, and past the end
    if spec.shape.rank == 1:  # user_id, item_id
        return example[:2]
    if spec.shape[1] is not None:  # a dense row over the items, or side information
        values = np.zeros((2, spec.shape[1]), dtype="float32")
        values[0, 0] = 1.0
        return values
    if spec.dtype == tf.float32:  # the ratings of an id list
        return np.array([[4.0, 3.0], [5.0, 0.0]], dtype="float32")
    return np.array([example[:2], [example[2], padding]], dtype=example.dtype)


# === Subprocess entry point ===


def main(argv):
    work_dir, output_dir = argv
    try:
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError("the export subprocess needs KERAS_BACKEND=tensorflow")
        with open(os.path.join(work_dir, "plan.json")) as file:
            plan = json.load(file)
        with np.load(os.path.join(work_dir, "arrays.npz")) as stored:
            arrays = {name: stored[name] for name in stored.files}
        model = None
        if plan["needs_model"]:
            _plan.import_custom_objects()
            model = keras.saving.load_model(os.path.join(work_dir, "model.keras"), compile=False)
        write_saved_model(model, plan, arrays, output_dir)
    except Exception as error:  # reported to the exporting process, which re-raises it
        with open(os.path.join(work_dir, ERROR_FILE), "w") as file:
            json.dump(
                {
                    "type": type(error).__name__,
                    "message": str(error),
                    "traceback": traceback.format_exc(),
                },
                file,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
