import logging

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_aerec.data.batching import RowBatches


def _matrix(num_rows=23, num_columns=7, seed=0):
    return sp.random(
        num_rows, num_columns, density=0.4, format="csr", dtype=np.float32, random_state=seed
    )


def _epoch_rows(batches):
    return np.concatenate([batches.batch_rows(i) for i in range(len(batches))])


def test_every_row_once_per_epoch_and_values_match():
    x = _matrix()
    y = _matrix(seed=1)
    batches = RowBatches(x, y=y, batch_size=5, seed=0, user_index=True)
    assert len(batches) == 5
    for _ in range(2):
        seen = []
        for i in range(len(batches)):
            (users, x_batch), y_batch = batches[i]
            assert users.dtype == np.int32
            assert x_batch.dtype == np.float32 and y_batch.dtype == np.float32
            np.testing.assert_array_equal(x_batch, x[users].toarray())
            np.testing.assert_array_equal(y_batch, y[users].toarray())
            seen.append(users)
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(23))
        batches.on_epoch_end()


def test_shuffle_differs_between_epochs_and_is_seed_deterministic():
    x = _matrix(num_rows=50)
    first, again = RowBatches(x, batch_size=8, seed=3), RowBatches(x, batch_size=8, seed=3)
    epochs = []
    for _ in range(3):
        epochs.append(_epoch_rows(first))
        np.testing.assert_array_equal(epochs[-1], _epoch_rows(again))
        first.on_epoch_end()
        again.on_epoch_end()
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(50))
    other = RowBatches(x, batch_size=8, seed=4)
    assert not np.array_equal(_epoch_rows(other), epochs[0])
    unshuffled = RowBatches(x, batch_size=8, shuffle=False)
    unshuffled.on_epoch_end()
    np.testing.assert_array_equal(_epoch_rows(unshuffled), np.arange(50))


def test_drop_remainder_and_rows_subset():
    x = _matrix()
    batches = RowBatches(x, batch_size=5, seed=0, drop_remainder=True)
    assert len(batches) == 4
    assert all(batches[i][0].shape == (5, 7) for i in range(4))
    with pytest.raises(IndexError):
        batches[4]
    subset = np.array([2, 4, 6, 8, 10, 12, 14])
    batches = RowBatches(x, y="x", batch_size=3, seed=0, rows=subset, user_index=True)
    assert len(batches) == 3
    rows = []
    for i in range(len(batches)):
        (users, x_batch), y_batch = batches[i]
        assert y_batch is x_batch
        np.testing.assert_array_equal(x_batch, x[users].toarray())
        rows.append(users)
    np.testing.assert_array_equal(np.sort(np.concatenate(rows)), subset)


def test_inputs_only_and_other_formats(caplog):
    dense = _matrix().toarray()
    batches = RowBatches(dense, batch_size=10, shuffle=False, workers=2, max_queue_size=4)
    assert (batches.workers, batches.max_queue_size) == (2, 4)
    (x_batch,) = batches[0]
    np.testing.assert_array_equal(x_batch, dense[:10])
    with caplog.at_level(logging.WARNING, logger="keras_aerec"):
        batches = RowBatches(sp.coo_matrix(dense), batch_size=10, shuffle=False, user_index=True)
    assert "COO to CSR" in caplog.text
    ((users, x_batch),) = batches[2]
    np.testing.assert_array_equal(users, [20, 21, 22])
    np.testing.assert_array_equal(x_batch, dense[20:])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"batch_size": 0}, "`batch_size` should be a positive integer"),
        ({"batch_size": 2.5}, "`batch_size` should be a positive integer"),
        ({"batch_size": True}, "`batch_size` should be a positive integer"),
        ({"y": _matrix(num_rows=5)}, "`y` should have as many rows as `x`"),
        ({"y": "targets"}, '`y` should be a matrix, "x" or None'),
        ({"rows": np.array([0, 23])}, "`rows` should be row indices in \\[0, 23\\)"),
        ({"rows": np.array([0.5])}, "`rows` should be a 1D integer array"),
        ({"batch_size": 30, "drop_remainder": True}, "`batch_size` should not exceed"),
        ({"seed": 1.5}, "`seed` should be an integer or None"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RowBatches(_matrix(), **kwargs)


@pytest.mark.backend
@pytest.mark.parametrize("user_index", [False, True])
def test_fits_a_keras_model(user_index):
    num_items = 12
    x = _matrix(num_rows=40, num_columns=num_items)
    items = keras.Input((num_items,))
    if user_index:
        users = keras.Input((), dtype="int32")
        user_vectors = keras.layers.Embedding(40, num_items)(users)
        outputs = keras.layers.Dense(num_items)(keras.layers.Add()([items, user_vectors]))
        model = keras.Model([users, items], outputs)
    else:
        model = keras.Model(items, keras.layers.Dense(num_items)(items))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(
        RowBatches(x, y="x", batch_size=16, seed=0, user_index=user_index), epochs=2, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(not np.allclose(b, a) for b, a in zip(before, model.get_weights(), strict=True))
