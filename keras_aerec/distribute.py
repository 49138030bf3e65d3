"""Data-parallel training: `data_parallel()` on `keras.distribution` and `tf.distribute`.

Inside `with data_parallel():` models are built, compiled and fit as usual; every batch
is split across the devices and the gradients are averaged:

- JAX: `keras.distribution.DataParallel` over all local devices (the previous
  distribution is restored on exit).
- TensorFlow: `tf.distribute.MirroredStrategy` (the GPUs of one host, else its logical
  CPUs) or `tf.distribute.MultiWorkerMirroredStrategy` (several hosts, configured by the
  `TF_CONFIG` environment variable).
- PyTorch: not supported (Keras has no data-parallel `fit` for torch).

What makes a distributed run train like the single-device one (see
`docs/distribution.md`):

- Under `tf.distribute`, each replica computes the loss of its share of the batch and
  the replicas' gradients are summed: a term added in a `compute_loss` override is
  divided by the number of replicas as Keras does for its own losses
  (`scale_loss_for_replicas`), and a loss normalised by a count of its batch divides
  by the whole batch's count (`sum_over_replicas`).
- Under `tf.distribute`, a batch's targets are not the very array of its inputs
  (`distinct_targets`), and `score()` predicts through `predict_batch`.
- JAX shards every batch evenly across the devices: `RowBatches` and `SequenceBatches`
  trim the last batch of an epoch to a multiple of `batch_multiple()` (at most
  `devices - 1` rows per epoch; rows are reshuffled every epoch, so no row is always
  left out).
"""

import contextlib
import json
import logging
import os

import keras
import numpy as np
from keras import ops

logger = logging.getLogger("keras_aerec")

STRATEGIES = ("auto", "mirrored", "multi-worker")


def _check_strategy(strategy):
    if strategy not in STRATEGIES:
        raise ValueError(
            f"`strategy` should be one of {STRATEGIES}. Received: strategy={strategy!r}"
        )


# One strategy per kind and process: a model is tied to the strategy it was built under
# (Keras refuses to mix two), and TensorFlow allows one MultiWorkerMirroredStrategy.
_TENSORFLOW_STRATEGIES = {}
_TENSORFLOW_REPLICATED = False


