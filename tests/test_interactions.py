import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from keras_aerec.data.interactions import Interactions


def small_frame():
    # Users 30, 10, 20 and items 300, 100, 200 listed out of order on purpose.
    return pd.DataFrame(
        {
            "user_id": [30, 10, 10, 20, 10, 30],
            "item_id": [300, 200, 100, 100, 300, 100],
            "rating": [5.0, 2.0, 4.0, 3.0, 1.0, 4.5],
            "timestamp": [60, 30, 10, 40, 20, 50],
        }
    )


def test_from_dataframe_maps_ids_in_sorted_order():
    x = Interactions.from_dataframe(small_frame(), name="toy")
    assert x.user_ids.tolist() == [10, 20, 30]
    assert x.item_ids.tolist() == [100, 200, 300]
    assert x.matrix.dtype == np.float32
    np.testing.assert_array_equal(
        x.matrix.toarray(), [[4.0, 2.0, 1.0], [3.0, 0.0, 0.0], [4.5, 0.0, 5.0]]
    )
    assert (x.num_users, x.num_items, x.num_interactions) == (3, 3, 6)
    assert x.name == "toy"
    assert repr(x) == "Interactions: 3 users x 3 items, 6 ratings"


def test_timestamps_follow_matrix_data():
    x = Interactions.from_dataframe(small_frame())
    df = x.to_dataframe()
    merged = df.merge(small_frame(), on=["user_id", "item_id"], suffixes=("", "_orig"))
    assert len(merged) == 6
    np.testing.assert_array_equal(merged["timestamp"], merged["timestamp_orig"])
    np.testing.assert_array_equal(merged["rating"], merged["rating_orig"])
    assert x.timestamps.dtype == np.int64


def test_matrix_is_canonical():
    x = Interactions.from_dataframe(small_frame())
    assert x.matrix.has_canonical_format
    for row in range(x.num_users):
        cols = x.matrix.indices[x.matrix.indptr[row] : x.matrix.indptr[row + 1]]
        assert np.all(np.diff(cols) > 0)


def test_unsorted_csr_is_sorted_with_its_timestamps_and_zeros_dropped():
    matrix = sp.csr_matrix(
        (np.array([3.0, 0.0, 5.0, 1.0]), np.array([2, 0, 1, 0]), np.array([0, 3, 4])),
        shape=(2, 3),
    )
    x = Interactions(matrix, ["a", "b"], [1, 2, 3], timestamps=[30, 10, 20, 40])
    np.testing.assert_array_equal(x.matrix.indices, [1, 2, 0])
    np.testing.assert_array_equal(x.matrix.data, [5.0, 3.0, 1.0])
    np.testing.assert_array_equal(x.timestamps, [20, 30, 40])


def test_duplicate_entries_in_csr_are_rejected():
    matrix = sp.csr_matrix((np.array([1.0, 2.0]), np.array([1, 1]), np.array([0, 2])), shape=(1, 2))
    with pytest.raises(ValueError, match="duplicate entries"):
        Interactions(matrix, [0], [0, 1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"user_ids": [1]}, r"`user_ids` should have one entry per row of `matrix` \(2\)"),
        ({"item_ids": [1, 2]}, r"`item_ids` should have one entry per column"),
        (
            {"timestamps": [1, 2]},
            r"`timestamps` should have one entry per interaction \(3\)\. Received: shape=\(2,\)",
        ),
        ({"user_ids": [1, 1]}, "`user_ids` should be unique"),
        ({"items": [1, 2]}, "`items` should be a pandas DataFrame"),
        ({"timestamps": [1.5, 2, 3]}, "`timestamps` should hold integers"),
    ],
)
def test_init_validates_shapes(kwargs, message):
    arguments = {
        "matrix": sp.csr_matrix(np.array([[1.0, 0, 2], [0, 3, 0]])),
        "user_ids": [1, 2],
        "item_ids": [1, 2, 3],
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Interactions(**arguments)


def test_init_rejects_non_sparse_matrix():
    with pytest.raises(ValueError, match="`matrix` should be a scipy sparse matrix"):
        Interactions(np.ones((2, 2)), [0, 1], [0, 1])


def test_duplicate_pairs_with_same_rating_are_kept_once():
    df = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 5, 5], "rating": [4, 4, 2]})
    x = Interactions.from_dataframe(df)
    assert x.num_interactions == 2
    np.testing.assert_array_equal(x.matrix.toarray(), [[4.0], [2.0]])


def test_duplicate_pairs_with_different_ratings_raise_naming_the_pair():
    df = pd.DataFrame({"user_id": [1, 7, 7], "item_id": [5, 9, 9], "rating": [4, 3, 5]})
    with pytest.raises(ValueError, match=r"user_id=7, item_id=9 rated 3 \(row 1\) and 5 \(row 2\)"):
        Interactions.from_dataframe(df)


def test_nan_rating_raises():
    df = pd.DataFrame({"user_id": [1, 2], "item_id": [5, 6], "rating": [4.0, np.nan]})
    with pytest.raises(ValueError, match=r"finite numbers.*row 1.*user_id=2"):
        Interactions.from_dataframe(df)


