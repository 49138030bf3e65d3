"""Time-ordered item sequences for sequence models (SVAE): ordering, padding and batches.

Conventions shared with `keras_aerec.models.svae.SVAE`:

- A sequence is a 1D int array of item positions (0-based columns of the training item
  space), oldest first.
- Truncation keeps the most recent `max_len` items.
- Padded batches are int32 `(batch, length)` arrays holding `item + 1` and `0` for
  padding, sequences left-aligned (padding at the end). A causal (left-to-right) encoder
  never reads the padding at a real position, so the padding only has to be masked out
  of the loss.
- Next-k targets are int32 `(batch, length, next_k)` arrays in the same `item + 1`
  encoding: `targets[b, t, j]` is the item `j + 1` steps after position `t`, or `0` when
  the sequence ends before it. They are index targets, not multi-hot rows: a batch costs
  `batch x length x next_k` integers, never `batch x length x num_items`.
"""

import dataclasses
import math

import keras
import numpy as np
import scipy.sparse as sp

from keras_aerec.distribute import batch_multiple
from keras_aerec.validation import check_positive_int

_EMPTY = np.zeros(0, dtype="int64")


def time_ordered_sequences(timestamps) -> list[np.ndarray]:
    """Each row's item positions ordered by time (ties broken by item position).

    Args:
        timestamps: scipy sparse matrix (users x items) whose stored entries are the
            interactions and whose values are their timestamps (e.g.
            `RankingSplit.train_timestamps` or `HeldOutPart.fold_in_timestamps`). Any
            value that orders a row's items in time works (1..n ranks, dates as ints);
            stored zeros count as interactions.

    Returns:
        A list with one int64 array of column positions per row, oldest first.

    Example:

    >>> import scipy.sparse as sp
    >>> rows = sp.csr_matrix(np.array([[0, 30, 10], [5, 0, 0]]))
    >>> [s.tolist() for s in time_ordered_sequences(rows)]
    [[2, 1], [0]]
    """
    if not sp.issparse(timestamps) or timestamps.ndim != 2:
        raise ValueError(
            "`timestamps` should be a 2D scipy sparse matrix (users x items) with the "
            f"interaction timestamps as values. Received: {type(timestamps).__name__}"
        )
    matrix = sp.csr_matrix(timestamps)
    if not np.isfinite(matrix.data).all():
        raise ValueError("`timestamps` should not contain NaN or infinite values.")
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, matrix.data, rows))
    return np.split(matrix.indices[order].astype("int64"), matrix.indptr[1:-1])


def truncate_sequences(sequences, max_len: int) -> list[np.ndarray]:
    """The most recent `max_len` items of each sequence.

    Example:

    >>> [s.tolist() for s in truncate_sequences([[1, 2, 3, 4], [5]], max_len=2)]
    [[3, 4], [5]]
    """
    max_len = check_positive_int(max_len, "max_len")
    return [np.asarray(sequence)[-max_len:] for sequence in sequences]


