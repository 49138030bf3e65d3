"""What the `keras-aerec` subcommands share: argument types, data options, output folders.

This module imports no backend: `keras-aerec --help` answers without loading TensorFlow,
JAX or torch, so the model and protocol names are listed here (a test checks them against
`keras_aerec.experiments`) and everything heavy is imported inside the functions.
"""

import argparse
import logging
import math
import os
import re
import sys
import threading
import time

logger = logging.getLogger("keras_aerec")

DATASETS = ("synthetic", "100k", "1m", "10m", "20m", "latest-small")
MODEL_NAMES = (
    "cdae",
    "deeprec",
    "ease",
    "i-autorec",
    "multdae",
    "multvae",
    "svae",
    "u-autorec",
)
PROTOCOL_NAMES = ("article", "liang", "recbole", "temporal")
# `--dataset` when a run reads the user's own file (`--data-file`).
OWN_DATA = "file"
DATA_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


class CommandError(Exception):
    """An error the CLI reports as one line and a non-zero exit code."""


def quiet_backends(debug: bool = False) -> None:
    """Silences TensorFlow's C++ start-up and graph-optimiser lines; call before any import.

    Level 3 also hides the `E0000 ... tfg_optimizer ... empty op name` line TensorFlow
    logs (harmlessly) while tracing CDAE; `--debug` keeps every line. A value the user
    set in the environment wins.
    """
    if debug:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "3")


def configure_logging(quiet: bool) -> None:
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


# ------------------------------------------------------------------ argument types


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    return _integer(value, minimum=1, expected="a positive integer")


def non_negative_int(value: str) -> int:
    """argparse type: an integer >= 0 (seeds)."""
    return _integer(value, minimum=0, expected="a non-negative integer")


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"should be a finite number > 0, got {value!r}")
    return number


def finite_float(value: str) -> float:
    """argparse type: a finite number."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"should be a finite number, got {value!r}")
    return number


def _integer(value: str, minimum: int, expected: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    # Seeds and counts past int64 fail deep inside numpy; refuse them here.
    if number is None or number < minimum or number >= 2**63:
        raise argparse.ArgumentTypeError(f"should be {expected}, got {value!r}")
    return number


def dataset_name(value: str) -> str:
    name = value.lower().removeprefix("ml-")
    if name not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {value!r}; valid: {', '.join(DATASETS)} (ml- prefix optional)"
        )
    return name


def _columns(value: str) -> tuple:
    columns = tuple(name.strip() for name in value.split(","))
    unknown = [name for name in columns if name not in DATA_COLUMNS and name != "_"]
    if unknown or not {"user_id", "item_id"} <= set(columns) or len(set(columns)) != len(columns):
        raise argparse.ArgumentTypeError(
            f"should be distinct names among {', '.join(DATA_COLUMNS)} (or _ for a field to "
            f"skip) including user_id and item_id, got {value!r}"
        )
    return columns


def _separator(value: str) -> str:
    # `--sep '\t'` arrives as backslash-t from most shells.
    value = {"\\t": "\t", "tab": "\t", "space": " "}.get(value, value)
    if not value or "\n" in value or "\r" in value:
        raise argparse.ArgumentTypeError(f"should be a non-empty separator, got {value!r}")
    return value


# ------------------------------------------------------------------ shared options


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error and the backends' log lines",
    )


DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def add_dtype_policy_argument(parser: argparse.ArgumentParser) -> None:
    """`--dtype-policy`: Keras' global dtype policy for the models the command builds."""
    parser.add_argument(
        "--dtype-policy",
        choices=DTYPE_POLICIES,
        default="float32",
        help="Keras dtype policy of the models: mixed_bfloat16 computes in bfloat16 with "
        "float32 weights and losses (about 2x the matmul speed on CPUs with AVX512-BF16, "
        "on TensorFlow and torch), mixed_float16 for GPUs (default: float32)",
    )


def apply_dtype_policy(args) -> None:
    """Sets Keras' global dtype policy from `--dtype-policy` (before any model is built)."""
    import keras

    keras.config.set_dtype_policy(args.dtype_policy)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """The positional MODEL argument, one of the benchmark recipes' names."""
    parser.add_argument("model", choices=MODEL_NAMES, metavar="MODEL", help=", ".join(MODEL_NAMES))


