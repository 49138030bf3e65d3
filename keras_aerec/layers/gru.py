"""`GRU`: Keras' GRU, with every time step's input projected in one product on CPU."""

import keras
from keras import ops

from keras_aerec.api_export import keras_aerec_export


def _accelerator_present() -> bool:
    """Whether the backend runs on a GPU / TPU (where Keras' GRU can use cuDNN instead)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


@keras_aerec_export
class GRU(keras.layers.GRU):
    """`keras.layers.GRU` with the input projection taken out of the time loop.

    Without cuDNN (on CPU) Keras' GRU multiplies each time step's input by the input
    kernel inside its loop: `length` small products of `(batch, features)` rows, forward
    and backward. This layer computes `inputs @ kernel + bias` for every step in one
    product, then runs only the recurrent part in `keras.ops.scan`. The arithmetic is the
    GRU's (`reset_after=True`, Keras' default: gates z, r, h in that order), the weights
    are the same variables with the same names and shapes. The class is called `GRU`
    because Keras files key a layer's weights by its class name (`layers/gru/cell/...`):
    so `.weights.h5` files and checkpoints written with `keras.layers.GRU` load into it
    and back. It is serialized as `keras_aerec>GRU`.

    The one-product path runs for the common case: no mask, no initial state, no dropout
    while training, not `stateful`, `go_backwards`, `unroll` or `return_state`, biases
    with `reset_after=True`, and no GPU / TPU (there cuDNN is faster). Anything else
    calls `keras.layers.GRU.call` unchanged.

    Args:
        units, **kwargs: as `keras.layers.GRU`.

    Example:

    >>> import numpy as np
    >>> layer = GRU(4, return_sequences=True)
    >>> layer(np.ones((2, 3, 5), "float32")).shape
    (2, 3, 4)
    """

    def _projects_in_one_product(self, initial_state, mask, training) -> bool:
        cell = self.cell
        dropout = bool(training) and (cell.dropout > 0 or cell.recurrent_dropout > 0)
        return (
            mask is None
            and initial_state is None
            and not dropout
            and not self.stateful
            and not self.go_backwards
            and not self.unroll
            and not self.return_state
            and cell.reset_after
            and cell.use_bias
            and self.use_cudnn is not True
            and not _accelerator_present()
        )

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if not self._projects_in_one_product(initial_state, mask, training):
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        cell = self.cell
        input_bias, recurrent_bias = cell.bias[0], cell.bias[1]
        # (length, batch, 3 * units): every step's input gates, in one product.
        projected = ops.transpose(ops.matmul(sequences, cell.kernel) + input_bias, (1, 0, 2))
        initial = ops.zeros((ops.shape(sequences)[0], cell.units), dtype=projected.dtype)
        recurrent_kernel = cell.recurrent_kernel

        def step(state, gates):
            inner = ops.matmul(state, recurrent_kernel) + recurrent_bias
            x_z, x_r, x_h = ops.split(gates, 3, axis=-1)
            inner_z, inner_r, inner_h = ops.split(inner, 3, axis=-1)
            z = cell.recurrent_activation(x_z + inner_z)
            r = cell.recurrent_activation(x_r + inner_r)
            candidate = cell.activation(x_h + r * inner_h)
            state = z * state + (1.0 - z) * candidate
            return state, state

        last, states = ops.scan(step, initial, projected)
        if not self.return_sequences:
            return last
        return ops.transpose(states, (1, 0, 2))