def test_missing_rating_column_means_implicit():
    df = pd.DataFrame({"user_id": [1, 2], "item_id": [5, 6]})
    x = Interactions.from_dataframe(df)
    np.testing.assert_array_equal(x.matrix.data, [1.0, 1.0])
    assert x.timestamps is None
    y = Interactions.from_dataframe(small_frame(), rating_col=None)
    assert set(y.matrix.data.tolist()) == {1.0}
    z = Interactions.from_dataframe(small_frame(), implicit=True)
    assert set(z.matrix.data.tolist()) == {1.0}


def test_datetime_timestamps_become_unix_seconds():
    df = pd.DataFrame(
        {
            "user_id": [1],
            "item_id": [2],
            "rating": [3.0],
            "timestamp": pd.to_datetime(["2001-01-01 00:00:10"]),
        }
    )
    assert Interactions.from_dataframe(df).timestamps.tolist() == [978307210]


def test_missing_user_column_raises():
    with pytest.raises(ValueError, match="`user_col` should name a column"):
        Interactions.from_dataframe(small_frame(), user_col="uid")


def test_from_csr_defaults_and_dense_input():
    x = Interactions.from_csr(np.array([[0, 2.0], [1.0, 0]]))
    assert x.user_ids.tolist() == [0, 1]
    assert x.item_ids.tolist() == [0, 1]
    assert x.num_interactions == 2
    y = Interactions.from_csr(sp.coo_matrix(np.eye(3)), item_ids=["a", "b", "c"])
    assert y.matrix.format == "csr"
    assert y.item_ids.tolist() == ["a", "b", "c"]


def test_to_implicit_keeps_ratings_above_threshold_and_timestamps():
    x = Interactions.from_dataframe(small_frame())
    y = x.to_implicit(3.0)
    assert y.matrix.shape == x.matrix.shape
    df = y.to_dataframe().sort_values(["user_id", "item_id"])
    assert list(zip(df["user_id"], df["item_id"], strict=True)) == [(10, 100), (30, 100), (30, 300)]
    assert df["rating"].tolist() == [1.0, 1.0, 1.0]
    assert df["timestamp"].tolist() == [10, 50, 60]
    assert x.to_implicit(4.0).num_interactions == 2


def test_filter_min_interactions_is_one_pass_and_reindexes():
    x = Interactions.from_dataframe(small_frame(), items=items_frame())
    y = x.filter_min_interactions(users=2)
    assert y.user_ids.tolist() == [10, 30]
    assert y.num_items == 3
    z = x.filter_min_interactions(items=2)
    assert z.item_ids.tolist() == [100, 300]
    # One pass: user 20 keeps its single interaction although users=... is not asked.
    assert z.user_ids.tolist() == [10, 20, 30]
    assert z.items["title"].tolist() == ["a", "c"]
    df = z.to_dataframe()
    assert (
        dict(zip(zip(df.user_id, df.item_id, strict=True), df.timestamp, strict=True))[(10, 300)]
        == 20
    )
    with pytest.raises(ValueError, match="`users` should be a non-negative integer"):
        x.filter_min_interactions(users=-1)


def test_k_core_iterates_to_a_fixed_point():
    # Items 0,1 dense; item 2 is rated by user 1 only; user 2 rates only item 2.
    dense = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
    x = Interactions.from_csr(dense)
    core = x.k_core(2)
    assert core.user_ids.tolist() == [0, 1, 3]
    assert core.item_ids.tolist() == [0, 1]
    counts_users = np.diff(core.matrix.indptr)
    counts_items = np.bincount(core.matrix.indices, minlength=core.num_items)
    assert counts_users.min() >= 2 and counts_items.min() >= 2
    # One pass with the same threshold keeps item 2 (it had 2 interactions before).
    assert x.filter_min_interactions(2, 2).num_items == 3
    assert x.k_core(4).num_interactions == 0


def test_select_users_keeps_item_space_and_order():
    x = Interactions.from_dataframe(small_frame())
    y = x.select_users([2, 0])
    assert y.user_ids.tolist() == [30, 10]
    assert y.num_items == 3
    np.testing.assert_array_equal(y.matrix.toarray(), x.matrix.toarray()[[2, 0]])
    assert y.timestamps.tolist() == [50, 60, 10, 30, 20]
    mask = y.select_users(np.array([False, True]))
    assert mask.user_ids.tolist() == [10]
    with pytest.raises(ValueError, match="should not repeat"):
        x.select_users([1, 1])
    with pytest.raises(ValueError, match=r"user positions in \[0, 3\)"):
        x.select_users([3])


def test_sequences_are_ordered_by_time():
    x = Interactions.from_dataframe(small_frame())
    sequences = x.sequences()
    assert [s.tolist() for s in sequences] == [[0, 2, 1], [0], [0, 2]]
    no_time = Interactions.from_csr(np.eye(2))
    with pytest.raises(ValueError, match="`Interactions` has no timestamps"):
        no_time.sequences()


def test_items_metadata_is_aligned_to_item_ids():
    x = Interactions.from_dataframe(small_frame(), items=items_frame())
    assert x.items.index.tolist() == [100, 200, 300]
    assert x.items["title"].tolist() == ["a", "b", "c"]
    y = x.filter_min_interactions(items=3)
    assert y.items.index.tolist() == [100]


def items_frame():
    return pd.DataFrame(
        {"title": ["c", "a", "b", "unused"], "genres": [["x"], ["y"], [], ["z"]]},
        index=pd.Index([300, 100, 200, 999], name="item_id"),
    )
