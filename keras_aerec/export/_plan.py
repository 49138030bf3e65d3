"""What a model's SavedModel serves: a JSON-able plan and the numpy arrays it embeds.

This part runs under any backend. It checks that the model can be served (supported
family, fitted, `k` within the catalogue) and reduces it to a plan: the kind of
signatures to build, their sizes, and the arrays the graph looks things up in (original
ids, and for item-based rating models the precomputed item codes and the training
ratings). `_tf_builder` turns the plan into TensorFlow signatures.
"""

import numbers
import pkgutil

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from keras_aerec.models.cdae import CDAE
from keras_aerec.models.rating_autoencoder import RatingAutoencoder
from keras_aerec.models.recommender import TopNRecommender
from keras_aerec.models.svae import SVAE

# Kinds of serving plans (see docs/serving.md for the signatures of each).
ROWS = "rows"  # implicit models reading an interaction row: MultVAE, MultDAE, EASE
CDAE_ROWS = "cdae"  # CDAE: an interaction row and a training-user position
SEQUENCES = "sequences"  # SVAE: a padded sequence of item ids
RATING_ROWS = "rating_rows"  # user-based rating models: a user's rating vector
RATING_PAIRS = "rating_pairs"  # item-based rating models: (user id, item id) pairs

_ENCODE_BATCH_SIZE = 1024
# A model's training users all have ratings: more than this share without any in the
# `ratings` given at export means they are not its training ratings (a sample, say).
_MAX_UNRATED_USER_SHARE = 0.1
_NOT_ELEMENTWISE = ("softmax", "log_softmax")


def import_custom_objects():
    """Imports every keras_aerec model, layer and loss, so `.keras` files deserialize."""
    import keras_aerec.layers
    import keras_aerec.losses
    import keras_aerec.models

    for package in (keras_aerec.layers, keras_aerec.losses, keras_aerec.models):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            __import__(info.name)


def serving_plan(model, k, ratings=None, side_information=None):
    """Checks that `model` can be exported and returns `(plan, arrays)`.

    Args:
        model: a fitted keras_aerec model.
        k: number of items `recommend` returns.
        ratings: users x items training ratings (CSR or `Interactions`), required by
            item-based rating models and rejected by the others.
        side_information: item side information of an item-based rating model built with
            `side_information_size > 0` (see `RatingAutoencoder.rating_rows`).

    Returns:
        `(plan, arrays)`: a JSON-able dict (`kind`, `k`, sizes, ...) and a dict of numpy
        arrays (`item_ids`, ...) to embed in the SavedModel.
    """
    kind = _kind(model)
    if ratings is not None and kind != RATING_PAIRS:
        raise ValueError(
            "`ratings` is only used by item-based rating models (I-AutoRec: "
            '`variant="item"`), whose SavedModel embeds them. Received ratings for a '
            f"{_describe(model)}"
        )
    if side_information is not None and kind != RATING_PAIRS:
        raise ValueError(
            "`side_information` is only used with `ratings` by item-based rating models. "
            f"Received side_information for a {_describe(model)}"
        )
    _check_fitted(model)
    if kind == RATING_PAIRS:
        if ratings is None:
            raise ValueError(
                "`ratings` should be the users x items training ratings for an item-based "
                f"rating model ({_describe(model)}): its SavedModel reads each item's "
                "ratings from them, so clients only send user and item ids. Received: None"
            )
        plan, arrays = _rating_pairs_plan(model, ratings, side_information)
    elif kind == RATING_ROWS:
        plan = {
            "num_items": model.num_inputs,
            "side_information_size": model.side_information_size,
            "rating_range": [float(value) for value in model.rating_range],
        }
        arrays = {"item_ids": _ids(model.item_ids, model.num_inputs)}
    else:
        plan = {"num_items": model.num_items}
        arrays = {"item_ids": _ids(model.item_ids, model.num_items)}
        if kind == CDAE_ROWS:
            plan["num_users"] = model.num_users
        elif kind == SEQUENCES:
            plan["max_len"] = model.max_len
    plan["kind"] = kind
    plan["k"] = _check_k(k, plan["num_items"])
    plan["needs_model"] = kind != RATING_PAIRS
    return plan, arrays


def _kind(model):
    if isinstance(model, RatingAutoencoder):
        return RATING_PAIRS if model.variant == "item" else RATING_ROWS
    if isinstance(model, SVAE):
        return SEQUENCES
    if isinstance(model, CDAE):
        return CDAE_ROWS
    if (
        isinstance(model, TopNRecommender)
        and isinstance(model, keras.Model)
        and len(model.inputs) == 1
        and tuple(model.inputs[0].shape) == (None, model.num_items)
    ):
        return ROWS
    raise ValueError(
        "`model` should be a keras_aerec model with serving support (AutoRec, DeepRec, "
        "MultVAE, MultDAE, CDAE, EASE, SVAE). "
        f"Received: {type(model).__module__}.{type(model).__name__}"
    )


def _describe(model):
    variant = getattr(model, "variant", None)
    return f'{type(model).__name__} (variant="{variant}")' if variant else type(model).__name__


def _check_fitted(model):
    """Fitted = made a training step, or (closed-form models) holds non-zero weights."""
    optimizer = getattr(model, "optimizer", None)
    if not model.trainable_weights:  # closed form (EASE), compiled or not: no steps
        fitted = any(np.any(ops.convert_to_numpy(weight) != 0) for weight in model.weights)
    elif optimizer is not None:
        fitted = int(ops.convert_to_numpy(optimizer.iterations)) > 0
    else:
        fitted = False
    if not fitted:
        raise ValueError(
            f"`model` should be fitted before export: {type(model).__name__} "
            f"{model.name!r} has not been trained (no optimizer step; a model loaded with "
            "`compile=False` has lost that record, load it with `compile=True`)."
        )