def add_protocol_argument(parser, default="article", help_text=None) -> None:
    parser.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        default=default,
        help=(help_text or "evaluation protocol: split, metrics and epoch selection")
        + f" ({', '.join(PROTOCOL_NAMES)}; default: {default})",
    )


def add_seed_argument(parser) -> None:
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the split, the synthetic data and the initialisation (default: 0)",
    )


def add_data_arguments(parser: argparse.ArgumentParser, overrides: bool = False) -> None:
    """`--dataset`, `--data-dir` and the own-data options (`--data-file`, `--sep`, ...).

    With `overrides` (evaluate, recommend), every default is "the one the model was
    trained on".
    """
    trained = "the one the model was trained on"
    parser.add_argument(
        "--dataset",
        type=dataset_name,
        default=None,
        help=f"one of {', '.join(DATASETS)} (default: "
        + (trained if overrides else "1m when --data-dir is given, else synthetic")
        + ")",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="local MovieLens folder (the one holding ml-1m/, or ml-1m/ itself); "
        + ("default: " + trained if overrides else "downloaded from GroupLens when omitted"),
    )
    own = parser.add_argument_group(
        "own data", "a ratings or interactions file of your own instead of MovieLens"
    )
    own.add_argument(
        "--data-file",
        default=None,
        metavar="PATH",
        help="delimited text file, one interaction per line"
        + (f" (default: {trained})" if overrides else ""),
    )
    own.add_argument(
        "--sep",
        type=_separator,
        default=None,
        help="field separator of --data-file: ',', '::', '\\t', ... (default: ,)",
    )
    own.add_argument(
        "--columns",
        type=_columns,
        default=None,
        help="field names of --data-file in order, among user_id, item_id, rating, "
        "timestamp (_ skips a field) (default: user_id,item_id,rating)",
    )
    header = own.add_mutually_exclusive_group()
    header.add_argument(
        "--header",
        dest="header",
        action="store_true",
        default=None,
        help="the first line of --data-file names the fields (skipped)",
    )
    header.add_argument(
        "--no-header", dest="header", action="store_false", help="no header line (default)"
    )
    positives = own.add_mutually_exclusive_group()
    positives.add_argument(
        "--implicit",
        action="store_true",
        default=None,
        help="every line is a positive interaction (a listening log, bookmarks); "
        "rating models cannot train on it",
    )
    positives.add_argument(
        "--threshold",
        type=finite_float,
        default=None,
        help="ratings above this value are the positives of the top-N protocols "
        "(default: the protocol's MovieLens rule: > 3, or >= 3 under recbole)",
    )


def resolve_data_arguments(args) -> None:
    """Fills `args.dataset` from the one rule and checks the own-data options.

    The rule, for train, benchmark and tune: `--data-file` reads the user's file,
    `--data-dir` without `--dataset` means ML-1M, otherwise the synthetic data.
    """
    own = getattr(args, "data_file", None) is not None
    format_options = [
        f"--{name.replace('_', '-')}"
        for name in ("sep", "columns", "header", "implicit", "threshold")
        if getattr(args, name, None) is not None
    ]
    if own and args.dataset is not None:
        raise CommandError("give either --dataset or --data-file, not both")
    if own and args.data_dir is not None:
        raise CommandError("give either --data-dir or --data-file, not both")
    if format_options and not own:
        raise CommandError(
            f"{', '.join(format_options)} only apply to --data-file, which is missing"
        )
    if own:
        args.dataset = OWN_DATA
    elif args.dataset is None:
        args.dataset = "1m" if args.data_dir else "synthetic"


def data_source(args) -> dict:
    """How to load the data of `args` again: the record `train` keeps in the model file."""
    if args.dataset != OWN_DATA:
        return {
            "dataset": args.dataset,
            "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
        }
    return {
        "dataset": OWN_DATA,
        "data_file": os.path.abspath(args.data_file),
        "sep": args.sep or ",",
        "columns": list(args.columns or ("user_id", "item_id", "rating")),
        "header": bool(args.header),
        "implicit": bool(args.implicit),
        "threshold": args.threshold,
    }


def load_interactions(source: dict, seed: int, require_timestamps: bool = False):
    """The `Interactions` a `data_source` record describes."""
    if source["dataset"] == OWN_DATA:
        return _read_own_data(source, require_timestamps)
    if source["dataset"] == "synthetic":
        from keras_aerec.data.synthetic import synthetic

        return synthetic(seed=seed)
    from keras_aerec.data.movielens import load_movielens

    return load_movielens(
        source["dataset"], data_dir=source.get("data_dir"), require_timestamps=require_timestamps
    )


