"""keras_aerec.allocator: freed memory kept for reuse, and the way to turn it off."""

import json
import os
import subprocess
import sys

import pytest

from keras_aerec import allocator

glibc_only = pytest.mark.skipif(allocator._glibc() is None, reason="needs glibc's mallopt")

# In a fresh process, after `setup`: malloc, touch and free `buffers` 16 MB buffers 20 times,
# as a backend's training step does with its tensors, counting the minor page faults.
# (Through libc: numpy asks for huge pages.)
_COUNT_FAULTS = """
import ctypes, json, resource
from keras_aerec import allocator
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
size = 16 * 1024 * 1024
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    buffers = [libc.malloc(size) for _ in range(BUFFERS)]
    for buffer in buffers:
        ctypes.memset(buffer, 1, size)
    for buffer in buffers:
        libc.free(buffer)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": allocator.is_kept(), "faults": faults}))
"""


def _count_faults(setup, buffers, env):
    code = setup + _COUNT_FAULTS.replace("BUFFERS", str(buffers))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _faults(mode):
    # Only keras_aerec imported (its allocator setting, no backend); four buffers at once:
    # glibc's default returns the 64 MB at the top of its heap each time (its trim
    # threshold follows the largest block freed: 2 x 16 MB).
    env = {**os.environ, "KERAS_AEREC_DEFER_IMPORTS": "1"}
    env.pop(allocator.ENVIRONMENT_VARIABLE, None)
    if mode is not None:
        env[allocator.ENVIRONMENT_VARIABLE] = mode
    return _count_faults("import keras_aerec\n", 4, env)


@glibc_only
def test_import_keeps_freed_memory_and_steps_stop_faulting():
    kept, _ = _faults(None)
    system, _ = _faults("system")
    assert kept["kept"] is True and system["kept"] is False
    # 64 MB is ~16,000 pages: the system faults them in every time; kept, the first time only.
    assert system["faults"] > 10 * 16_000
    assert kept["faults"] < 2 * 16_000


# TensorFlow's first `from_generator` kernel (built by Keras for a PyDataset such as
# RowBatches) lowers glibc's mmap threshold to 128 KiB; `fit` must set ours again, or every
# 16 MB buffer is mapped and faulted in afresh (4,096 faults each).
_TF_FIT = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import scipy.sparse as sp, keras
from keras_aerec.data.batching import RowBatches
from keras_aerec.models.mult_dae import MultDAE
x = sp.random(64, 30, density=0.2, format="csr", dtype="float32", random_state=0)
model = MultDAE(num_items=30, hidden_dims=(8,), seed=0)
model.compile(optimizer="adam")
"""


@glibc_only
def test_memory_stays_kept_after_tensorflow_builds_a_generator_dataset():
    pytest.importorskip("tensorflow")

    def faults(fit):
        env = {**os.environ}
        env.pop(allocator.ENVIRONMENT_VARIABLE, None)
        return _count_faults(_TF_FIT + fit + "\n", 1, env)[0]

    kept = faults("model.fit(x, batch_size=16, epochs=1, verbose=0)")
    assert kept["kept"] is True
    assert kept["faults"] < 2 * 4_096  # the buffer is faulted in once, then reused
    # Keras' own fit on the same batches does not set the options again: TensorFlow's
    # threshold maps the buffer afresh each time. (If this fails, TensorFlow no longer
    # patches malloc and `KeepFreedMemory` has become unnecessary.)
    keras_fit = "keras.Model.fit(model, RowBatches(x, batch_size=16, seed=0), verbose=0)"
    assert faults(keras_fit)["faults"] > 10 * 4_096


@glibc_only
def test_unknown_mode_warns_and_leaves_the_allocator():
    result, stderr = _faults("fast")
    assert result["kept"] is False
    assert "`KERAS_AEREC_MALLOC` should be one of ('keep', 'system')" in stderr
    assert "KERAS_AEREC_MALLOC='fast'" in stderr


@pytest.mark.parametrize("value", [-1, 2**31, 1.5, True, "256"])
def test_trim_threshold_is_checked(value):
    with pytest.raises(ValueError, match="`trim_threshold` should be"):
        allocator.keep_freed_memory(trim_threshold=value)


def test_without_glibc_nothing_is_applied(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    monkeypatch.setattr(allocator, "_applied", {})
    assert allocator.keep_freed_memory() is False
    assert allocator.is_kept() is False
