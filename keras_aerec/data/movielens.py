"""MovieLens loaders: a local copy, the Keras cache, or a verified GroupLens download."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable

import numpy as np
import pandas as pd

from keras_aerec.data.interactions import Interactions
from keras_aerec.data.io import file_digest, read_ratings

logger = logging.getLogger("keras_aerec.data")

BASE_URL = "https://files.grouplens.org/datasets/movielens/"

# The shared ML-1M copy of this project has no full `ratings.dat`: every rating without
# timestamps, plus the official (timestamped) lines of users 1..2999.
ML1M_NO_TIMESTAMPS = "ratings_no_timestamp.dat"
ML1M_PARTIAL_TIMESTAMPS = "ratings_users0001-2999_with_timestamps.dat"


@dataclasses.dataclass(frozen=True)
class _Variant:
    archive: str  # zip file name on files.grouplens.org
    folders: tuple[str, ...]  # folder names the zip (or a local copy) may use
    md5: str | None  # published md5 of the zip; None: not fixed, check skipped
    ratings: tuple[str, ...]  # ratings file names, in order of preference

    @property
    def url(self) -> str:
        return BASE_URL + self.archive


# md5 sums as published by GroupLens (`<archive>.md5`). ml-latest-small is refreshed
# from time to time, so it has no fixed checksum and its check is skipped.
_VARIANTS = {
    "100k": _Variant("ml-100k.zip", ("ml-100k",), "0e33842e24a9c977be4e0107933c0723", ("u.data",)),
    "1m": _Variant(
        "ml-1m.zip",
        ("ml-1m",),
        "c4d9eecfca2ab87c1945afe126590906",
        ("ratings.dat", ML1M_NO_TIMESTAMPS, ML1M_PARTIAL_TIMESTAMPS),
    ),
    "10m": _Variant(
        "ml-10m.zip", ("ml-10M100K", "ml-10m"), "ce571fd55effeba0271552578f2648bd", ("ratings.dat",)
    ),
    "20m": _Variant(
        "ml-20m.zip", ("ml-20m",), "cd245b17a1ae2cc31bb14903e1204af3", ("ratings.csv",)
    ),
    "latest-small": _Variant("ml-latest-small.zip", ("ml-latest-small",), None, ("ratings.csv",)),
}


@dataclasses.dataclass(frozen=True)
class _Release:
    """The contents of a published ratings file: counts and a fingerprint (or None)."""

    num_ratings: int
    num_users: int
    num_items: int
    fingerprint: str | None


# Published counts (each release's README); fingerprints (`ratings_fingerprint`) were
# computed from verified copies. ML-1M's second entry is the official ratings.dat cut
# after user 2999 (the timestamped file of copies without a full ratings.dat).
_RELEASES = {
    "100k": (
        _Release(
            100_000, 943, 1_682, "ec89512680fc2f268a1067b0c30470766ffc0ce056688df6b14c710bc6deaf24"
        ),
    ),
    "1m": (
        _Release(
            1_000_209,
            6_040,
            3_706,
            "e15c93d7e8a225663d39d2794c16fc7dded828ae856cf866c70336ecba6238a7",
        ),
        _Release(
            487_650,
            2_999,
            3_615,
            "b147378c7490a7c15418276a6fe1ed4739d1be6087c0f99129c72b210de9872c",
        ),
    ),
    "10m": (_Release(10_000_054, 69_878, 10_677, None),),
    "20m": (_Release(20_000_263, 138_493, 26_744, None),),
}
# ml-latest-small is refreshed over time (100,836 ratings in its 2018 version): only its
# size is checked, so that a folder of a large release is not taken for it.
_LATEST_SMALL_MAX_RATINGS = 1_000_000


def ratings_fingerprint(interactions: Interactions) -> str:
    """sha256 of the ratings (ids, CSR structure, values), independent of file layout."""
    digest = hashlib.sha256()
    matrix = interactions.matrix
    for values, dtype in (
        (interactions.user_ids, "int64"),
        (interactions.item_ids, "int64"),
        (matrix.indptr, "int64"),
        (matrix.indices, "int64"),
        (matrix.data, "float32"),
    ):
        digest.update(np.ascontiguousarray(values, dtype=dtype).tobytes())
    return digest.hexdigest()


def _verify(variant: str, folder: str, ratings: Interactions) -> None:
    """Refuses a copy that is not the release asked for (counts, then fingerprint)."""
    found = (
        f"{ratings.num_interactions:,} ratings by {ratings.num_users:,} users on "
        f"{ratings.num_items:,} items"
    )
    hint = "pass verify=False (CLI: a ratings file) to load a modified copy on purpose"
    if variant == "latest-small":
        if ratings.num_interactions > _LATEST_SMALL_MAX_RATINGS:
            raise ValueError(
                f"MovieLens 'latest-small' at {folder!r}: found {found}, but ml-latest-small "
                f"has about 100,000 ratings: this folder holds another release; {hint}."
            )
        return
    releases = _RELEASES[variant]
    counts = (ratings.num_interactions, ratings.num_users, ratings.num_items)
    release = next(
        (r for r in releases if (r.num_ratings, r.num_users, r.num_items) == counts), None
    )
    if release is None:
        expected = " or ".join(
            f"{r.num_ratings:,} ratings by {r.num_users:,} users on {r.num_items:,} items"
            for r in releases
        )
        raise ValueError(
            f"MovieLens {variant!r} at {folder!r}: found {found}, but ml-{variant} has "
            f"{expected}: this folder holds another dataset or a modified copy; {hint}."
        )
    if release.fingerprint is not None:
        fingerprint = ratings_fingerprint(ratings)
        if fingerprint != release.fingerprint:
            raise ValueError(
                f"MovieLens {variant!r} at {folder!r}: the counts match but the ratings "
                f"differ from the published release (fingerprint {fingerprint[:12]}..., "
                f"expected {release.fingerprint[:12]}...): a modified copy; {hint}."
            )


def load_movielens(
    variant: str,
    data_dir: str | os.PathLike | None = None,
    *,
    require_timestamps: bool = False,
    cache_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> Interactions:
    """Loads a MovieLens release as explicit-rating `Interactions` with item metadata.

    With `data_dir`, the local copy is used (never downloaded): either the folder that
    contains `ml-1m/`, `ml-100k/`, ... or the dataset folder itself. Without it, the
    Keras cache (`~/.keras/datasets`, or `cache_dir/datasets`) is searched and, when the
    release is absent, the official GroupLens zip is downloaded with
    `keras.utils.get_file`, its md5 is checked against the published sum (not for
    `"latest-small"`, whose zip is refreshed over time) and it is extracted there.

    ML-1M copies without a full `ratings.dat` (`ratings_no_timestamp.dat` with all
    ratings and `ratings_users0001-2999_with_timestamps.dat` with the official lines of
    users 1..2999) are supported: by default all 1,000,209 ratings are loaded without
    timestamps; `require_timestamps=True` loads only the timestamped users.

    Args:
        variant: one of `"100k"`, `"1m"`, `"10m"`, `"20m"`, `"latest-small"`.
        data_dir: optional local folder holding the release.
        require_timestamps: if True, the result must have timestamps (for ML-1M copies
            without a full `ratings.dat`, only the timestamped users are loaded).
        cache_dir: Keras cache root used when `data_dir` is None (default `~/.keras`,
            or `$KERAS_HOME`).
        verify: check that the copy is the release asked for: its published counts of
            ratings, users and items and, for 100k and 1m, a fingerprint of the ratings
            (any layout of the same ratings passes). A copy that fails is refused with a
            ValueError; `verify=False` loads a modified copy on purpose.

    Returns:
        `Interactions` named like the release (`"ml-1m"`, ...), with `.items` holding
        `title` and `genres` (a list of genre names) indexed by movie id.

    Example:

    >>> ratings = load_movielens("1m", "../shared/data")  # doctest: +SKIP
    >>> ratings.num_users, ratings.num_items, ratings.num_interactions  # doctest: +SKIP
    (6040, 3706, 1000209)
    """
    if variant not in _VARIANTS:
        raise ValueError(
            f"`variant` should be one of {list(_VARIANTS)}. Received: variant={variant!r}"
        )
    spec = _VARIANTS[variant]
    if data_dir is not None:
        folder = _find_folder(spec, [os.fspath(data_dir)])
        if folder is None:
            raise ValueError(_missing_message(variant, spec, os.fspath(data_dir)))
    else:
        datasets_dir = _cache_datasets_dir(cache_dir)
        folder = _find_folder(spec, [datasets_dir])
        if folder is None:
            folder = _download(variant, spec, cache_dir)
    logger.info("Loading MovieLens %s from %s", variant, folder)
    ratings = _LOADERS[variant](folder, require_timestamps)
    if verify:
        _verify(variant, folder, ratings)
    return ratings


# ------------------------------------------------------------------ locating a copy


def _find_folder(spec: _Variant, roots: list[str]) -> str | None:
    """The first of `root` or `root/<folder>` that holds one of the ratings files."""
    for root in roots:
        for candidate in (root, *(os.path.join(root, name) for name in spec.folders)):
            if any(os.path.isfile(os.path.join(candidate, f)) for f in spec.ratings):
                return candidate
    return None


def _missing_message(variant: str, spec: _Variant, data_dir: str) -> str:
    looked = [data_dir, *(os.path.join(data_dir, name) for name in spec.folders)]
    return (
        f"MovieLens {variant!r} not found: no ratings file ({' or '.join(spec.ratings)}) in "
        f"{' or '.join(repr(p) for p in looked)}. Pass the folder holding the unzipped "
        f"release ({spec.url}) or data_dir=None to download it."
    )


def _cache_datasets_dir(cache_dir) -> str:
    """`<keras home>/datasets`, resolved like `keras.utils.get_file` (without importing keras)."""
    if cache_dir is None:
        if "KERAS_HOME" in os.environ:
            cache_dir = os.environ["KERAS_HOME"]
        else:
            home = os.path.expanduser("~")
            cache_dir = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    return os.path.join(os.path.expanduser(os.fspath(cache_dir)), "datasets")


# ------------------------------------------------------------------ download


def _download(variant: str, spec: _Variant, cache_dir) -> str:
    import keras  # lazy: the data layer does not need keras otherwise

    try:
        archive = keras.utils.get_file(
            fname=spec.archive,
            origin=spec.url,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            cache_subdir="datasets",
        )
    except Exception as error:  # keras raises a bare Exception for URL and HTTP failures
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OSError(
            f"Could not download MovieLens {variant!r} from {spec.url} ({reason}). Without "
            "network access, download and unzip it elsewhere and pass its folder as "
            "`data_dir` (CLI: --data-dir)."
        ) from None
    if spec.md5 is not None:
        digest = file_digest(archive, "md5")
        if digest != spec.md5:
            os.remove(archive)
            raise ValueError(
                f"Downloaded {spec.url} has md5 {digest}, expected {spec.md5}; the file "
                f"{archive!r} was deleted. Retry, or download and unzip it yourself and "
                "pass `data_dir`."
            )
    else:
        logger.info("No published md5 for %s; checksum not verified.", spec.archive)
    datasets_dir = os.path.dirname(os.path.abspath(archive))
    try:
        _extract(archive, datasets_dir)
    except zipfile.BadZipFile as error:
        # A truncated or corrupt download in the cache would fail every later run.
        os.remove(archive)
        raise OSError(
            f"The archive {archive!r} of MovieLens {variant!r} is damaged ({error}) and was "
            f"removed; run again to download {spec.url} afresh, or pass a local copy as "
            "`data_dir` (CLI: --data-dir)."
        ) from None
    folder = _find_folder(spec, [datasets_dir])
    if folder is None:
        raise ValueError(
            f"Archive {archive!r} does not contain the expected MovieLens {variant!r} files "
            f"({' or '.join(spec.ratings)})."
        )
    return folder


def _extract(archive: str, destination: str) -> None:
    """Extracts a zip into `destination` atomically per top-level entry, refusing unsafe paths."""
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():
            if os.path.isabs(member) or ".." in member.replace("\\", "/").split("/"):
                raise ValueError(f"Archive {archive!r} has an unsafe member path: {member!r}")
        staging = tempfile.mkdtemp(prefix=".extract-", dir=destination)
        try:
            zipped.extractall(staging)
            for entry in os.listdir(staging):
                target = os.path.join(destination, entry)
                if not os.path.exists(target):
                    os.replace(os.path.join(staging, entry), target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------ per-release parsers


def _read_text(path: str, encodings: tuple[str, ...] = ("utf-8", "ISO-8859-1")) -> str:
    with open(path, "rb") as file:
        raw = file.read()
    for encoding in encodings[:-1]:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode(encodings[-1])


def _movies_dat(folder: str, encodings: tuple[str, ...]) -> pd.DataFrame | None:
    """`movies.dat`: MovieID::Title::Genres (genres separated by "|")."""
    path = os.path.join(folder, "movies.dat")
    if not os.path.isfile(path):
        logger.info("No movies.dat in %s; item metadata not loaded.", folder)
        return None
    ids, titles, genres = [], [], []
    for line in _read_text(path, encodings).splitlines():
        if not line.strip():
            continue
        movie_id, title, genre_field = line.split("::", 2)
        ids.append(int(movie_id))
        titles.append(title)
        genres.append(_split_genres(genre_field))
    return _items_frame(ids, titles, genres)


def _movies_csv(folder: str) -> pd.DataFrame | None:
    """`movies.csv`: movieId,title,genres with a header and quoted titles."""
    path = os.path.join(folder, "movies.csv")
    if not os.path.isfile(path):
        logger.info("No movies.csv in %s; item metadata not loaded.", folder)
        return None
    frame = pd.read_csv(io.StringIO(_read_text(path)), dtype={"title": str, "genres": str})
    return _items_frame(
        frame["movieId"].to_numpy(),
        frame["title"].tolist(),
        [_split_genres(g) for g in frame["genres"].fillna("")],
    )


def _u_item(folder: str) -> pd.DataFrame | None:
    """ML-100K `u.item` ("|"-separated; 19 binary genre flags named by `u.genre`)."""
    path = os.path.join(folder, "u.item")
    genre_path = os.path.join(folder, "u.genre")
    if not (os.path.isfile(path) and os.path.isfile(genre_path)):
        logger.info("No u.item/u.genre in %s; item metadata not loaded.", folder)
        return None
    names = {}
    for line in _read_text(genre_path, ("ISO-8859-1",)).splitlines():
        if line.strip():
            name, index = line.rsplit("|", 1)
            names[int(index)] = name
    genre_names = [names[i] for i in sorted(names)]
    ids, titles, genres = [], [], []
    for line in _read_text(path, ("ISO-8859-1",)).splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        flags = fields[-len(genre_names) :]
        ids.append(int(fields[0]))
        titles.append(fields[1])
        genres.append(
            [name for name, flag in zip(genre_names, flags, strict=True) if flag.strip() == "1"]
        )
    return _items_frame(ids, titles, genres)


def _split_genres(field: str) -> list[str]:
    field = field.strip()
    if not field or field == "(no genres listed)":
        return []
    return field.split("|")


def _items_frame(ids, titles, genres) -> pd.DataFrame:
    return pd.DataFrame(
        {"title": titles, "genres": genres}, index=pd.Index(ids, name="item_id", dtype="int64")
    )


def _load_100k(folder: str, require_timestamps: bool) -> Interactions:
    ratings = read_ratings(os.path.join(folder, "u.data"), sep="\t", name="ml-100k")
    return _with_items(ratings, _u_item(folder))


def _load_1m(folder: str, require_timestamps: bool) -> Interactions:
    full = os.path.join(folder, "ratings.dat")
    if os.path.isfile(full):
        ratings = read_ratings(full, sep="::", name="ml-1m")
    elif require_timestamps:
        path = os.path.join(folder, ML1M_PARTIAL_TIMESTAMPS)
        if not os.path.isfile(path):
            raise ValueError(
                f"MovieLens '1m' with require_timestamps=True needs ratings.dat or "
                f"{ML1M_PARTIAL_TIMESTAMPS} in {folder!r}; neither exists."
            )
        ratings = read_ratings(path, sep="::", name="ml-1m")
        logger.info(
            "%s has no ratings.dat: loaded only the timestamped users (%d ratings, %d users).",
            folder,
            ratings.num_interactions,
            ratings.num_users,
        )
    else:
        path = os.path.join(folder, ML1M_NO_TIMESTAMPS)
        if not os.path.isfile(path):
            raise ValueError(
                f"MovieLens '1m' needs ratings.dat or {ML1M_NO_TIMESTAMPS} in {folder!r}; "
                f"neither exists (only {ML1M_PARTIAL_TIMESTAMPS} may be loaded, with "
                "require_timestamps=True)."
            )
        ratings = read_ratings(
            path, sep="::", columns=("user_id", "item_id", "rating"), name="ml-1m"
        )
        logger.info(
            "%s has no ratings.dat: loaded all ratings without timestamps; only part of "
            "them have timestamps (%s; use require_timestamps=True).",
            folder,
            ML1M_PARTIAL_TIMESTAMPS,
        )
    return _with_items(ratings, _movies_dat(folder, ("ISO-8859-1",)))


def _load_10m(folder: str, require_timestamps: bool) -> Interactions:
    ratings = read_ratings(os.path.join(folder, "ratings.dat"), sep="::", name="ml-10m")
    return _with_items(ratings, _movies_dat(folder, ("utf-8", "ISO-8859-1")))


def _csv_loader(name: str) -> Callable[[str, bool], Interactions]:
    def load(folder: str, require_timestamps: bool) -> Interactions:
        ratings = read_ratings(
            os.path.join(folder, "ratings.csv"), sep=",", header="infer", name=name
        )
        return _with_items(ratings, _movies_csv(folder))

    return load


def _with_items(ratings: Interactions, items: pd.DataFrame | None) -> Interactions:
    return Interactions(
        ratings.matrix,
        ratings.user_ids,
        ratings.item_ids,
        timestamps=ratings.timestamps,
        items=items,
        name=ratings.name,
    )


_LOADERS: dict[str, Callable[[str, bool], Interactions]] = {
    "100k": _load_100k,
    "1m": _load_1m,
    "10m": _load_10m,
    "20m": _csv_loader("ml-20m"),
    "latest-small": _csv_loader("ml-latest-small"),
}