def pad_sequences(sequences, max_len: int, length: int | None = None):
    """Truncated, left-aligned, zero-padded `item + 1` matrix of a batch of sequences.

    Args:
        sequences: list of 1D int arrays of item positions (>= 0), oldest first.
        max_len: longest sequence kept; longer ones keep their most recent `max_len`
            items.
        length: number of columns of the result (>= the longest truncated sequence);
            defaults to the longest truncated sequence of the batch.

    Returns:
        `(padded, lengths)`: int32 `(num_sequences, length)` with `item + 1` at the
        first `lengths[i]` positions of row `i` and `0` after, and the int64 lengths.

    Example:

    >>> padded, lengths = pad_sequences([[7, 8, 9], [4]], max_len=2, length=3)
    >>> padded.tolist(), lengths.tolist()
    ([[9, 10, 0], [5, 0, 0]], [2, 1])
    """
    max_len = check_positive_int(max_len, "max_len")
    # An empty list would be a float array and turn the concatenation into floats.
    sequences = [np.asarray(sequence) if len(sequence) else _EMPTY for sequence in sequences]
    lengths = np.array([min(len(sequence), max_len) for sequence in sequences], dtype="int64")
    longest = int(lengths.max()) if lengths.size else 0
    if length is None:
        length = max(longest, 1)
    elif isinstance(length, bool) or not isinstance(length, int | np.integer) or length < longest:
        raise ValueError(
            f"`length` should be an integer >= the longest truncated sequence ({longest}). "
            f"Received: length={length!r}"
        )
    padded = np.zeros((len(sequences), int(length)), dtype="int32")
    if longest:
        kept = [
            sequence[len(sequence) - n :] for sequence, n in zip(sequences, lengths, strict=True)
        ]
        values = np.concatenate(kept)
        if not np.issubdtype(values.dtype, np.integer) or values.min() < 0:
            raise ValueError(
                "`sequences` should hold non-negative integer item positions. "
                f"Received: values of dtype {values.dtype} with minimum {values.min()}"
            )
        rows = np.repeat(np.arange(len(sequences)), lengths)
        columns = np.arange(values.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        padded[rows, columns] = values + 1
    return padded, lengths


def next_k_targets(padded, next_k: int) -> np.ndarray:
    """Next-k index targets of a padded batch: `targets[b, t, j] = padded[b, t + 1 + j]`.

    Args:
        padded: int `(batch, length)` array from `pad_sequences` (`item + 1`, 0 padding).
        next_k: how many following items each position predicts (1: next item).

    Returns:
        int32 `(batch, length, next_k)`; `0` where the sequence has ended (and at every
        padded position).

    Example:

    >>> next_k_targets(np.array([[3, 1, 2, 0]]), next_k=2)[0].tolist()
    [[1, 2], [2, 0], [0, 0], [0, 0]]
    """
    next_k = check_positive_int(next_k, "next_k")
    padded = np.asarray(padded)
    if padded.ndim != 2:
        raise ValueError(
            f"`padded` should be a 2D (batch, length) array. Received: shape={padded.shape}"
        )
    batch, length = padded.shape
    shifted = np.concatenate([padded, np.zeros((batch, next_k), dtype=padded.dtype)], axis=1)
    steps = np.arange(length)[:, None] + np.arange(1, next_k + 1)[None, :]
    return shifted[:, steps].astype("int32")


def rank_matrix(sequences, num_items: int) -> sp.csr_matrix:
    """CSR (sequences x items) with each item's 1-based rank in its sequence as value.

    Example:

    >>> rank_matrix([[2, 0]], num_items=3).toarray().tolist()
    [[2.0, 0.0, 1.0]]
    """
    lengths = np.array([len(sequence) for sequence in sequences], dtype="int64")
    rows = np.repeat(np.arange(len(sequences)), lengths)
    columns = (
        np.concatenate([np.asarray(s, dtype="int64") for s in sequences])
        if len(sequences)
        else np.zeros(0, dtype="int64")
    )
    ranks = np.arange(columns.size) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
    return sp.csr_matrix(
        (ranks.astype("float32"), (rows, columns)), shape=(len(sequences), num_items)
    )


def time_ordered_part(part):
    """A held-out part whose fold-in values give each item's rank in the user's time order.

    `evaluate_ranking` and `RankingEvaluation` hand the model `part.fold_in` rows; SVAE
    needs their time order, which a 0/1 fold-in does not carry. The returned part has
    the same fold-in entries (so the same items are excluded from the ranking) with
    values 1..n in time order (ties by item position), read by `SVAE.score`.

    Args:
        part: a `HeldOutPart` with `fold_in_timestamps` (from `splits.temporal`).

    Returns:
        A copy of `part` with the new `fold_in`.

    Example:
        ```python
        results = evaluate_ranking(svae, time_ordered_part(split.test), ks=(10, 100))
        ```
    """
    timestamps = getattr(part, "fold_in_timestamps", None)
    if timestamps is None:
        raise ValueError(
            "`part` should carry `fold_in_timestamps` (use the temporal protocol, "
            "`keras_aerec.data.splits.temporal`, on data with timestamps). "
            "Received: a part without timestamps"
        )
    timestamps = sp.csr_matrix(timestamps)
    fold_in = rank_matrix(time_ordered_sequences(timestamps), timestamps.shape[1])
    if fold_in.nnz != part.fold_in.nnz:
        raise ValueError(
            "`part.fold_in_timestamps` should have the same entries as `part.fold_in`. "
            f"Received: {fold_in.nnz} and {part.fold_in.nnz} entries"
        )
    return dataclasses.replace(part, fold_in=fold_in)


class SequenceBatches(keras.utils.PyDataset):
    """Batches of padded item sequences and their next-k targets, built one batch at a time.

    Yields `(padded, targets)` (see the module docstring for the encodings), so a batch
    holds `batch_size x length x (1 + next_k)` integers whatever the catalogue size.
    Sequences are shuffled every epoch with a seeded generator. With `bucket_size`, the
    shuffled sequences are cut into windows of `bucket_size` batches and sorted by length
    inside each window, so a batch holds sequences of similar lengths and little padding;
    the batch order is then shuffled.

    Each batch is padded to its longest (truncated) sequence rounded up to a multiple of
    `length_multiple`, or to `max_len` when that multiple is within `length_multiple` of
    it or beyond, which bounds the number of distinct batch shapes to
    `ceil(max_len / length_multiple)` (JAX compiles each shape once; TensorFlow traces a
    variable time axis once; when batches 0 and 1 would have the same length, batch 0 gets `length_multiple`
    extra padded steps so that TensorFlow, which infers the signature from them, sees
    the variable axis). `length_multiple=None` pads every batch to `max_len`: a single
    shape.

    The short last batch is filled up with empty sequences (all padding, so no loss):
    every batch has `batch_size` rows (JAX compiles one shape per length, and under a JAX
    `data_parallel()` every batch splits evenly over the devices, which must divide
    `batch_size`).

    Args:
        sequences: list of 1D int arrays of item positions, oldest first (e.g. from
            `time_ordered_sequences(split.train_timestamps)`).
        batch_size: sequences per batch.
        max_len: longest sequence kept; longer ones keep their most recent items.
        next_k: targets per position (1: next-item prediction).
        shuffle: whether to reshuffle every epoch.
        seed: integer seed of the shuffling.
        length_multiple: batch lengths are rounded up to a multiple of this, or `None`
            to always pad to `max_len`.
        bucket_size: number of batches per length-sorted window, or `None` (no sorting).
        **kwargs: forwarded to `keras.utils.PyDataset` (`workers`, ...).

    Example:

    >>> batches = SequenceBatches([[0, 1, 2], [3, 4]], batch_size=2, max_len=8,
    ...                           next_k=1, shuffle=False, length_multiple=4)
    >>> padded, targets = batches[0]
    >>> padded.tolist(), targets[..., 0].tolist()
    ([[1, 2, 3, 0], [4, 5, 0, 0]], [[2, 3, 0, 0], [5, 0, 0, 0]])
    """

    def __init__(
        self,
        sequences,
        batch_size: int = 64,
        max_len: int = 200,
        next_k: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
        length_multiple: int | None = 16,
        bucket_size: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_len = check_positive_int(max_len, "max_len")
        self.next_k = check_positive_int(next_k, "next_k")
        if length_multiple is not None:
            length_multiple = check_positive_int(length_multiple, "length_multiple")
        if bucket_size is not None:
            bucket_size = check_positive_int(bucket_size, "bucket_size")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise ValueError(f"`seed` should be an integer or None. Received: seed={seed!r}")
        self.sequences = [np.asarray(sequence) for sequence in sequences]
        if not self.sequences:
            raise ValueError("`sequences` should hold at least one sequence. Received: []")
        for i, sequence in enumerate(self.sequences):
            if sequence.ndim != 1 or (
                sequence.size and not np.issubdtype(sequence.dtype, np.integer)
            ):
                raise ValueError(
                    "`sequences` should be 1D integer arrays of item positions. "
                    f"Received: sequence {i} with dtype {sequence.dtype} and shape "
                    f"{sequence.shape}"
                )
        self.lengths = np.array(
            [min(len(sequence), self.max_len) for sequence in self.sequences], dtype="int64"
        )
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.length_multiple = length_multiple
        self.bucket_size = bucket_size
        self._rng = np.random.default_rng(seed)
        self._batches = self._make_batches()

    def _make_batches(self) -> list[np.ndarray]:
        order = np.arange(len(self.sequences))
        if self.shuffle:
            order = self._rng.permutation(order)
        if self.bucket_size is not None:
            window = self.batch_size * self.bucket_size
            order = np.concatenate(
                [
                    chunk[np.argsort(self.lengths[chunk], kind="stable")]
                    for chunk in np.split(order, np.arange(window, order.size, window))
                ]
            )
        batches = np.split(order, np.arange(self.batch_size, order.size, self.batch_size))
        if self.shuffle and self.bucket_size is not None:
            batches = [batches[i] for i in self._rng.permutation(len(batches))]
        # TensorFlow fixes the batch signature from batches 0 and 1 once per `fit`: when
        # they have the same length, a later batch of another length would be rejected.
        # Swap in a batch of another length, or else pad batch 0 one step further (extra
        # padding is masked like any other), so that the time axis is left unknown.
        lengths = [self._natural_length(rows) for rows in batches]
        if self.length_multiple is not None and len(batches) > 1 and lengths[0] == lengths[1]:
            differing = [i for i, length in enumerate(lengths) if length != lengths[0]]
            if differing:
                i = differing[0]
                batches[1], batches[i] = batches[i], batches[1]
                lengths[1], lengths[i] = lengths[i], lengths[1]
            else:
                lengths[0] += self.length_multiple
        self._batch_lengths = lengths
        return batches

    def __len__(self):
        return len(self._batches)

    def _batch(self, index: int) -> tuple[np.ndarray, int]:
        if not 0 <= index < len(self._batches):
            raise IndexError(f"Batch index {index} out of range [0, {len(self._batches)})")
        return self._batches[index], self._batch_lengths[index]

    def batch_rows(self, index: int) -> np.ndarray:
        """Indices into `sequences` of batch `index` of the current epoch."""
        return self._batch(index)[0]

    def _natural_length(self, rows) -> int:
        if self.length_multiple is None:
            return self.max_len
        longest = max(int(self.lengths[rows].max()), 1)
        length = self.length_multiple * math.ceil(longest / self.length_multiple)
        # The last multiple below `max_len`, within `length_multiple` of it, joins the
        # `max_len` batches: e.g. 192 with 200 and 32, one shape (compilation) fewer.
        return self.max_len if length > self.max_len - self.length_multiple else length

    def __getitem__(self, index):
        rows, length = self._batch(index)
        batch_multiple(self.batch_size)
        # The short last batch is filled up with empty sequences (no targets, so no loss):
        # every batch has `batch_size` rows, so JAX compiles one shape per length instead
        # of two, and a data-parallel batch always splits evenly over the devices.
        sequences = [self.sequences[i] for i in rows]
        sequences += [_EMPTY] * (self.batch_size - len(rows))
        padded, _ = pad_sequences(sequences, self.max_len, length=length)
        return padded, next_k_targets(padded, self.next_k)

    def on_epoch_end(self):
        if self.shuffle:
            self._batches = self._make_batches()