def _check_k(k, num_items):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= num_items:
        raise ValueError(
            "`k` should be an integer between 1 and the number of items "
            f"({num_items}). Received: k={k!r}"
        )
    return int(k)


def _ids(ids, size):
    """Original ids as int64 (integer ids) or str (any other ids); positions when None."""
    if ids is None:
        return np.arange(size, dtype="int64")
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype("int64")
    ids = ids.astype(str)
    # The vocabulary files hold one id a line; "" pads id lists in requests.
    bad = [value for value in ids.tolist() if not value or "\n" in value or "\r" in value]
    if bad:
        raise ValueError(
            "String ids should be non-empty and hold no line break to be served. "
            f"Received: {bad[0]!r}"
        )
    return ids


def _rating_pairs_plan(model, ratings, side_information):
    """I-AutoRec-style plan: item codes precomputed from the training ratings.

    The model reconstructs an item's ratings over the users, `f(h W + b)` with `h` the
    input of its last linear map. With fixed training ratings every item's `h` is a
    constant, so the graph embeds `h` for every item (items x hidden floats) and the
    last map, and computes any (user, item) pair or a user's whole row of predictions
    without the users x items reconstruction.
    """
    rows = model.rating_rows(ratings, side_information)  # items x users, checked
    matrix = sp.csr_matrix(getattr(ratings, "matrix", ratings), dtype="float32", copy=True)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    num_users, num_items = matrix.shape
    unrated = int(np.sum(np.diff(matrix.indptr) == 0))
    if unrated > _MAX_UNRATED_USER_SHARE * num_users:
        raise ValueError(
            "`ratings` should be the model's training ratings (every user it was trained on "
            f"has some); {unrated} of its {num_users} users have none, so the SavedModel "
            f"would recommend nothing to them. Received: {matrix.nnz} ratings"
        )
    hidden_model, kernel, bias, activation = _last_linear_map(model)
    batches = [
        _dense(rows[start : start + _ENCODE_BATCH_SIZE])
        for start in range(0, num_items, _ENCODE_BATCH_SIZE)
    ]
    codes = np.concatenate(
        [np.asarray(hidden_model.predict_on_batch(batch), dtype="float32") for batch in batches]
    )
    _check_decomposition(model, batches[0], codes, kernel, bias, activation)
    default = model.default_rating
    if default == "mean":
        default = float(matrix.data.mean()) if matrix.nnz else float(np.mean(model.rating_range))
    plan = {
        "num_items": num_items,
        "num_users": num_users,
        "rating_range": [float(value) for value in model.rating_range],
        "default_rating": float(default),
        "activation": keras.activations.serialize(activation),
    }
    arrays = {
        "item_ids": _ids(model.item_ids, num_items),
        "user_ids": _ids(model.user_ids, num_users),
        "item_codes": codes,
        "kernel": kernel,
        "bias": bias,
        "user_rated": np.diff(matrix.indptr) > 0,
        "item_rated": np.bincount(matrix.indices, minlength=num_items) > 0,
        "indptr": matrix.indptr.astype("int64"),
        "indices": matrix.indices.astype("int32"),
    }
    return plan, arrays


def _last_linear_map(model):
    """`(hidden_model, kernel, bias, activation)` with `model(x) = activation(hidden @ kernel + bias)`."""
    history = model.outputs[0]._keras_history
    layer = history.operation
    node = layer._inbound_nodes[history.node_index]
    hidden = node.input_tensors[0]
    if isinstance(layer, keras.layers.Dense):
        kernel = ops.convert_to_numpy(layer.kernel)
        bias = (
            ops.convert_to_numpy(layer.bias)
            if layer.bias is not None
            else np.zeros(kernel.shape[1], "float32")
        )
        activation = layer.activation
    elif node.arguments.kwargs.get("transpose") and hasattr(layer, "transpose_bias"):
        bias = ops.convert_to_numpy(layer.transpose_bias)  # DeepRec's tied decoder
        kernel = ops.convert_to_numpy(layer.kernel)[: bias.shape[0]].T
        activation = keras.activations.get("linear")
    else:
        raise ValueError(
            "An item-based rating model should end with a linear map (a `Dense` layer) to "
            f"be served. Received: {type(model).__name__} whose output layer is "
            f"{type(layer).__name__}"
        )
    if keras.activations.serialize(activation) in _NOT_ELEMENTWISE:
        raise ValueError(
            "The output activation of an item-based rating model should act on each "
            f"rating alone to be served. Received: {keras.activations.serialize(activation)}"
        )
    hidden_model = keras.Model(model.input, hidden)
    return hidden_model, np.asarray(kernel, "float32"), np.asarray(bias, "float32"), activation


def _check_decomposition(model, rows, codes, kernel, bias, activation):
    """Checks `activation(code @ kernel + bias)` against the model on the dense `rows`."""
    expected = np.asarray(model.predict_on_batch(rows), dtype="float32")
    actual = ops.convert_to_numpy(
        activation(ops.convert_to_tensor(codes[: len(rows)] @ kernel + bias))
    )
    if not np.allclose(actual, expected, rtol=1e-4, atol=1e-4):
        raise ValueError(
            f"{type(model).__name__} cannot be served from precomputed item codes: its "
            "output is not `activation(code @ kernel + bias)` of its last layer. Received: "
            f"a max difference of {np.abs(actual - expected).max():.3g}"
        )


def _dense(rows):
    return np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype="float32")
