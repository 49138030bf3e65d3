import dataclasses
import hashlib
import logging
import os
import zipfile

import numpy as np
import pytest

from keras_aerec.data import movielens
from keras_aerec.data.movielens import load_movielens

U_GENRE = "unknown|0\nAction|1\nComedy|2\n\n"
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
    "2|GoldenEye (1995)|01-Jan-1995||http://y|0|1|0\n"
    "3|Caf\xe9 (1995)|01-Jan-1995||http://z|1|0|0\n"
)
U_DATA = "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t3\t4\t881250951\n"


def write_ml100k(folder):
    folder.mkdir(parents=True)
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.item").write_bytes(U_ITEM.encode("ISO-8859-1"))
    (folder / "u.genre").write_text(U_GENRE)
    return folder


def make_ml100k_zip(path):
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("ml-100k/u.data", U_DATA)
        zipped.writestr("ml-100k/u.item", U_ITEM.encode("ISO-8859-1"))
        zipped.writestr("ml-100k/u.genre", U_GENRE)
    return path


def test_unknown_variant_lists_valid_ones():
    with pytest.raises(
        ValueError, match=r"`variant` should be one of \['100k', '1m'.*'latest-small'\]"
    ):
        load_movielens("5m", "/nowhere")


def test_missing_files_say_what_and_where(tmp_path):
    with pytest.raises(ValueError) as info:
        load_movielens("1m", tmp_path)
    message = str(info.value)
    assert "ratings.dat" in message and "ratings_no_timestamp.dat" in message
    assert str(tmp_path / "ml-1m") in message


@pytest.mark.parametrize("as_parent", [True, False])
def test_ml100k_local_folder(tmp_path, as_parent):
    folder = write_ml100k(tmp_path / "ml-100k")
    x = load_movielens("100k", tmp_path if as_parent else folder, verify=False)
    assert x.name == "ml-100k"
    assert (x.num_users, x.num_items, x.num_interactions) == (2, 3, 3)
    assert x.timestamps.tolist() == [881250949, 881250950, 881250951]
    assert x.items.loc[1, "genres"] == ["Comedy"]
    assert x.items.loc[2, "genres"] == ["Action"]
    assert x.items.loc[3, "title"] == "Caf\xe9 (1995)"


def write_ml1m_shared_layout(folder, with_full=False):
    folder.mkdir(parents=True)
    (folder / "ratings_no_timestamp.dat").write_text("1::10::5\n1::20::4\n2::10::2\n3::30::1\n")
    (folder / movielens.ML1M_PARTIAL_TIMESTAMPS).write_text(
        "1::20::4::978300761\n1::10::5::978300760\n2::10::2::978300762\n"
    )
    (folder / "movies.dat").write_bytes(
        "10::Am\xe9lie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n30::X (2000)::Drama\n".encode(
            "ISO-8859-1"
        )
    )
    if with_full:
        (folder / "ratings.dat").write_text("1::10::5::1\n2::20::3::2\n")


def test_ml1m_shared_layout_default_has_all_ratings_without_timestamps(tmp_path, caplog):
    write_ml1m_shared_layout(tmp_path / "ml-1m")
    with caplog.at_level(logging.INFO, logger="keras_aerec"):
        x = load_movielens("1m", tmp_path, verify=False)
    assert x.num_interactions == 4 and x.num_users == 3
    assert x.timestamps is None
    assert "only part" in caplog.text
    assert x.items.loc[10, "title"] == "Am\xe9lie (2001)"
    assert x.items.loc[10, "genres"] == ["Comedy", "Romance"]


def test_ml1m_shared_layout_require_timestamps_loads_timestamped_users(tmp_path):
    write_ml1m_shared_layout(tmp_path / "ml-1m")
    x = load_movielens("1m", tmp_path, require_timestamps=True, verify=False)
    assert x.user_ids.tolist() == [1, 2]
    assert x.num_interactions == 3
    df = x.to_dataframe()
    assert dict(zip(zip(df.user_id, df.item_id, strict=True), df.timestamp, strict=True)) == {
        (1, 10): 978300760,
        (1, 20): 978300761,
        (2, 10): 978300762,
    }


def test_ml1m_full_ratings_dat_is_preferred(tmp_path):
    write_ml1m_shared_layout(tmp_path / "ml-1m", with_full=True)
    x = load_movielens("1m", tmp_path / "ml-1m", verify=False)
    assert x.num_interactions == 2
    assert x.timestamps.tolist() == [1, 2]


def test_csv_release_with_quoted_titles(tmp_path):
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_bytes(
        b"userId,movieId,rating,timestamp\r\n1,1,4.5,964982703\r\n2,2,0.5,964982704\r\n"
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "2,Some Film (2015),(no genres listed)\n"
    )
    x = load_movielens("latest-small", tmp_path, verify=False)
    assert x.name == "ml-latest-small"
    assert x.matrix.data.tolist() == [4.5, 0.5]
    assert x.items.loc[1, "title"] == "American President, The (1995)"
    assert x.items.loc[2, "genres"] == []


def test_ml10m_folder_name(tmp_path):
    folder = tmp_path / "ml-10M100K"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::122::5::838985046\n1::185::4.5::838983525\n")
    (folder / "movies.dat").write_text("122::Boomerang (1992)::Comedy|Romance\n")
    x = load_movielens("10m", tmp_path, verify=False)
    assert x.name == "ml-10m"
    assert x.matrix.data.tolist() == [5.0, 4.5]
    assert x.items.loc[122, "genres"] == ["Comedy", "Romance"]
    assert np.isnan(x.items.loc[185, "title"])


