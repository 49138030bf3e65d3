"""`Interactions`: a users x items CSR matrix with id maps, timestamps and item metadata."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger("keras_aerec.data")


class Interactions:
    """User-item interactions: ratings (or 1.0 for implicit feedback) in a CSR matrix.

    Rows are users and columns are items, both 0-based positions; the original ids live in
    `user_ids` / `item_ids` (position -> original id). The matrix is kept canonical: sorted
    column indices, no duplicate entries and no explicit zeros. A matrix that is not
    canonical is sorted (timestamps follow) and its explicit zeros are dropped; duplicate
    entries raise a `ValueError`.

    Args:
        matrix: users x items scipy sparse matrix (converted to CSR float32).
        user_ids: original user ids, one per row.
        item_ids: original item ids, one per column.
        timestamps: optional integer array aligned with `matrix.data` (same order).
        items: optional pandas DataFrame of item metadata (`title`, `genres`, ...)
            indexed by original item id. It is aligned to `item_ids` (rows of unknown
            items become NaN, metadata of items not in `item_ids` is dropped).
        name: optional dataset name, e.g. `"ml-1m"`.

    Example:

    >>> import scipy.sparse as sp
    >>> x = Interactions(sp.csr_matrix([[5.0, 0.0], [0.0, 3.0]]), [10, 20], [7, 8])
    >>> x.num_users, x.num_items, x.num_interactions
    (2, 2, 2)
    """

    def __init__(
        self,
        matrix: sp.spmatrix | sp.sparray,
        user_ids: Sequence | np.ndarray,
        item_ids: Sequence | np.ndarray,
        timestamps: Sequence | np.ndarray | None = None,
        items: pd.DataFrame | None = None,
        name: str | None = None,
    ):
        if not sp.issparse(matrix):
            raise ValueError(
                "`matrix` should be a scipy sparse matrix (users x items). "
                f"Received: type={type(matrix).__name__}"
            )
        if matrix.ndim != 2:
            raise ValueError(f"`matrix` should be 2-D. Received: shape={matrix.shape}")
        if timestamps is not None and matrix.format != "csr":
            raise ValueError(
                "`matrix` should be in CSR format when `timestamps` are given (they are "
                f"aligned with `matrix.data`). Received: format={matrix.format!r}"
            )
        csr = sp.csr_matrix(matrix, dtype=np.float32)
        num_users, num_items = csr.shape
        user_ids = np.asarray(user_ids)
        item_ids = np.asarray(item_ids)
        if user_ids.shape != (num_users,):
            raise ValueError(
                f"`user_ids` should have one entry per row of `matrix` ({num_users}). "
                f"Received: shape={user_ids.shape}"
            )
        if item_ids.shape != (num_items,):
            raise ValueError(
                f"`item_ids` should have one entry per column of `matrix` ({num_items}). "
                f"Received: shape={item_ids.shape}"
            )
        if len(np.unique(user_ids)) != num_users:
            raise ValueError("`user_ids` should be unique. Received duplicate ids.")
        if len(np.unique(item_ids)) != num_items:
            raise ValueError("`item_ids` should be unique. Received duplicate ids.")
        if timestamps is not None:
            timestamps = np.asarray(timestamps)
            if timestamps.shape != (csr.nnz,):
                raise ValueError(
                    "`timestamps` should have one entry per interaction "
                    f"({csr.nnz}). Received: shape={timestamps.shape}"
                )
            timestamps = _as_int64(timestamps, "timestamps")
        if not np.all(np.isfinite(csr.data)):
            raise ValueError("`matrix` should contain finite values. Received NaN or inf.")
        if items is not None and not isinstance(items, pd.DataFrame):
            raise ValueError(
                "`items` should be a pandas DataFrame indexed by item id. "
                f"Received: type={type(items).__name__}"
            )

        self.matrix, self.timestamps = _canonicalize(csr, timestamps)
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.items = None if items is None else items.reindex(pd.Index(item_ids))
        self.name = name

    # ------------------------------------------------------------------ properties

    @property
    def num_users(self) -> int:
        """Number of users (rows)."""
        return self.matrix.shape[0]

    @property
    def num_items(self) -> int:
        """Number of items (columns)."""
        return self.matrix.shape[1]

    @property
    def num_interactions(self) -> int:
        """Number of stored interactions (non-zero entries)."""
        return self.matrix.nnz

    def __len__(self) -> int:
        return self.num_interactions

    def __repr__(self) -> str:
        # Sizes only: printing an object must never dump its id arrays.
        kind = "interactions" if self.is_implicit else "ratings"
        return (
            f"Interactions: {self.num_users:,} users x {self.num_items:,} items, "
            f"{self.num_interactions:,} {kind}"
        )

    @property
    def is_implicit(self) -> bool:
        """Whether every stored value is 1.0 (implicit feedback, or ratings thresholded)."""
        return bool(np.all(self.matrix.data == 1.0))

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str | None = "rating",
        timestamp_col: str | None = "timestamp",
        implicit: bool = False,
        items: pd.DataFrame | None = None,
        name: str | None = None,
    ) -> Interactions:
        """Builds `Interactions` from a long-format DataFrame (one row per interaction).

        User and item positions follow the sorted order of the original ids. A pair
        listed twice with the same rating is kept once (with its first timestamp); a
        pair listed with different ratings raises a `ValueError`.

        Args:
            df: DataFrame with user, item and optionally rating / timestamp columns.
            user_col: name of the user id column.
            item_col: name of the item id column.
            rating_col: name of the rating column. None or a missing column means
                implicit feedback (every interaction is 1.0).
            timestamp_col: name of the timestamp column; None or missing means no
                timestamps. Datetime columns are converted to Unix seconds.
            implicit: if True, ratings are replaced by 1.0.
            items: optional item metadata DataFrame indexed by original item id.
            name: optional dataset name.

        Returns:
            An `Interactions` object.

        Example:

        >>> df = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 6, 5],
        ...                    "rating": [4.0, 2.0, 5.0]})
        >>> Interactions.from_dataframe(df).num_interactions
        3
        """
        if not isinstance(df, pd.DataFrame):
            raise ValueError(
                f"`df` should be a pandas DataFrame. Received: type={type(df).__name__}"
            )
        for argument, column in (("user_col", user_col), ("item_col", item_col)):
            if column not in df.columns:
                raise ValueError(
                    f"`{argument}` should name a column of `df` {list(df.columns)}. "
                    f"Received: {argument}={column!r}"
                )
        user_ids, rows = np.unique(df[user_col].to_numpy(), return_inverse=True)
        item_ids, cols = np.unique(df[item_col].to_numpy(), return_inverse=True)
        rows = rows.reshape(-1).astype(np.int64)
        cols = cols.reshape(-1).astype(np.int64)

        if implicit or rating_col is None or rating_col not in df.columns:
            ratings = np.ones(len(df), dtype=np.float32)
        else:
            ratings = pd.to_numeric(df[rating_col], errors="coerce").to_numpy(np.float64)
            # float32 (the matrix's dtype) turns anything beyond its range into inf.
            bad = np.flatnonzero(~(np.abs(ratings) <= np.finfo(np.float32).max))
            if len(bad):
                raise ValueError(
                    f"`df[{rating_col!r}]` should hold finite numbers within float32 range. "
                    "Received: "
                    f"{_plain(df[rating_col].iloc[bad[0]])!r} at row {bad[0]} "
                    f"(user_id={_plain(user_ids[rows[bad[0]]])!r}, "
                    f"item_id={_plain(item_ids[cols[bad[0]]])!r})"
                )
            bad = np.flatnonzero(ratings == 0)
            if len(bad):
                raise ValueError(
                    f"`df[{rating_col!r}]` should not contain 0 (a sparse matrix cannot "
                    "store it; shift the scale or pass implicit=True). Received: 0 at row "
                    f"{bad[0]}"
                )
        timestamps = None
        if timestamp_col is not None and timestamp_col in df.columns:
            column = df[timestamp_col]
            if pd.api.types.is_datetime64_any_dtype(column):
                column = column.astype("datetime64[s]").astype(np.int64)
            timestamps = _as_int64(column.to_numpy(), f"df[{timestamp_col!r}]")

        num_items = len(item_ids)
        keys = rows * num_items + cols
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        duplicate = np.flatnonzero(keys[1:] == keys[:-1]) + 1
        if len(duplicate):
            first, second = order[duplicate - 1], order[duplicate]
            conflict = np.flatnonzero(ratings[first] != ratings[second])
            if len(conflict):
                a, b = int(first[conflict[0]]), int(second[conflict[0]])
                raise ConflictingRatingsError(
                    (a, b),
                    "`df` should not rate the same user-item pair differently. Received: "
                    f"user_id={_plain(user_ids[rows[a]])!r}, item_id={_plain(item_ids[cols[a]])!r} rated "
                    f"{ratings[a]:g} (row {a}) and {ratings[b]:g} (row {b})",
                )
            logger.info(
                "Dropped %d duplicate user-item rows with identical ratings.", len(duplicate)
            )
            keep = np.ones(len(order), dtype=bool)
            keep[duplicate] = False
            order = order[keep]
        matrix = _csr_from_sorted(
            rows[order], cols[order], ratings[order], (len(user_ids), num_items)
        )
        return cls(
            matrix,
            user_ids,
            item_ids,
            timestamps=None if timestamps is None else timestamps[order],
            items=items,
            name=name,
        )

    @classmethod
    def from_csv(
        cls,
        path,
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str | None = "rating",
        timestamp_col: str | None = "timestamp",
        sep: str = ",",
        id_dtype: type = int,
        implicit: bool = False,
        encoding: str = "utf-8",
        name: str | None = None,
    ) -> Interactions:
        """Reads a delimited file with a header line (one interaction per line).

        The named columns are found in the header; other columns are ignored. The
        `"rating"` and `"timestamp"` defaults are used when the header has them (no
        rating column: implicit feedback, 1.0 each). Errors name the file and line (see
        `keras_aerec.data.read_ratings`, which reads headerless files).

        Args:
            path: path of the file.
            user_col: header name of the user id column.
            item_col: header name of the item id column.
            rating_col: header name of the rating column, or None for implicit data.
            timestamp_col: header name of the timestamp column (integers), or None.
            sep: field separator.
            id_dtype: `int` (ids must be integers) or `str` (any text id).
            implicit: if True, every interaction becomes 1.0.
            encoding: text encoding of the file.
            name: optional dataset name.

        Returns:
            An `Interactions` object.

        Example:

        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "plays.csv"
        >>> _ = path.write_text("user,track,plays\\nann,t1,3\\nbob,t1,1\\n")
        >>> Interactions.from_csv(path, user_col="user", item_col="track", rating_col=None,
        ...                       id_dtype=str).num_users
        2
        """
        from keras_aerec.data.io import read_ratings  # io builds on this module

        with open(path, encoding=encoding, errors="replace") as file:
            header = [field.strip() for field in file.readline().rstrip("\r\n").split(sep)]
        roles = {user_col: "user_id", item_col: "item_id"}
        for column, role in ((rating_col, "rating"), (timestamp_col, "timestamp")):
            # The defaults are optional; a name given explicitly must exist.
            if column is not None and (column in header or column != role):
                roles[column] = role
        for argument, column in (
            ("user_col", user_col),
            ("item_col", item_col),
            ("rating_col", rating_col),
            ("timestamp_col", timestamp_col),
        ):
            if column in roles and column not in header:
                raise ValueError(
                    f"`{argument}` should name a column of the header of {str(path)!r} "
                    f"{header}. Received: {argument}={column!r}"
                )
        columns = [roles.get(column, f"ignored_{i}") for i, column in enumerate(header)]
        return read_ratings(
            path,
            sep=sep,
            columns=columns,
            header=0,
            encoding=encoding,
            implicit=implicit,
            id_dtype=id_dtype,
            name=name,
        )

    @classmethod
    def from_csr(
        cls,
        matrix,
        user_ids: Sequence | np.ndarray | None = None,
        item_ids: Sequence | np.ndarray | None = None,
        timestamps: Sequence | np.ndarray | None = None,
        items: pd.DataFrame | None = None,
        name: str | None = None,
    ) -> Interactions:
        """Builds `Interactions` from a users x items matrix (sparse or dense).

        Args:
            matrix: scipy sparse matrix or dense array-like; zeros are "no interaction".
            user_ids: original user ids; defaults to `0..num_users-1`.
            item_ids: original item ids; defaults to `0..num_items-1`.
            timestamps: optional integers aligned with `matrix.data` (CSR input only).
            items: optional item metadata DataFrame indexed by original item id.
            name: optional dataset name.

        Returns:
            An `Interactions` object.

        Example:

        >>> Interactions.from_csr([[1, 0, 1], [0, 1, 0]]).num_interactions
        3
        """
        if not sp.issparse(matrix):
            dense = np.asarray(matrix, dtype=np.float32)
            if dense.ndim != 2:
                raise ValueError(f"`matrix` should be 2-D. Received: shape={dense.shape}")
            matrix = sp.csr_matrix(dense)
        num_users, num_items = matrix.shape
        return cls(
            matrix,
            np.arange(num_users) if user_ids is None else user_ids,
            np.arange(num_items) if item_ids is None else item_ids,
            timestamps=timestamps,
            items=items,
            name=name,
        )

    # --------------------------------------------------------------- transforms

    def to_implicit(self, threshold: float = 3.0) -> Interactions:
        """Keeps ratings strictly above `threshold` as 1.0 (the full id space is kept).

        Args:
            threshold: ratings `> threshold` become positives; the rest are dropped.

        Returns:
            A new `Interactions` with the same users and items.

        Example:

        >>> x = Interactions.from_csr([[5, 2], [4, 3]])
        >>> x.to_implicit(3.0).num_interactions
        2
        """
        keep = self.matrix.data > threshold
        return self._masked(keep, np.ones(int(keep.sum()), dtype=np.float32))

    def filter_min_interactions(self, users: int = 0, items: int = 0) -> Interactions:
        """Drops users with fewer than `users` and items with fewer than `items` interactions.

        One pass: both counts are taken on this object, so a kept user may fall below
        `users` once rare items are removed (use `k_core` for the fixed point).

        Args:
            users: minimum number of interactions per kept user.
            items: minimum number of interactions per kept item.

        Returns:
            A new, re-indexed `Interactions` (timestamps and metadata follow).

        Example:

        >>> x = Interactions.from_csr([[1, 1, 0], [1, 0, 0]])
        >>> x.filter_min_interactions(users=2).num_users
        1
        """
        for argument, value in (("users", users), ("items", items)):
            if not _is_non_negative_int(value):
                raise ValueError(
                    f"`{argument}` should be a non-negative integer. Received: {argument}={value!r}"
                )
        keep_users = np.diff(self.matrix.indptr) >= users
        keep_items = np.bincount(self.matrix.indices, minlength=self.num_items) >= items
        return self._submatrix(keep_users, keep_items)

    def k_core(self, k: int) -> Interactions:
        """Iteratively filters until every user and item has at least `k` interactions.

        Args:
            k: minimum number of interactions per user and per item.

        Returns:
            A new, re-indexed `Interactions` (possibly empty).

        Example:

        >>> x = Interactions.from_csr([[1, 1, 0], [1, 1, 1], [0, 0, 1]])
        >>> x.k_core(2).num_interactions
        4
        """
        if not _is_non_negative_int(k):
            raise ValueError(f"`k` should be a non-negative integer. Received: k={k!r}")
        result = self
        while True:
            filtered = result.filter_min_interactions(users=k, items=k)
            if filtered.matrix.shape == result.matrix.shape:
                return filtered
            result = filtered

    def select_users(self, rows: Sequence[int] | np.ndarray) -> Interactions:
        """Returns the given rows (positions or boolean mask), keeping the item space.

        Args:
            rows: user positions (in the given order, no repeats) or a boolean mask.

        Returns:
            A new `Interactions` over the selected users and all items.

        Example:

        >>> x = Interactions.from_csr([[1, 0], [0, 1], [1, 1]], user_ids=[7, 8, 9])
        >>> x.select_users([2, 0]).user_ids.tolist()
        [9, 7]
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (self.num_users,):
                raise ValueError(
                    f"`rows` as a mask should have one entry per user ({self.num_users}). "
                    f"Received: shape={rows.shape}"
                )
            rows = np.flatnonzero(rows)
        rows = rows.reshape(-1)
        if len(rows) and (
            not np.issubdtype(rows.dtype, np.integer)
            or rows.min() < -self.num_users
            or rows.max() >= self.num_users
        ):
            raise ValueError(
                f"`rows` should be user positions in [0, {self.num_users}). "
                f"Received: dtype={rows.dtype}, range=({rows.min()}, {rows.max()})"
            )
        rows = rows.astype(np.int64) % max(self.num_users, 1)
        if len(np.unique(rows)) != len(rows):
            raise ValueError("`rows` should not repeat a user. Received repeated positions.")
        indptr = self.matrix.indptr
        starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
        new_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        positions = np.repeat(starts - new_indptr[:-1], lengths) + np.arange(new_indptr[-1])
        matrix = sp.csr_matrix(
            (self.matrix.data[positions], self.matrix.indices[positions], new_indptr),
            shape=(len(rows), self.num_items),
        )
        return self._replace(
            matrix,
            user_ids=self.user_ids[rows],
            timestamps=None if self.timestamps is None else self.timestamps[positions],
        )

    # ------------------------------------------------------------------ exports

    def to_dataframe(self) -> pd.DataFrame:
        """Returns one row per interaction: `user_id`, `item_id`, `rating` (+ `timestamp`).

        Example:

        >>> Interactions.from_csr([[0, 4]], item_ids=[3, 9]).to_dataframe()["item_id"].tolist()
        [9]
        """
        rows = np.repeat(np.arange(self.num_users), np.diff(self.matrix.indptr))
        columns = {
            "user_id": self.user_ids[rows],
            "item_id": self.item_ids[self.matrix.indices],
            "rating": self.matrix.data.copy(),
        }
        if self.timestamps is not None:
            columns["timestamp"] = self.timestamps.copy()
        return pd.DataFrame(columns)

    def sequences(self) -> list[np.ndarray]:
        """Per-user item positions ordered by timestamp (ties by item position).

        Returns:
            A list with one int array per user (row order).

        Example:

        >>> x = Interactions.from_csr(sp.csr_matrix([[1.0, 1.0]]), timestamps=[20, 10])
        >>> [s.tolist() for s in x.sequences()]
        [[1, 0]]
        """
        if self.timestamps is None:
            raise ValueError(
                "`Interactions` has no timestamps; sequences need them (load a dataset "
                "with timestamps, e.g. load_movielens(..., require_timestamps=True))."
            )
        lengths = np.diff(self.matrix.indptr)
        rows = np.repeat(np.arange(self.num_users), lengths)
        order = np.lexsort((self.timestamps, rows))
        return np.split(self.matrix.indices[order].astype(np.int64), self.matrix.indptr[1:-1])

    # ------------------------------------------------------------------ helpers

    def _replace(self, matrix, user_ids=None, item_ids=None, timestamps=None) -> Interactions:
        return Interactions(
            matrix,
            self.user_ids if user_ids is None else user_ids,
            self.item_ids if item_ids is None else item_ids,
            timestamps=timestamps,
            items=self.items,
            name=self.name,
        )

    def _masked(self, keep: np.ndarray, data: np.ndarray) -> Interactions:
        """Keeps the interactions where `keep` is True, with new `data`; same id space."""
        rows = np.repeat(np.arange(self.num_users), np.diff(self.matrix.indptr))
        matrix = _csr_from_sorted(rows[keep], self.matrix.indices[keep], data, self.matrix.shape)
        timestamps = None if self.timestamps is None else self.timestamps[keep]
        return self._replace(matrix, timestamps=timestamps)

    def _submatrix(self, keep_users: np.ndarray, keep_items: np.ndarray) -> Interactions:
        """Keeps the masked users and items, re-indexed in their current order."""
        rows = np.repeat(np.arange(self.num_users), np.diff(self.matrix.indptr))
        cols = self.matrix.indices
        keep = keep_users[rows] & keep_items[cols]
        new_row = np.cumsum(keep_users) - 1
        new_col = np.cumsum(keep_items) - 1
        matrix = _csr_from_sorted(
            new_row[rows[keep]],
            new_col[cols[keep]],
            self.matrix.data[keep],
            (int(keep_users.sum()), int(keep_items.sum())),
        )
        return self._replace(
            matrix,
            user_ids=self.user_ids[keep_users],
            item_ids=self.item_ids[keep_items],
            timestamps=None if self.timestamps is None else self.timestamps[keep],
        )


