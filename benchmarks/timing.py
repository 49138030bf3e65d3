"""Keras callbacks the benchmark scripts time training with."""

import time

import keras


class EpochTimes(keras.callbacks.Callback):
    """Wall time of each epoch, in `seconds`.

    Args:
        async_safe: whether Keras may keep its training loop asynchronous with this
            callback attached (as with its own callbacks); the epoch then ends when its last
            step has been dispatched.
    """

    def __init__(self, async_safe=False):
        super().__init__()
        self.async_safe = async_safe
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