class FakeGetFile:
    """Stands in for keras.utils.get_file: 'downloads' a local zip into the cache."""

    def __init__(self, source):
        self.source = source
        self.calls = []

    def __call__(self, fname, origin, cache_dir=None, cache_subdir="datasets", **kwargs):
        self.calls.append(origin)
        target = os.path.join(cache_dir, cache_subdir, fname)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            with open(self.source, "rb") as src, open(target, "wb") as dst:
                dst.write(src.read())
        return target


def test_download_verifies_md5_extracts_and_uses_the_cache(tmp_path, monkeypatch):
    import keras

    source = make_ml100k_zip(tmp_path / "source.zip")
    digest = hashlib.md5(source.read_bytes()).hexdigest()
    spec = dataclasses.replace(movielens._VARIANTS["100k"], md5=digest)
    monkeypatch.setitem(movielens._VARIANTS, "100k", spec)
    fake = FakeGetFile(source)
    monkeypatch.setattr(keras.utils, "get_file", fake)
    cache = tmp_path / "keras_home"

    x = load_movielens("100k", cache_dir=cache, verify=False)
    assert x.num_interactions == 3
    assert fake.calls == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert (cache / "datasets" / "ml-100k" / "u.data").is_file()
    # Second call: found in the cache, no download.
    assert load_movielens("100k", cache_dir=cache, verify=False).num_interactions == 3
    assert len(fake.calls) == 1


def test_download_with_wrong_md5_is_deleted_and_reported(tmp_path, monkeypatch):
    import keras

    source = make_ml100k_zip(tmp_path / "source.zip")
    monkeypatch.setattr(keras.utils, "get_file", FakeGetFile(source))
    cache = tmp_path / "keras_home"
    with pytest.raises(
        ValueError, match=r"md5 .*expected 0e33842e24a9c977be4e0107933c0723.*deleted"
    ):
        load_movielens("100k", cache_dir=cache)
    assert not (cache / "datasets" / "ml-100k.zip").exists()
    assert not (cache / "datasets" / "ml-100k").exists()


def test_default_cache_follows_keras_home(tmp_path, monkeypatch):
    write_ml100k(tmp_path / "datasets" / "ml-100k")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert load_movielens("100k", verify=False).num_interactions == 3


def test_unsafe_archive_members_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="unsafe member path"):
        movielens._extract(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.realdata
def test_real_ml1m(data_dir):
    x = load_movielens("1m", data_dir)
    assert (x.num_interactions, x.num_users, x.num_items) == (1_000_209, 6_040, 3_706)
    assert x.name == "ml-1m"
    values, counts = np.unique(x.matrix.data, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {
        1.0: 56_174,
        2.0: 107_557,
        3.0: 261_197,
        4.0: 348_971,
        5.0: 226_310,
    }
    assert x.to_implicit(3.0).num_interactions == 575_281
    assert x.items.loc[1, "title"] == "Toy Story (1995)"
    assert x.items["title"].notna().all()

    timed = load_movielens("1m", data_dir / "ml-1m", require_timestamps=True)
    assert (timed.num_interactions, timed.num_users) == (487_650, 2_999)
    assert timed.timestamps is not None and timed.timestamps.min() > 9e8


@pytest.mark.realdata
def test_real_ml100k_and_latest_small(data_dir):
    x = load_movielens("100k", data_dir)
    assert (x.num_interactions, x.num_users, x.num_items) == (100_000, 943, 1_682)
    assert x.timestamps is not None
    assert x.items.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]

    small = load_movielens("latest-small", data_dir)
    assert (small.num_interactions, small.num_users, small.num_items) == (100_836, 610, 9_724)
    assert 0.5 in set(small.matrix.data.tolist())
    assert small.timestamps is not None


def test_a_folder_that_is_not_the_release_asked_for_is_refused(tmp_path):
    write_ml100k(tmp_path / "ml-100k")
    with pytest.raises(
        ValueError,
        match=r"found 3 ratings by 2 users on 3 items, but ml-100k has 100,000 ratings .*"
        r"verify=False",
    ):
        load_movielens("100k", tmp_path)


def test_download_failure_names_the_url_and_data_dir(tmp_path, monkeypatch):
    import keras

    def offline(**kwargs):
        raise Exception(f"URL fetch failure on {kwargs['origin']}: None -- [Errno -3] no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(OSError) as error:
        load_movielens("1m", cache_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
    assert "`data_dir` (CLI: --data-dir)" in message


def test_a_damaged_cached_zip_is_removed_and_reported(tmp_path, monkeypatch):
    import keras

    source = tmp_path / "broken.zip"
    source.write_bytes(b"PK\x03\x04 truncated")
    monkeypatch.setattr(keras.utils, "get_file", FakeGetFile(source))
    cache = tmp_path / "keras_home"
    with pytest.raises(OSError, match="is damaged .*was removed; run again"):
        load_movielens("latest-small", cache_dir=cache)
    assert not (cache / "datasets" / "ml-latest-small.zip").exists()


@pytest.mark.realdata
def test_real_copies_of_another_release_or_with_altered_ratings_are_refused(data_dir, tmp_path):
    with pytest.raises(ValueError, match="found 100,836 ratings by 610 users .* ml-20m has"):
        load_movielens("20m", data_dir / "ml-latest-small")
    lines = (data_dir / "ml-100k" / "u.data").read_text().splitlines()
    for number in range(0, 10_000, 10):  # 1,000 ratings changed, counts unchanged
        user, item, rating, stamp = lines[number].split("\t")
        lines[number] = "\t".join((user, item, str(int(rating) % 5 + 1), stamp))
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="the counts match but the ratings differ"):
        load_movielens("100k", tmp_path)
    assert load_movielens("100k", tmp_path, verify=False).num_interactions == 100_000
