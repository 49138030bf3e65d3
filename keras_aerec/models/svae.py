"""`SVAE`: sequential variational autoencoder with a GRU encoder (Sachdeva et al. 2019)."""

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from keras_aerec.api_export import keras_aerec_export
from keras_aerec.data.sequences import (
    SequenceBatches,
    pad_sequences,
    rank_matrix,
    time_ordered_sequences,
)
from keras_aerec.distribute import sum_over_replicas
from keras_aerec.layers.gru import GRU
from keras_aerec.layers.sampling import Sampling
from keras_aerec.models.recommender import TopNRecommender, is_matrix
from keras_aerec.validation import check_item_ids, check_l2, check_positive_int, item_ids_config

DEFAULT_SCORE_BATCH_SIZE = 256
LIKELIHOOD_REDUCTIONS = ("mean", "sum")


def next_k_nll(targets, logits, sample_weight=None, reduction="mean"):
    """Negative log-likelihood of the next-k items at the positions that have any.

    Each position `t` of a sequence has its own multinomial over the catalogue,
    `softmax(logits[b, t])`; its loss is `-sum_j log softmax(logits[b, t])[targets[b, t, j]]`
    over its (up to k) targets. Padding and the end of each sequence add nothing.
    `reduction="mean"` averages the position losses over every position with at least one
    target; `"sum"` sums them over each sequence's positions, divides by `k` and averages
    over the sequences that have a target (the authors' likelihood: a sequence weighs in
    proportion to its length, and the loss is about `length / k` times the mean). With
    `sample_weight` (one weight per sequence) either average is weighted.

    Args:
        targets: int tensor (batch, length, next_k) in the `item + 1` encoding, 0 for
            "no target" (see `keras_aerec.data.sequences.next_k_targets`).
        logits: float tensor (batch, length, num_items).
        sample_weight: optional float tensor (batch,).
        reduction: `"mean"` (over positions) or `"sum"` (over each sequence's positions,
            divided by `next_k`, averaged over sequences).

    Returns:
        Scalar float tensor.

    Reference:
        Sachdeva, Manco, Ritacco and Pudi, "Sequential Variational Autoencoders for
        Collaborative Filtering", WSDM 2019 (the next-k likelihood).
    """
    if reduction not in LIKELIHOOD_REDUCTIONS:
        raise ValueError(
            f"`reduction` should be one of {LIKELIHOOD_REDUCTIONS}. Received: "
            f"reduction={reduction!r}"
        )
    targets = ops.cast(targets, "int32")
    # log softmax(x)_i = x_i - logsumexp(x): picking the targets' logits and subtracting
    # one logsumexp per position never forms the (batch, length, num_items) log
    # probabilities, a pass over the largest tensor of the step each way; on the ML-1M
    # article split, CPU seconds per JAX epoch 29.6 -> 26.3 (benchmarks/bench_svae_speed.py).
    present = ops.cast(ops.greater(targets, 0), logits.dtype)
    picked = ops.take_along_axis(logits, ops.maximum(targets - 1, 0), axis=-1)
    log_normaliser = ops.logsumexp(logits, axis=-1)
    per_position = ops.sum(present, axis=-1) * log_normaliser - ops.sum(picked * present, axis=-1)
    weight = ops.cast(ops.greater(ops.max(targets, axis=-1), 0), logits.dtype)
    if reduction == "sum":
        per_position = ops.sum(per_position * weight, axis=-1) / targets.shape[-1]
        weight = ops.max(weight, axis=-1)
    if sample_weight is not None:
        sample_weight = ops.cast(sample_weight, weight.dtype)
        weight = weight * (sample_weight if reduction == "sum" else sample_weight[:, None])
    # The count of the whole batch under tf.distribute (see `sum_over_replicas`).
    return ops.sum(per_position * weight) / ops.maximum(sum_over_replicas(ops.sum(weight)), 1e-12)


