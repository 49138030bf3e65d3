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
import sys
import traceback

import keras
import numpy as np
import tensorflow as tf

from keras_aerec.export import _plan

ERROR_FILE = "error.json"
MISSING_INTEGER_ID = -1
MISSING_STRING_ID = ""
_NEGATIVE_INFINITY = float("-inf")


def write_saved_model(model, plan, arrays, path):
    """Writes the SavedModel of `plan` (see `_plan.serving_plan`) to the folder `path`."""
    module = tf.Module()
    # The model's variables only: tracking the model itself would save its optimizer too.
    module.model_variables = [] if model is None else list(model.variables)
    module.item_ids = _variable(arrays["item_ids"], "item_ids")
    string_ids = arrays["item_ids"].dtype.kind == "U"
    module.missing_item_id = MISSING_STRING_ID if string_ids else MISSING_INTEGER_ID
    builder = _BUILDERS[plan["kind"]]
    serve, recommend = builder(module, model, plan, arrays)
    module.serve, module.recommend = serve, recommend
    tf.saved_model.save(module, path, signatures={"serving_default": serve, "recommend": recommend})


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

    return serve, recommend


def _cdae(module, model, plan, arrays):
    num_items, num_users, k = plan["num_items"], plan["num_users"], plan["k"]
    specs = [
        tf.TensorSpec([None], tf.int64, name="user_index"),
        tf.TensorSpec([None, num_items], tf.float32, name="user_items"),
    ]

    def scores_of(user_index, user_items):
        # A position outside the training users is a new user (-1): scored from the row.
        known = (user_index >= 0) & (user_index < num_users)
        user_index = tf.cast(tf.where(known, user_index, -1), tf.int32)
        return _float(model([user_index, user_items], training=False))

    @tf.function(input_signature=specs)
    def serve(user_index, user_items):
        return {"scores": scores_of(user_index, user_items)}

    @tf.function(input_signature=specs)
    def recommend(user_index, user_items):
        scores = scores_of(user_index, user_items)
        item_ids, top_scores, _, _ = _top_k(module, scores, user_items != 0, k)
        return {"item_ids": item_ids, "scores": top_scores}

    return serve, recommend


def _sequences(module, model, plan, arrays):
    num_items, max_len, k = plan["num_items"], plan["max_len"], plan["k"]
    module.item_table = _id_table(arrays["item_ids"])
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
        return positions, known, scores

    @tf.function(input_signature=[spec])
    def serve(sequences):
        return {"scores": positions_and_scores(sequences)[2]}

    @tf.function(input_signature=[spec])
    def recommend(sequences):
        positions, known, scores = positions_and_scores(sequences)
        where_known = tf.where(known)
        seen = _scatter_mask(
            where_known[:, 0],
            tf.gather_nd(positions, where_known),
            tf.stack([tf.shape(positions, out_type=tf.int64)[0], num_items]),
        )
        item_ids, top_scores, _, _ = _top_k(module, scores, seen, k)
        return {"item_ids": item_ids, "scores": top_scores}

    return serve, recommend


# === Rating models ===


def _rating_rows(module, model, plan, arrays):
    num_items, side_size, k = plan["num_items"], plan["side_information_size"], plan["k"]
    low, high = plan["rating_range"]
    specs = [tf.TensorSpec([None, num_items], tf.float32, name="ratings")]
    if side_size:
        specs.append(tf.TensorSpec([None, side_size], tf.float32, name="side_information"))

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

    return serve, recommend


def _rating_pairs(module, model, plan, arrays):
    del model  # the item codes and the last linear map hold everything served
    num_items, k, default = plan["num_items"], plan["k"], plan["default_rating"]
    low, high = plan["rating_range"]
    activation = keras.activations.get(plan["activation"])
    module.user_table = _id_table(arrays["user_ids"])
    module.item_table = _id_table(arrays["item_ids"])
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

    @tf.function(input_signature=[user_spec])
    def recommend(user_id):
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
            tf.stack([tf.shape(users, out_type=tf.int64)[0], num_items]),
        )
        excluded = rated | ~user_rated[:, None]  # unknown users get no recommendation
        item_ids, top_scores, top_items, missing = _top_k(module, scores, excluded, k)
        clipped = tf.where(
            tf.gather(module.item_rated, top_items),
            tf.clip_by_value(top_scores, low, high),
            top_scores,
        )
        predicted = tf.where(missing, _NEGATIVE_INFINITY, clipped)
        return {"item_ids": item_ids, "scores": top_scores, "predicted_ratings": predicted}

    return serve, recommend


def _float(tensor):
    return tf.cast(tensor, tf.float32)


_BUILDERS = {
    _plan.ROWS: _rows,
    _plan.CDAE_ROWS: _cdae,
    _plan.SEQUENCES: _sequences,
    _plan.RATING_ROWS: _rating_rows,
    _plan.RATING_PAIRS: _rating_pairs,
}


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