def _check_tf_config() -> None:
    """A set `TF_CONFIG` that is not a JSON object fails here, naming the variable.

    TensorFlow would otherwise fail deep in its cluster resolver with a bare
    `JSONDecodeError` that does not say which input was wrong.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        return
    try:
        config = json.loads(text)
    except ValueError as error:
        config = error
    if not isinstance(config, dict):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(
            "`TF_CONFIG` should be a JSON object such as "
            '{"cluster": {"worker": ["host1:port", ...]}, "task": {"type": "worker", '
            f'"index": 0}}}}. Received: TF_CONFIG={shown!r}'
        )


def _tensorflow_strategy(strategy):
    import tensorflow as tf

    _check_tf_config()
    multi_worker = strategy == "multi-worker" or (
        strategy == "auto" and bool(os.environ.get("TF_CONFIG"))
    )
    kind = "multi-worker" if multi_worker else "mirrored"
    if kind not in _TENSORFLOW_STRATEGIES:
        if multi_worker:
            _TENSORFLOW_STRATEGIES[kind] = _reduce_nested(
                tf.distribute.MultiWorkerMirroredStrategy()
            )
        else:
            devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
            _TENSORFLOW_STRATEGIES[kind] = tf.distribute.MirroredStrategy(
                [device.name for device in devices]
            )
    if _TENSORFLOW_STRATEGIES[kind].num_replicas_in_sync > 1:
        global _TENSORFLOW_REPLICATED
        _TENSORFLOW_REPLICATED = True
    return _TENSORFLOW_STRATEGIES[kind]


def _reduce_nested(strategy):
    """Patches this strategy's `reduce` for the calls Keras 3 `fit` makes of it.

    With `MultiWorkerMirroredStrategy`, Keras 3.15 `fit` failed twice in
    `strategy.reduce` (keras-team/keras#20585): it reduces a whole `(x, y)` batch in one
    call, which the strategy cannot ("Attempt to convert a value (PerReplica...)"), and
    reduces scalar metrics with `axis=0` ("Invalid reduction dimension 0"). Here nested
    values are reduced one by one, and a scalar's `axis` is dropped, on this strategy
    object only.
    """
    import tensorflow as tf

    reduce = strategy.reduce

    def reduce_one(reduce_op, item, axis):
        first = item.values[0] if isinstance(item, tf.distribute.DistributedValues) else item
        if axis is not None and len(getattr(first, "shape", ())) == 0:
            axis = None
        return reduce(reduce_op, item, axis=axis)

    def reduce_each(reduce_op, value, axis=None):
        return tf.nest.map_structure(lambda item: reduce_one(reduce_op, item, axis), value)

    strategy.reduce = reduce_each
    return strategy


def distinct_targets() -> bool:
    """Whether a batch's targets must not be the very array of its inputs.

    Measured with MirroredStrategy on two logical CPUs: when `__getitem__` returned one
    numpy array as both inputs and targets, `evaluate` and `fit` of Mult-DAE gave losses
    off by up to 20%, varying run to run (the input pipeline's two tensors alias one
    buffer, which an op of the model may reuse in place). True once this process has
    created a multi-replica TensorFlow strategy in `data_parallel()`.
    """
    return _TENSORFLOW_REPLICATED


def _jax_distribution(strategy):
    if strategy == "multi-worker":
        raise ValueError(
            "`strategy='multi-worker'` is only supported with the TensorFlow backend "
            "(`TF_CONFIG`). With JAX, use `strategy='auto'` on one host. "
            f"Received: strategy={strategy!r} with KERAS_BACKEND=jax"
        )
    return keras.distribution.DataParallel()


@contextlib.contextmanager
def data_parallel(strategy: str = "auto"):
    """Context manager inside which models are built, compiled and fit data-parallel.

    The batch size given to the batches (`RowBatches(batch_size=...)`) is the global
    batch: each of `n` devices processes `batch_size / n` rows per step.

    Args:
        strategy: `"auto"` (JAX: `DataParallel` over the local devices; TensorFlow:
            `MultiWorkerMirroredStrategy` when `TF_CONFIG` is set, else
            `MirroredStrategy`), `"mirrored"` (one host) or `"multi-worker"`
            (TensorFlow only, hosts listed in `TF_CONFIG`).

    Yields:
        The `tf.distribute.Strategy` (TensorFlow) or `keras.distribution.DataParallel`
        (JAX) in use.

    Example:

    ```python
    with data_parallel():
        model = MultVAE(num_items=split.train.shape[1])
        model.compile(optimizer="adam")
        model.fit(RowBatches(split.train, batch_size=500, seed=0), epochs=10)
    ```
    """
    _check_strategy(strategy)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        distribute_strategy = _tensorflow_strategy(strategy)
        logger.info(
            "Training data-parallel on %d replicas (%s).",
            distribute_strategy.num_replicas_in_sync,
            type(distribute_strategy).__name__,
        )
        with distribute_strategy.scope():
            yield distribute_strategy
    elif backend == "jax":
        distribution = _jax_distribution(strategy)
        logger.info(
            "Training data-parallel on %d devices (DataParallel).",
            distribution.device_mesh.devices.size,
        )
        with distribution.scope():
            yield distribution
    else:
        raise ValueError(
            "`data_parallel` supports the TensorFlow and JAX backends. "
            f"Received: KERAS_BACKEND={backend}"
        )


def scale_loss_for_replicas(loss):
    """Divides `loss` by the number of `tf.distribute` replicas (identity elsewhere).

    Keras scales its own losses this way (`keras.losses.Loss` with a mean reduction,
    `add_loss` terms): each replica's gradient is summed across replicas, so an
    unscaled per-replica loss would train and report as `n` times the single-device
    loss. JAX computes one global loss over the sharded batch and needs no scaling.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if num_replicas > 1:
        loss = ops.multiply(loss, ops.cast(1.0 / num_replicas, loss.dtype))
    return loss


def sum_over_replicas(value):
    """Sum of `value` over the `tf.distribute` replicas of this step (identity elsewhere).

    A loss normalised by a count of its batch (observed ratings, target positions)
    divides each replica's sum by the global count, so that the replicas' summed
    gradients equal the single-device ones exactly, whatever each replica's share.
    """
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(value))


def batch_multiple(batch_size: int | None = None) -> int:
    """Number every batch size must divide by: the devices of an active JAX `DataParallel`.

    Returns 1 when no `keras.distribution` is set (and always under TensorFlow, whose
    strategies split uneven batches themselves).

    Args:
        batch_size: optional batch size to check against the multiple.
    """
    multiple = 1
    if keras.backend.backend() == "jax":
        distribution = keras.distribution.distribution()
        if isinstance(distribution, keras.distribution.DataParallel):
            multiple = int(distribution.device_mesh.devices.size)
    if batch_size is not None and batch_size % multiple:
        raise ValueError(
            f"`batch_size` should be a multiple of the {multiple} data-parallel devices. "
            f"Received: batch_size={batch_size}"
        )
    return multiple


def predict_batch(model, inputs):
    """`model.predict_on_batch(inputs)`, also right under data-parallel training.

    Keras' TensorFlow `predict_on_batch` hands the whole batch to every replica and
    concatenates their outputs, so a model built in `data_parallel()` returned each row
    `n` times; `predict` splits the batch across the replicas instead. Inside a JAX
    `data_parallel()`, a batch whose size does not divide by the devices is padded with
    zero rows, whose outputs are dropped.
    """
    size = int(keras.tree.flatten(inputs)[0].shape[0])
    if keras.backend.backend() == "tensorflow":
        if model.distribute_strategy.num_replicas_in_sync > 1:
            return model.predict(inputs, batch_size=max(size, 1), verbose=0)
        return model.predict_on_batch(inputs)
    padding = -size % batch_multiple()
    if padding:
        inputs = keras.tree.map_structure(
            lambda array: np.concatenate(
                [array, np.zeros((padding,) + array.shape[1:], dtype=array.dtype)]
            ),
            inputs,
        )
        return keras.tree.map_structure(lambda array: array[:size], model.predict_on_batch(inputs))
    return model.predict_on_batch(inputs)