@keras_aerec_export
class SVAE(TopNRecommender, keras.Model):
    """Sequential VAE: a GRU reads a user's time-ordered items, a VAE predicts the next ones.

    At every position `t` of a sequence, the item embedding feeds a GRU; a tanh layer maps
    the GRU state to the mean and log-variance of q(z_t | x_1..t); `Sampling` draws z_t
    (reparameterisation) and adds the annealed KL term; a tanh layer and a linear layer
    decode z_t into one logit per item. The loss is the multinomial negative
    log-likelihood of the next `next_k` items at every position (`next_k_nll`) plus
    `beta * KL`, the KL averaged over the positions that have a next item and the
    likelihood either averaged over them too (`likelihood_reduction="mean"`) or, as the
    authors, summed over each sequence's positions, divided by `next_k` and averaged over
    the sequences (`"sum"`).

    Training takes many users per step: `SequenceBatches` yields left-aligned padded
    sequences (`item + 1`, 0 = padding) truncated to their most recent `max_len` items
    and next-k index targets; the GRU is causal, so padding after a sequence never
    changes its real positions, and padded positions are masked out of both loss terms.
    `compile()` needs no `loss`:
    `model.fit(model.batches(sequences, batch_size=64, seed=0), epochs=...)`.

    At inference the distribution at the last position of the (truncated) sequence ranks
    the items, using the mean of q(z|x) (deterministic); `score()` returns its logits.

    Differences from the authors' code (which trains one user per step): by default
    (`likelihood_reduction="mean"`) the likelihood and the KL are both averaged over
    positions (the authors sum the likelihood over a user's positions and divide by k, but
    average the KL, so their KL weight and weight decay are in effect about k / length of
    ours; `"sum"` is their weighting, averaged over the batch's users); sequences are truncated to `max_len` (the authors drop
    users with more than 1,000 items); `score()` reads the whole fold-in sequence (their
    evaluation feeds it without its last item); no weight decay by default (theirs: 5e-3
    in Adam).

    Args:
        num_items: number of items.
        item_embedding_dim: item embedding size. Defaults to `256` (the paper's).
        rnn_units: GRU units. Defaults to `200`.
        hidden_units: width of the tanh encoder and decoder layers. Defaults to `150`.
        latent_dim: dimension of z. Defaults to `64`.
        next_k: items predicted at each position (1: next item). Defaults to `4` (the
            authors' ML-1M setting).
        max_len: longest sequence read; longer ones keep their most recent items (in
            training and in `score()`). Defaults to `200`.
        anneal_cap: largest KL weight beta. Defaults to `0.2`.
        total_anneal_steps: updates over which beta grows linearly to `anneal_cap`.
            Defaults to `20000`.
        l2: L2 penalty on the embedding, GRU and dense kernels (`l2 * sum(w**2)`).
            Defaults to `0.0`.
        likelihood_reduction: `"mean"`: the likelihood averaged over the positions;
            `"sum"`: summed over each sequence's positions and divided by `next_k`, then
            averaged over the sequences (the authors'; about `length / next_k` times
            larger, so `beta` and `l2` weigh that much less). Defaults to `"mean"`.
        item_ids: original id of each item position (default: the positions).
        seed: optional integer seed of the sampling noise.
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, `trainable`).

    Example:

    >>> from keras_aerec.data.synthetic import synthetic
    >>> data = synthetic(num_users=40, num_items=30, density=0.2, seed=0)
    >>> sequences = data.sequences()
    >>> model = SVAE(num_items=30, item_embedding_dim=8, rnn_units=8, hidden_units=8,
    ...              latent_dim=4, next_k=2, max_len=20, seed=0)
    >>> model.compile(optimizer="adam")
    >>> _ = model.fit(model.batches(sequences, batch_size=16, seed=0), epochs=1, verbose=0)
    >>> item_ids, scores = model.recommend([sequences[0]], k=5)

    Reference:
        Sachdeva, Manco, Ritacco and Pudi, "Sequential Variational Autoencoders for
        Collaborative Filtering", WSDM 2019.
    """

    def __init__(
        self,
        num_items,
        item_embedding_dim=256,
        rnn_units=200,
        hidden_units=150,
        latent_dim=64,
        next_k=4,
        max_len=200,
        anneal_cap=0.2,
        total_anneal_steps=20000,
        l2=0.0,
        likelihood_reduction="mean",
        item_ids=None,
        seed=None,
        **kwargs,
    ):
        num_items = check_positive_int(num_items, "num_items")
        item_embedding_dim = check_positive_int(item_embedding_dim, "item_embedding_dim")
        rnn_units = check_positive_int(rnn_units, "rnn_units")
        hidden_units = check_positive_int(hidden_units, "hidden_units")
        latent_dim = check_positive_int(latent_dim, "latent_dim")
        next_k = check_positive_int(next_k, "next_k")
        max_len = check_positive_int(max_len, "max_len")
        l2 = check_l2(l2)
        if likelihood_reduction not in LIKELIHOOD_REDUCTIONS:
            raise ValueError(
                f"`likelihood_reduction` should be one of {LIKELIHOOD_REDUCTIONS}. "
                f"Received: likelihood_reduction={likelihood_reduction!r}"
            )
        item_id_array = check_item_ids(item_ids, num_items)
        regularizer = keras.regularizers.L2(l2) if l2 > 0 else None

        # === Layers ===
        # Row 0 of the embedding is the padding token: items are shifted by one.
        embedding = keras.layers.Embedding(
            num_items + 1,
            item_embedding_dim,
            embeddings_regularizer=regularizer,
            name="item_embedding",
        )
        # Keras' GRU with the input projection out of the time loop on CPU (same weights).
        gru = GRU(
            rnn_units,
            return_sequences=True,
            kernel_regularizer=regularizer,
            recurrent_regularizer=regularizer,
            name="gru",
        )
        encoder = keras.layers.Dense(
            hidden_units, activation="tanh", kernel_regularizer=regularizer, name="encoder"
        )
        z_mean = keras.layers.Dense(latent_dim, kernel_regularizer=regularizer, name="z_mean")
        z_log_var = keras.layers.Dense(latent_dim, kernel_regularizer=regularizer, name="z_log_var")
        sampling = Sampling(
            anneal_cap=anneal_cap,
            total_anneal_steps=total_anneal_steps,
            seed=seed,
            name="sampling",
        )
        decoder = keras.layers.Dense(
            hidden_units, activation="tanh", kernel_regularizer=regularizer, name="decoder"
        )
        output_layer = keras.layers.Dense(num_items, kernel_regularizer=regularizer, name="logits")

        # === Functional Model ===
        sequences = keras.Input(shape=(None,), dtype="int32", name="sequences")
        hidden = encoder(gru(embedding(sequences)))
        # The positions followed by an item are exactly those with next-k targets: only
        # they carry a KL term (padding and each sequence's last position do not).
        followed = ops.cast(ops.not_equal(sequences[:, 1:], 0), "float32")
        kl_mask = ops.pad(followed, ((0, 0), (0, 1)))
        z = sampling([z_mean(hidden), z_log_var(hidden), kl_mask])
        outputs = output_layer(decoder(z))
        super().__init__(inputs=sequences, outputs=outputs, **kwargs)

        # === Config ===
        self.num_items = num_items
        self.item_embedding_dim = item_embedding_dim
        self.rnn_units = rnn_units
        self.hidden_units = hidden_units
        self.latent_dim = latent_dim
        self.next_k = next_k
        self.max_len = max_len
        self.anneal_cap = sampling.anneal_cap
        self.total_anneal_steps = sampling.total_anneal_steps
        self.l2 = l2
        self.likelihood_reduction = likelihood_reduction
        self.item_ids = item_id_array
        self.seed = seed
        self._id_order = np.argsort(item_id_array, kind="stable")

    # ------------------------------------------------------------------ training

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:
            raise ValueError(
                "`SVAE` trains on (padded sequences, next-k targets) batches, e.g. "
                "`model.batches(sequences)`. Received: y=None"
            )
        if y.shape[-1] is not None and y.shape[-1] != self.next_k:
            raise ValueError(
                f"The targets should hold next_k={self.next_k} items per position. "
                f"Received: targets with shape {tuple(y.shape)}"
            )
        # In float32 under a mixed precision policy, as Keras computes its losses.
        logits = ops.cast(y_pred, "float32")
        loss = next_k_nll(y, logits, sample_weight, reduction=self.likelihood_reduction)
        if self._compile_loss is not None or self.losses:
            loss = loss + super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        return loss

    def batches(self, sequences, batch_size=64, shuffle=True, seed=None, **kwargs):
        """`SequenceBatches` of item-position sequences with this model's `max_len`, `next_k`.

        Args:
            sequences: list of 1D int arrays of item positions (0..num_items-1), oldest
                first (e.g. `time_ordered_sequences(split.train_timestamps)`).
            batch_size: sequences per batch.
            shuffle: whether to reshuffle every epoch.
            seed: integer seed of the shuffling.
            **kwargs: forwarded to `SequenceBatches` (`length_multiple`, `bucket_size`).

        Returns:
            A `SequenceBatches` for `model.fit`.
        """
        sequences = [np.asarray(sequence) for sequence in sequences]
        for i, sequence in enumerate(sequences):
            if sequence.size and (sequence.min() < 0 or sequence.max() >= self.num_items):
                raise ValueError(
                    f"`sequences` should hold item positions in [0, {self.num_items}). "
                    f"Received: sequence {i} with values in [{sequence.min()}, {sequence.max()}]"
                )
        return SequenceBatches(
            sequences,
            batch_size=batch_size,
            max_len=self.max_len,
            next_k=self.next_k,
            shuffle=shuffle,
            seed=seed,
            **kwargs,
        )

    def _row_batches(self, x, y, batch_size, shuffle, rows, training):
        """`fit(sequences)`: a list of item-position sequences becomes `self.batches(...)`."""
        del training
        if is_matrix(x) and x.dtype != object:
            raise ValueError(
                "`SVAE` trains on item sequences, not on a users x items matrix: pass a list "
                "of per-user arrays of item positions, oldest first (e.g. "
                "`interactions.sequences()`), or `model.batches(sequences)`. "
                f"Received: x with shape {x.shape}"
            )
        if not isinstance(x, list | np.ndarray) or not all(
            isinstance(sequence, list | np.ndarray) for sequence in x
        ):
            return None
        if y is not None or rows is not None:
            raise ValueError(
                "`SVAE` builds its own next-item targets from the sequences: pass `y=None` "
                "and, for validation, `validation_data=<list of sequences>` (not "
                "`validation_split`)."
            )
        return self.batches(x, batch_size=batch_size, shuffle=shuffle, seed=self.seed)

    # ------------------------------------------------------------------ inference

    def score(self, sequences, users=None, batch_size: int = DEFAULT_SCORE_BATCH_SIZE):
        """Scores every item after each sequence: the logits at its last position.

        Args:
            sequences: either a list of users' item sequences in original item ids
                (`item_ids`), oldest first; or a scipy sparse matrix (users x num_items,
                columns = item positions) whose stored values order each row's items in
                time, such as `HeldOutPart.fold_in_timestamps` or the fold-in of
                `time_ordered_part(part)`. Every sequence needs at least one item.
            users: ignored (the signature of `evaluate_ranking`'s score functions).
            batch_size: sequences scored at once.

        Returns:
            float32 array (num_sequences x num_items); row i scores sequence i.
        """
        del users
        return super().score(self._rank_rows(sequences), batch_size=batch_size)

    def recommend(
        self,
        sequences,
        k: int = 10,
        exclude_seen: bool = True,
        batch_size: int = DEFAULT_SCORE_BATCH_SIZE,
    ):
        """Top-`k` items after each sequence, best first, in original item ids.

        Ties are broken by the lower item position. With `exclude_seen`, every item of the
        sequence (not only its most recent `max_len`) is excluded; a sequence with fewer
        than `k` unseen items gets `-inf` scores and a missing id (-1 for integer ids,
        NaN for float ids, None otherwise) in its trailing positions.

        Args:
            sequences: users' item sequences, as in `score()`.
            k: number of items to return, 1 <= k <= num_items.
            exclude_seen: whether to exclude each sequence's items.
            batch_size: sequences scored at once.

        Returns:
            `(item_ids, scores)`: two arrays (num_sequences x k).
        """
        return super().recommend(
            self._rank_rows(sequences), k=k, exclude_seen=exclude_seen, batch_size=batch_size
        )

    def _score_batch(self, x, users):
        """Logits after the last item of each rank row (values 1..n give the time order).

        Only the GRU runs over the whole sequence; the encoder and decoder run at the last
        position only (the functional model would decode every position).
        """
        del users
        rows, columns = np.nonzero(x)
        order = np.lexsort((columns, x[rows, columns], rows))
        positions = np.split(columns[order], np.cumsum(np.bincount(rows, minlength=len(x)))[:-1])
        padded, lengths = pad_sequences(positions, self.max_len)
        embedded = self.get_layer("item_embedding")(padded)
        states = ops.convert_to_numpy(self.get_layer("gru")(embedded))
        last = states[np.arange(len(positions)), lengths - 1]
        z = self.get_layer("z_mean")(self.get_layer("encoder")(last))
        logits = self.get_layer("logits")(self.get_layer("decoder")(z))
        return np.asarray(ops.convert_to_numpy(logits), dtype="float32")

    def _rank_rows(self, sequences) -> sp.csr_matrix:
        """CSR (sequences x items) holding each item's 1-based rank in its sequence."""
        if sp.issparse(sequences):
            if sequences.ndim != 2 or sequences.shape[1] != self.num_items:
                raise ValueError(
                    f"`sequences` as a sparse matrix should have {self.num_items} columns "
                    f"(one per item). Received: shape={sequences.shape}"
                )
            positions = time_ordered_sequences(sequences)
        elif isinstance(sequences, str) or not hasattr(sequences, "__len__"):
            raise ValueError(
                "`sequences` should be a list of item-id sequences or a sparse matrix. "
                f"Received: {type(sequences).__name__}"
            )
        else:
            positions = [self._item_positions(s, i) for i, s in enumerate(sequences)]
        if not positions:
            raise ValueError("`sequences` should hold at least one sequence. Received: 0")
        empty = [i for i, sequence in enumerate(positions) if len(sequence) == 0]
        if empty:
            raise ValueError(
                "Every sequence should hold at least one item (SVAE predicts from the last "
                f"one). Received: {len(empty)} empty sequences, e.g. at index {empty[0]}"
            )
        return rank_matrix(positions, self.num_items)

    def _item_positions(self, ids, index: int) -> np.ndarray:
        """Item positions of one sequence of original ids (a ValueError for unknown ids)."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(
                f"Each sequence should be 1D. Received: sequence {index} with shape {ids.shape}"
            )
        if ids.size == 0:
            return ids.astype("int64")
        sorted_ids = self.item_ids[self._id_order]
        try:
            found = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
            known = np.asarray(sorted_ids[found] == ids, dtype=bool)
        except TypeError:  # ids not comparable with the model's (e.g. str vs int)
            found, known = None, np.zeros(ids.shape, dtype=bool)
        if not known.all():
            unknown = ids[~known]
            raise ValueError(
                "`sequences` should only hold item ids known to the model (`item_ids`). "
                f"Received: {unknown.size} unknown ids in sequence {index}, e.g. "
                f"{unknown[:3].tolist()}"
            )
        positions = self._id_order[found].astype("int64")
        if np.unique(positions).size != positions.size:
            raise ValueError(
                f"Each sequence should hold an item at most once. Received: sequence {index} "
                "with repeated items"
            )
        return positions

    def get_config(self):
        return {
            **self._base_config(),
            "num_items": self.num_items,
            "item_embedding_dim": self.item_embedding_dim,
            "rnn_units": self.rnn_units,
            "hidden_units": self.hidden_units,
            "latent_dim": self.latent_dim,
            "next_k": self.next_k,
            "max_len": self.max_len,
            "anneal_cap": self.anneal_cap,
            "total_anneal_steps": self.total_anneal_steps,
            "l2": self.l2,
            "likelihood_reduction": self.likelihood_reduction,
            "item_ids": item_ids_config(self.item_ids, self.num_items),
            "seed": self.seed,
        }