def _read_own_data(source: dict, require_timestamps: bool):
    from keras_aerec.data.io import read_ratings

    path = source["data_file"]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} not found")
    columns = tuple(
        name if name != "_" else f"skipped_{index}" for index, name in enumerate(source["columns"])
    )
    if require_timestamps and "timestamp" not in columns:
        raise CommandError(
            f"this model or protocol orders interactions by time: give --columns with a "
            f"timestamp field for {path!r}"
        )
    if not source["implicit"] and "rating" not in columns:
        raise CommandError(
            f"{path!r} has no rating column: pass --implicit (every line is a positive) "
            "or name the rating field in --columns"
        )
    return read_ratings(
        path,
        sep=source["sep"],
        columns=columns,
        header="infer" if source["header"] else None,
        implicit=source["implicit"],
        id_dtype=str,
        name=os.path.basename(path),
    )


def positives_threshold(source: dict):
    """The threshold the top-N protocols apply to the data (None: their MovieLens rule)."""
    if source["dataset"] != OWN_DATA:
        return None
    # Implicit interactions are all 1.0: every one is a positive.
    return 0.0 if source["implicit"] else source["threshold"]


# ------------------------------------------------------------------ output


def writable_directory(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot create output directory {path!r}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise CommandError(f"output directory {path!r} is not writable")
    return path


REPORT_FILES = ("report.md", "results.json")


def report_directory(output_dir: str | None, label: str, overwrite: bool) -> str:
    """The folder a benchmark or demo report goes to.

    Default: a new `reports/<label>-<date>-<time>/` (not created yet: pass it to
    `writable_directory` before writing), so runs never overwrite each other.
    An explicit `--output-dir` that holds a report is refused unless `overwrite`, which
    first removes the old report's files (a stale plot would otherwise stay beside it).
    """
    if output_dir is None:
        # Created when the report is written: a run that fails leaves no empty folder.
        stamp = time.strftime("%Y%m%d-%H%M%S")
        output_dir = os.path.join("reports", f"{label}-{stamp}")
        suffix = 1
        while os.path.exists(output_dir):
            suffix += 1
            output_dir = os.path.join("reports", f"{label}-{stamp}-{suffix}")
        return output_dir
    if os.path.isdir(output_dir):
        previous = [
            name
            for name in sorted(os.listdir(output_dir))
            if name in REPORT_FILES or name.endswith(".png")
        ]
        if previous and not overwrite:
            raise CommandError(
                f"{output_dir!r} already holds a report ({', '.join(previous)}); pass "
                "--overwrite to replace it, or omit --output-dir for a new folder"
            )
        for name in previous:
            os.remove(os.path.join(output_dir, name))
    return writable_directory(output_dir)


def verbosity(args):
    """Keras progress bars on a terminal, one line per epoch otherwise, none with --quiet."""
    if args.quiet:
        return 0
    return "auto" if sys.stdout.isatty() else 2


# ------------------------------------------------------------------ backend noise on stderr

# Lines TensorFlow's C++ runtime writes straight to file descriptor 2 whatever
# TF_CPP_MIN_LOG_LEVEL says (TensorFlow 2.21 logs them before absl is initialised), and
# the harmless `tfg_optimizer ... empty op name` error it logs while tracing CDAE.
_BACKEND_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    rb"|E\d{4} [\d:.]+ +\d+ \S*(tfg_optimizer|meta_optimizer)\S*:\d+\] "
    rb"|To enable the following instructions: )"
)


class BackendNoiseFilter:
    """Drops the backends' start-up lines from file descriptor 2 (where C++ code writes).

    The descriptor is replaced by a pipe whose reader thread forwards every other line to
    the real stderr, in order. `stop()` restores the descriptor.
    """

    def __init__(self):
        self._original = None
        self._thread = None

    def start(self) -> None:
        sys.stderr.flush()
        self._original = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self._thread.start()

    def _pump(self, read) -> None:
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                if not _BACKEND_NOISE.match(line):
                    os.write(self._original, line)

    def stop(self) -> None:
        if self._original is None:
            return
        sys.stderr.flush()
        os.dup2(self._original, 2)  # closes the pipe's last writer: the reader ends
        self._thread.join(timeout=2)
        os.close(self._original)
        self._original = None
