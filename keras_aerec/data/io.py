"""Reading ratings files (MovieLens-style delimited text) into `Interactions`."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from keras_aerec.data.interactions import ConflictingRatingsError, Interactions, _plain

logger = logging.getLogger("keras_aerec.data")

DEFAULT_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
# Single characters tried, in order, as the stand-in for a multi-character separator.
_STAND_IN_SEPARATORS = ("\t", "\x1f", "\x1e", "|", ";", ",")


_MAX_RATING = float(np.finfo(np.float32).max)
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def read_ratings(
    path: str | os.PathLike,
    sep: str = "::",
    columns: Sequence[str] = DEFAULT_COLUMNS,
    header: int | str | None = None,
    encoding: str = "utf-8",
    implicit: bool = False,
    id_dtype: type = int,
    name: str | None = None,
) -> Interactions:
    """Reads a delimited ratings file (one interaction per line) into `Interactions`.

    Parsing is vectorised (pandas C engine; a multi-character separator such as `"::"`
    is first replaced by a single character). Only when the fast path finds a problem is
    the file scanned line by line, to report the first offending line.

    Args:
        path: path of the ratings file.
        sep: literal field separator of any length (`"::"`, `"\\t"`, `","`, ...).
        columns: one name per field. Must contain `"user_id"` and `"item_id"`;
            `"rating"` and `"timestamp"` are used when present (no rating means
            implicit 1.0), any other name is read and ignored.
        header: None when the file has no header line; `"infer"` or an int `n` when
            line `n` (0-based) is a header (its names are replaced by `columns`).
        encoding: text encoding of the file.
        implicit: if True, every interaction becomes 1.0.
        id_dtype: `int` (ids must be integers) or `str` (ids kept as strings).
        name: optional dataset name stored on the result.

    Returns:
        An `Interactions` object (ids mapped in sorted order of the original ids).

    Raises:
        ValueError: naming the file, the 1-based line number and what was expected,
            for a wrong number of fields, a non-numeric / NaN / zero rating, a
            non-integer id or timestamp, conflicting duplicate ratings or an empty file.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ratings.dat"
    >>> _ = path.write_text("1::10::4::978300760\\n2::10::3::978300761\\n")
    >>> read_ratings(path).num_interactions
    2
    """
    path = os.fspath(path)
    columns = tuple(columns)
    _check_arguments(sep, columns, header, id_dtype)
    header_row = None if header is None else (0 if header == "infer" else int(header))

    with open(path, "rb") as file:
        raw = file.read()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ValueError(
            f"Ratings file {path!r}, line {line}: cannot be decoded as {encoding!r} "
            "(pass `encoding=`, e.g. encoding='ISO-8859-1')."
        ) from None
    del raw
    if not text.strip():
        raise ValueError(
            f"Ratings file {path!r} is empty: expected lines of {_layout(sep, columns)}."
        )

    frame = _parse_fast(text, path, sep, columns, header_row, id_dtype)
    if frame is None or len(frame) == 0:
        _scan_for_error(text, path, sep, columns, header_row, id_dtype)
        if next(_data_lines(text, header_row), None) is None:
            raise ValueError(
                f"Ratings file {path!r} has no data lines: expected lines of "
                f"{_layout(sep, columns)}."
            )
        raise ValueError(f"Ratings file {path!r} could not be parsed as {_layout(sep, columns)}.")

    try:
        return Interactions.from_dataframe(
            frame,
            rating_col="rating" if "rating" in columns else None,
            timestamp_col="timestamp" if "timestamp" in columns else None,
            implicit=implicit,
            name=name,
        )
    except ConflictingRatingsError as error:
        first, second = (_line_of_row(text, row, header_row) for row in error.rows)
        fields = frame.iloc[list(error.rows)]
        raise ValueError(
            f"Ratings file {path!r}, line {second}: user_id={_plain(fields['user_id'].iloc[1])!r}, "
            f"item_id={_plain(fields['item_id'].iloc[1])!r} is rated {fields['rating'].iloc[1]:g} "
            f"but line {first} rates the same pair {fields['rating'].iloc[0]:g}; expected "
            "one rating per user-item pair."
        ) from None


def _check_arguments(sep, columns, header, id_dtype) -> None:
    if not isinstance(sep, str) or not sep or sep.strip("\r\n") != sep:
        raise ValueError(
            f"`sep` should be a non-empty string without newlines. Received: sep={sep!r}"
        )
    if len(set(columns)) != len(columns) or not {"user_id", "item_id"} <= set(columns):
        raise ValueError(
            "`columns` should be distinct names including 'user_id' and 'item_id'. "
            f"Received: columns={columns}"
        )
    if not (header is None or header == "infer" or (isinstance(header, int) and header >= 0)):
        raise ValueError(
            f"`header` should be None, 'infer' or a non-negative int. Received: header={header!r}"
        )
    if id_dtype not in (int, str):
        raise ValueError(f"`id_dtype` should be int or str. Received: id_dtype={id_dtype!r}")


def _layout(sep: str, columns: Sequence[str]) -> str:
    return f"{len(columns)} fields {sep.join(columns)!r} separated by {sep!r}"


def _parse_fast(text, path, sep, columns, header_row, id_dtype) -> pd.DataFrame | None:
    """Vectorised parse; None when the input is malformed (then the slow scan reports it)."""
    if len(sep) > 1:
        stand_in = next((c for c in _STAND_IN_SEPARATORS if c not in text), None)
        if stand_in is None:  # pragma: no cover - every candidate occurs in the text
            return None
        text = text.replace(sep, stand_in)
        sep = stand_in
    # The first line sets pandas' field count (it would drop extra fields silently).
    first_line = _first_data_line(text, header_row)
    if first_line and _count_fields(first_line, sep) != len(columns):
        return None
    id_type = np.int64 if id_dtype is int else str
    dtypes = {"user_id": id_type, "item_id": id_type}
    if "timestamp" in columns:
        dtypes["timestamp"] = np.int64
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=header_row,
            names=list(columns),
            index_col=False,
            dtype=dtypes,
            quoting=csv.QUOTE_NONE,
            engine="c",
            na_filter="rating" in columns,
        )
    except (ValueError, OverflowError, pd.errors.ParserError) as error:
        logger.debug("Fast parse of %s failed (%s); scanning line by line.", path, error)
        return None
    if "rating" in columns:
        rating = frame["rating"]
        if not pd.api.types.is_numeric_dtype(rating):
            return None
        values = rating.to_numpy(np.float64)
        if not np.all(np.abs(values) <= _MAX_RATING) or np.any(values == 0):
            return None
    if id_dtype is str:
        for column in ("user_id", "item_id"):
            if frame[column].isna().any() or (frame[column].str.len() == 0).any():
                return None
    # Fewer fields than names leave NaN (or fail the int dtypes); more raise ParserError.
    return frame


def _count_fields(line: str, sep: str) -> int:
    return line.count(sep) + 1


def _data_lines(text: str, header_row: int | None):
    """Yields (1-based line number, line) of the data lines, skipping blanks and the header."""
    skip = -1 if header_row is None else header_row
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if seen <= skip:
            seen += 1
            continue
        yield number, line


def _first_data_line(text: str, header_row: int | None) -> str:
    return next(_data_lines(text, header_row), (0, ""))[1]


def _line_of_row(text: str, row: int, header_row: int | None) -> int:
    """1-based line number of the `row`-th data line."""
    for index, (number, _) in enumerate(_data_lines(text, header_row)):
        if index == row:
            return number
    return -1  # pragma: no cover - rows come from the parsed text


def _scan_for_error(text, path, sep, columns, header_row, id_dtype) -> None:
    """Finds the first malformed line and raises a ValueError describing it."""
    for number, line in _data_lines(text, header_row):
        fields = line.split(sep)
        where = f"Ratings file {path!r}, line {number}"
        if len(fields) != len(columns):
            raise ValueError(
                f"{where}: expected {_layout(sep, columns)}, found {len(fields)} fields. "
                f"Received: {line!r}"
            )
        for column, value in zip(columns, fields, strict=True):
            value = value.strip()
            if column in ("user_id", "item_id"):
                if id_dtype is str:
                    ok = bool(value)
                    expected = "a non-empty id"
                else:
                    ok = _is_int(value)
                    expected = "an integer id within int64 (pass id_dtype=str for other ids)"
            elif column == "timestamp":
                ok, expected = _is_int(value), "an integer timestamp within int64"
            elif column == "rating":
                ok, expected = _is_rating(value), "a non-zero number within float32 range"
            else:
                continue
            if not ok:
                raise ValueError(
                    f"{where}: field {column!r} should be {expected}. Received: {value!r}"
                )


def _is_int(value: str) -> bool:
    """An integer that fits int64 (ids and timestamps are stored as int64)."""
    try:
        number = int(value)
    except ValueError:
        return False
    return _INT64_MIN <= number <= _INT64_MAX


def _is_rating(value: str) -> bool:
    """A non-zero number that float32 (the matrix's dtype) holds without overflow."""
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and abs(number) <= _MAX_RATING and number != 0


def file_digest(path: str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (`hashlib.file_digest` is 3.11+)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
