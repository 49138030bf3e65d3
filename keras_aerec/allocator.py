"""Keeping freed memory in the process, so that each training step stops re-faulting it.

Every training step allocates and frees the same buffers: a batch's activations, the
gradients, the optimizer's temporaries. glibc's `malloc` gives each worker thread its own
arena, whose heaps are unmapped as soon as they empty, and returns the top of a heap to the
system once it exceeds a threshold that follows the largest block freed so far; the next
step then touches fresh pages, one page fault (and the kernel zeroing 4 KB) at a time. On
the ML-1M article split, training epochs are up to 1.4x faster when the memory is kept
(TensorFlow and torch, BENCHMARKS.md, "Memory allocator"). PyTorch's and TensorFlow's
performance guides recommend preloading jemalloc or tcmalloc for the same reason;
`keep_freed_memory` gets most of the effect from glibc itself:

- one malloc arena for every thread (`M_ARENA_MAX=1`), so no thread's heap is unmapped;
- free memory at the top of the heap is returned to the system only beyond
  `trim_threshold` bytes (`M_TRIM_THRESHOLD`, 256 MiB by default);
- blocks of 32 MiB or more still get their own `mmap` (`M_MMAP_THRESHOLD`, fixed at glibc's
  usual maximum), returned at `free`: kept in the heap too, they fragment it, and peak memory
  on a 17,000-item catalogue rose from 1.2-1.4 GB to 1.7-1.9 GB (measured; they are few per
  step, so their faults cost little).

`import keras_aerec` calls it before the backend is imported, so it covers the backend's
threads (a thread keeps the arena it first allocated from: called after the backend has
run, it only covers threads started later). Set `KERAS_AEREC_MALLOC=system` before the
import to leave the allocator as it is. It does nothing where the C library is not glibc
(macOS, Windows, musl).

Cost: up to `trim_threshold` bytes of freed memory stay with the process after a peak, and
all threads share one arena lock (measured on 2 cores only; on many-core machines with
allocation-heavy threads, `KERAS_AEREC_MALLOC=system` is the conservative choice).
"""

import ctypes
import logging
import os
import platform
import warnings

logger = logging.getLogger("keras_aerec")

ENVIRONMENT_VARIABLE = "KERAS_AEREC_MALLOC"
MODES = ("keep", "system")
DEFAULT_TRIM_THRESHOLD = 256 * 1024 * 1024
MMAP_THRESHOLD = 32 * 1024 * 1024

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_applied = {}


def configured_mode() -> str:
    """`KERAS_AEREC_MALLOC` ("keep" when unset); an unknown value warns and reads "system"."""
    mode = os.environ.get(ENVIRONMENT_VARIABLE, "keep").strip().lower() or "keep"
    if mode not in MODES:
        warnings.warn(
            f"`{ENVIRONMENT_VARIABLE}` should be one of {MODES}. Received: "
            f"{ENVIRONMENT_VARIABLE}={os.environ[ENVIRONMENT_VARIABLE]!r}; leaving the memory "
            "allocator as it is.",
            stacklevel=2,
        )
        return "system"
    return mode


def keep_freed_memory(trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Tells glibc's malloc to keep freed memory for reuse (see the module docstring).

    Args:
        trim_threshold: free bytes at the top of the heap kept before any is returned to
            the system.

    Returns:
        Whether the settings are in effect (False off glibc, or if glibc refused one).
    """
    if isinstance(trim_threshold, bool) or not isinstance(trim_threshold, int):
        raise ValueError(
            f"`trim_threshold` should be a non-negative integer. Received: "
            f"trim_threshold={trim_threshold!r}"
        )
    if not 0 <= trim_threshold < 2**31:
        raise ValueError(
            f"`trim_threshold` should be in [0, 2**31). Received: trim_threshold={trim_threshold}"
        )
    if trim_threshold in _applied:
        return _applied[trim_threshold]
    applied = _set_options(trim_threshold)
    logger.debug("keep_freed_memory(trim_threshold=%d): %s", trim_threshold, applied)
    _applied.clear()
    _applied[trim_threshold] = applied
    return applied


def reassert() -> bool:
    """Sets `keep_freed_memory`'s options again where they are in effect, and says whether.

    Another library may have changed them since. TensorFlow does (2.21 measured): the first
    `tf.data.Dataset.from_generator` kernel of a process, which Keras builds for every
    `PyDataset` it trains on (`RowBatches` included), sets `M_MMAP_THRESHOLD` to 128 KiB,
    and from then on every tensor of 128 KiB or more gets its own `mmap`, is unmapped when
    freed and faulted in again by the next step: Mult-VAE epochs on ML-1M were 2.0-2.5 s
    instead of 0.9-1.0 s (BENCHMARKS.md, "TensorFlow's generator memory patch").
    `MatrixInputs.fit` / `evaluate` / `predict` call this after their first batch.
    """
    for trim_threshold, applied in _applied.items():
        if applied:
            return _set_options(trim_threshold)
    return False


def _set_options(trim_threshold: int) -> bool:
    libc = _glibc()
    return libc is not None and all(
        libc.mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_ARENA_MAX, 1),
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, trim_threshold),
        )
    )


def is_kept() -> bool:
    """Whether `keep_freed_memory` is in effect in this process."""
    return any(_applied.values())


def _glibc():
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"; unset off glibc
    except (AttributeError, ValueError, OSError):
        return None
    if platform.system() != "Linux" or not (version or "").startswith("glibc"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc


def apply_configured() -> bool:
    """`keep_freed_memory()` unless `KERAS_AEREC_MALLOC=system` (run by `import keras_aerec`)."""
    return configured_mode() == "keep" and keep_freed_memory()
