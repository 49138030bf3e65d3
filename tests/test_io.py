import numpy as np
import pytest

from keras_aerec.data.io import read_ratings

GOOD = "1::10::4::978300760\n1::20::3::978300761\n2::10::5::978300762\n"


def write(tmp_path, text, name="ratings.dat", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_double_colon_with_timestamps(tmp_path):
    x = read_ratings(write(tmp_path, GOOD), name="toy")
    assert (x.num_users, x.num_items, x.num_interactions) == (2, 2, 3)
    np.testing.assert_array_equal(x.matrix.toarray(), [[4.0, 3.0], [5.0, 0.0]])
    assert x.timestamps.tolist() == [978300760, 978300761, 978300762]
    assert x.name == "toy"


def test_three_columns_without_timestamps(tmp_path):
    path = write(tmp_path, "1::10::4\n2::10::5\n")
    x = read_ratings(path, columns=("user_id", "item_id", "rating"))
    assert x.timestamps is None
    assert x.matrix.data.tolist() == [4.0, 5.0]


def test_csv_with_header_crlf_and_half_stars(tmp_path):
    text = "userId,movieId,rating,timestamp\r\n1,1,4.5,964982703\r\n1,3,0.5,964981247\r\n"
    x = read_ratings(write(tmp_path, text, "ratings.csv"), sep=",", header="infer")
    assert x.matrix.data.tolist() == [4.5, 0.5]
    assert x.timestamps.tolist() == [964982703, 964981247]


def test_tab_separated_and_implicit(tmp_path):
    path = write(tmp_path, "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", "u.data")
    x = read_ratings(path, sep="\t", implicit=True)
    assert x.matrix.data.tolist() == [1.0, 1.0]
    assert x.user_ids.tolist() == [186, 196]


def test_string_ids_when_asked(tmp_path):
    path = write(tmp_path, "u1,itemA,4\nu2,itemB,2\n", "r.csv")
    x = read_ratings(path, sep=",", columns=("user_id", "item_id", "rating"), id_dtype=str)
    assert x.user_ids.tolist() == ["u1", "u2"]
    assert x.item_ids.tolist() == ["itemA", "itemB"]


def test_blank_lines_are_skipped_and_duplicates_with_same_rating_merged(tmp_path):
    path = write(tmp_path, "1::10::4::1\n\n1::10::4::2\n2::10::5::3\n")
    x = read_ratings(path)
    assert x.num_interactions == 2


def test_other_columns_are_ignored(tmp_path):
    path = write(tmp_path, "1,10,x\n2,11,y\n", "r.csv")
    x = read_ratings(path, sep=",", columns=("user_id", "item_id", "comment"))
    assert x.matrix.data.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("1::10::4::1\n1::20::3\n", 2, "expected 4 fields"),
        ("1::10::4::1\n1::20::3::2::9\n", 2, "expected 4 fields"),
        ("1::10::4::1::9\n1::20::3::2\n", 1, "expected 4 fields"),
        ("1::10::4::1\n2::10::good::2\n", 2, "'rating' should be a non-zero number within float32"),
        ("1::10::4::1\n2::10::nan::2\n", 2, "'rating' should be a non-zero number within float32"),
        ("1::10::4::1\n2::10::::2\n", 2, "'rating' should be a non-zero number within float32"),
        ("1::10::4::1\n2::10::0::2\n", 2, "'rating' should be a non-zero number within float32"),
        ("1::10::4::1\n\nabc::10::3::2\n", 3, "'user_id' should be an integer id"),
        ("1::10::4::1\n2::1.5::3::2\n", 2, "'item_id' should be an integer id"),
        ("1::10::4::1\n2::10::3::soon\n", 2, "'timestamp' should be an integer timestamp"),
    ],
)
def test_bad_lines_name_file_line_and_expectation(tmp_path, text, line, expected):
    path = write(tmp_path, text, "bad_ratings.dat")
    with pytest.raises(ValueError) as info:
        read_ratings(path)
    message = str(info.value)
    assert "bad_ratings.dat" in message
    assert f"line {line}:" in message
    assert expected in message


def test_conflicting_duplicate_names_both_lines(tmp_path):
    path = write(tmp_path, "1::10::4::1\n2::10::5::2\n\n1::10::2::3\n", "dup.dat")
    with pytest.raises(ValueError) as info:
        read_ratings(path)
    message = str(info.value)
    assert "dup.dat" in message and "line 4" in message and "line 1" in message
    assert "user_id=1, item_id=10" in message


def test_empty_file(tmp_path):
    with pytest.raises(ValueError, match=r"empty\.dat.* is empty"):
        read_ratings(write(tmp_path, "\n  \n", "empty.dat"))


def test_header_only_file(tmp_path):
    path = write(tmp_path, "userId,movieId,rating\n", "header.csv")
    with pytest.raises(ValueError, match=r"header\.csv.* has no data lines"):
        read_ratings(path, sep=",", columns=("user_id", "item_id", "rating"), header=0)


def test_wrong_encoding_names_the_line(tmp_path):
    path = tmp_path / "latin.dat"
    path.write_bytes(b"1::10::4::1\n2::\xe9::4::1\n")
    with pytest.raises(ValueError, match=r"latin\.dat.*line 2.*ISO-8859-1"):
        read_ratings(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sep": ""}, "`sep` should be a non-empty string"),
        ({"columns": ("user", "item_id")}, "`columns` should be distinct names"),
        ({"header": "yes"}, "`header` should be None"),
        ({"id_dtype": float}, "`id_dtype` should be int or str"),
    ],
)
def test_argument_validation(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_ratings(write(tmp_path, GOOD), **kwargs)


@pytest.mark.realdata
def test_ml1m_parses_fast(data_dir):
    import time

    start = time.perf_counter()
    x = read_ratings(
        data_dir / "ml-1m" / "ratings_no_timestamp.dat", columns=("user_id", "item_id", "rating")
    )
    elapsed = time.perf_counter() - start
    assert x.num_interactions == 1_000_209
    assert elapsed < 5.0  # about 0.5 s here; generous for loaded CI machines


@pytest.mark.parametrize(
    "text,field,expected",
    [
        ("1\t2\t5\t100\n2\t3\t1e308\t101\n", "rating", "within float32 range. Received: '1e308'"),
        ("1\t2\t5\t100\n99999999999999999999\t3\t4\t1\n", "user_id", "within int64"),
    ],
)
def test_values_beyond_the_stored_dtypes_name_file_and_line(tmp_path, text, field, expected):
    path = tmp_path / "u.data"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"u.data', line 2: field '{field}' .*{expected}"):
        read_ratings(path, sep="\t")