class ConflictingRatingsError(ValueError):
    """A user-item pair rated twice with different ratings; `rows` are the two df rows."""

    def __init__(self, rows: tuple[int, int], message: str):
        super().__init__(message)
        self.rows = rows


def _plain(value):
    """numpy scalar -> Python scalar, so messages read `7`, not `np.int64(7)`."""
    return value.item() if isinstance(value, np.generic) else value


def _is_non_negative_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def _as_int64(values: np.ndarray, argument: str) -> np.ndarray:
    """Converts timestamps to int64, rejecting NaN and non-integral values."""
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    try:
        as_float = values.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{argument}` should hold integers (e.g. Unix seconds). Received: dtype={values.dtype}"
        ) from None
    if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
        raise ValueError(
            f"`{argument}` should hold integers (e.g. Unix seconds). "
            "Received NaN or non-integral values."
        )
    return as_float.astype(np.int64)


def _csr_from_sorted(rows, cols, data, shape) -> sp.csr_matrix:
    """CSR from COO triplets already sorted by (row, col) without duplicates."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    index_dtype = np.int32 if max(shape[1], len(cols)) < 2**31 else np.int64
    matrix = sp.csr_matrix(
        (
            np.asarray(data, dtype=np.float32),
            np.asarray(cols, dtype=index_dtype),
            indptr.astype(index_dtype),
        ),
        shape=shape,
    )
    matrix.has_sorted_indices = True
    return matrix


def _canonicalize(csr: sp.csr_matrix, timestamps):
    """Sorts indices and drops explicit zeros, carrying timestamps; rejects duplicates."""
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    cols = csr.indices
    # Fast path: column indices strictly increase within every row (sorted, no duplicates).
    new_row = np.diff(rows) != 0
    if np.all((np.diff(cols) > 0) | new_row):
        # Copies, so that the result never shares buffers with the caller's matrix.
        cols, data = cols.copy(), csr.data.copy()
    else:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        same = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])
        if same.any():
            at = int(np.flatnonzero(same)[0])
            raise ValueError(
                "`matrix` should not contain duplicate entries. Received: two entries at "
                f"(row={rows[at]}, column={cols[at]})"
            )
        data = csr.data[order]
        if timestamps is not None:
            timestamps = timestamps[order]
    keep = data != 0
    if not keep.all():
        rows, cols, data = rows[keep], cols[keep], data[keep]
        if timestamps is not None:
            timestamps = timestamps[keep]
    return _csr_from_sorted(rows, cols, data, csr.shape), timestamps
