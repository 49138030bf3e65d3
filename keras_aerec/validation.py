"""Argument validators shared by every layer of the package (data, models, evaluation).

Each returns the value in canonical form or raises a one-line, Keras-style `ValueError`
naming the argument and what was received, so a new model or protocol gets the same
checks and wording by importing them. This module imports nothing from the package.
"""

import math
import numbers

import numpy as np


def check_positive_int(value, name: str) -> int:
    """`value` as an int >= 1, or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` should be a positive integer. Received: {name}={value!r}")
    return int(value)


def check_non_negative_int(value, name: str) -> int:
    """`value` as an int >= 0, or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"`{name}` should be a non-negative integer. Received: {name}={value!r}")
    return int(value)


def check_non_negative_float(value, name: str) -> float:
    """`value` as a finite float >= 0 (NaN and inf are refused), or a ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"`{name}` should be a finite non-negative number. Received: {name}={value!r}"
        )
    return float(value)


def check_finite_float(value, name: str) -> float:
    """`value` as a finite float, or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"`{name}` should be a finite number. Received: {name}={value!r}")
    return float(value)


def check_rate(value, name: str) -> float:
    """`value` as a float in [0, 1), or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"`{name}` should be a float in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_l2(l2) -> float:
    """`l2` as a finite non-negative float, or a ValueError."""
    return check_non_negative_float(l2, "l2")


def check_hidden_dims(hidden_dims) -> tuple[int, ...]:
    """`hidden_dims` as a tuple of positive ints (may be empty)."""
    try:
        dims = tuple(hidden_dims)
    except TypeError:
        dims = None
    if dims is None or any(
        isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1 for d in dims
    ):
        raise ValueError(
            "`hidden_dims` should be a sequence of positive integers. "
            f"Received: hidden_dims={hidden_dims!r}"
        )
    return tuple(int(d) for d in dims)


def check_seed(seed, name: str = "seed") -> int | None:
    """`seed` as an int or None, or a ValueError."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"`{name}` should be an integer or None. Received: {name}={seed!r}")
    return int(seed)


def check_item_ids(item_ids, num_items: int) -> np.ndarray:
    """Original item ids as a 1D numpy array of length `num_items` (default: positions)."""
    if item_ids is None:
        return np.arange(num_items)
    item_ids = np.asarray(item_ids)
    if item_ids.ndim != 1 or item_ids.shape[0] != num_items:
        raise ValueError(
            f"`item_ids` should be a 1D sequence of {num_items} ids (one per item). "
            f"Received: item_ids with shape {item_ids.shape}"
        )
    return item_ids


def item_ids_config(item_ids: np.ndarray, num_items: int):
    """`item_ids` for `get_config()`: None when they are the default positions."""
    if np.issubdtype(item_ids.dtype, np.integer) and np.array_equal(item_ids, np.arange(num_items)):
        return None
    return item_ids.tolist()
