"""The benchmark report: the article's table as Markdown and JSON, and PNG plots."""

import datetime
import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile

logger = logging.getLogger("keras_aerec")

# The article's ML-1M figures (its own protocols; see ../shared/reference).
ARTICLE = {
    "i-autorec": {"rmse": 0.910},
    "deeprec": {"rmse": 0.931},
    "cdae": {"precision@100": 0.0894, "recall@100": 0.4137, "ndcg@100": 0.2528},
    "multvae": {"precision@100": 0.0886, "recall@100": 0.4115, "ndcg@100": 0.2508},
    "ease": {"precision@100": 0.0757, "recall@100": 0.4181, "ndcg@100": 0.2561},
    # Under the article's temporal protocol for SVAE (our row: "article, temporal split").
    "svae": {"precision@100": 0.0818, "recall@100": 0.5850, "ndcg@100": 0.3807},
}

# Published figures of the other protocols, each with its source and protocol.
PUBLISHED = {
    "recbole": (
        "RecBole ML-1M benchmark (ratings >= 3, 10-core, 8:1:1, full ranking)",
        {
            "ease": {"ndcg@10": 0.2865, "recall@10": 0.2139},
            "multvae": {"ndcg@10": 0.2523, "recall@10": 0.1995},
            "cdae": {"ndcg@10": 0.2500, "recall@10": 0.1936},
            "multdae": {"ndcg@10": 0.2425, "recall@10": 0.1972},
        },
    ),
    "temporal": (
        "Sachdeva et al. 2019, Table 2: full ML-1M (about 6k users), 1.5k held-out users",
        {
            "svae": {"ndcg@10": 0.1781, "ndcg@100": 0.2993, "recall@100": 0.4909},
            "multvae": {"ndcg@100": 0.2301, "recall@100": 0.4143},
        },
    ),
    "liang": (
        "Liang et al. 2018, Table 2: ML-20M (not ML-1M), same protocol",
        {
            "multvae": {"recall@20": 0.395, "recall@50": 0.537, "ndcg@100": 0.426},
            "multdae": {"recall@20": 0.387, "recall@50": 0.524, "ndcg@100": 0.419},
            "cdae": {"recall@20": 0.391, "recall@50": 0.523, "ndcg@100": 0.418},
            "ease": {"recall@20": 0.391, "recall@50": 0.521, "ndcg@100": 0.420},
        },
    ),
}
ARTICLE_SOURCE = "the article's repo: ML-1M, its own splits (SVAE: its temporal protocol)"

COLUMNS = ("rmse", "precision@100", "recall@100", "ndcg@100")

# The source files of each model family (besides the runner's), for staleness checks.
MODEL_SOURCES = {
    "i-autorec": ["keras_aerec/models/auto_rec.py", "keras_aerec/models/rating_autoencoder.py"],
    "u-autorec": ["keras_aerec/models/auto_rec.py", "keras_aerec/models/rating_autoencoder.py"],
    "deeprec": ["keras_aerec/models/deep_rec.py", "keras_aerec/models/rating_autoencoder.py"],
    "cdae": ["keras_aerec/models/cdae.py"],
    "multvae": ["keras_aerec/models/mult_vae.py"],
    "multdae": ["keras_aerec/models/mult_dae.py"],
    "svae": ["keras_aerec/models/svae.py", "keras_aerec/data/sequences.py"],
    "ease": ["keras_aerec/models/ease.py"],
}
# recipes.py is not listed: each figure carries its own recipe's fingerprint instead, so
# that tuning one model's recipe does not make every other figure stale.
RUNNER_SOURCES = [
    "keras_aerec/experiments/runner.py",
    "keras_aerec/experiments/training.py",
    "keras_aerec/data/splits.py",
]


def _columns(results) -> list[str]:
    seen = []
    for result in results:
        for key in result.metrics:
            if key not in seen and key != "mae":
                seen.append(key)
    ordered = [key for key in COLUMNS if key in seen]
    return ordered + sorted(key for key in seen if key not in ordered)


def group_by_model(results) -> list[list]:
    """The results of each (model, protocol), in order of first appearance, seeds within."""
    groups = {}
    for result in results:
        groups.setdefault((result.model, result.protocol), []).append(result)
    return list(groups.values())


def mean_sd(values) -> dict:
    """`{"mean", "sd"}` of `values`; sd is the sample standard deviation (0 for one value)."""
    values = [float(value) for value in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "sd": 0.0}
    variance = sum((value - mean) ** 2 for value in values) / (len(values) - 1)
    return {"mean": mean, "sd": variance**0.5}


def _cell(values, digits: int) -> str:
    summary = mean_sd(values)
    if len(values) < 2:
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {summary['sd']:.{digits}f}"


def _epochs_cell(values) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def markdown_table(results) -> str:
    """The article's table: one row per model, mean ± sd over its seeds."""
    columns = _columns(results)
    header = ["model", "protocol", "seeds", "best epoch", "epochs run", *columns, "runtime (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in group_by_model(results):
        first = group[0]
        cells = [
            first.model,
            first.protocol,
            " ".join(str(result.seed) for result in group),
            _epochs_cell([result.best_epoch for result in group]),
            _epochs_cell([result.epochs_run for result in group]),
        ]
        for column in columns:
            values = [r.metrics[column] for r in group if column in r.metrics]
            cells.append(_cell(values, 4) if values else "")
        cells.append(_cell([result.seconds for result in group], 1))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def published_figures(model: str, protocol: str, dataset: str) -> dict:
    """`{"value": {metric: figure} or None, "source": ...}` to print beside our figure."""
    if dataset in ("1m", "ml-1m") and protocol.startswith("article") and model in ARTICLE:
        return {"value": ARTICLE[model], "source": ARTICLE_SOURCE}
    if dataset in ("1m", "ml-1m") and protocol in PUBLISHED:
        source, figures = PUBLISHED[protocol]
        if model in figures:
            return {"value": figures[model], "source": source}
    return {"value": None, "source": None}


def figures(results, provenance: dict, dataset: str, command: str) -> list[dict]:
    """The results as `benchmarks/results/*.json` figures (see benchmarks/README.md).

    Args:
        results: `ModelResult`s (several seeds of a model make one figure).
        provenance: `{"commit", "date", "machine", "backend", "dtype_policy",
            "allocator"}` (see
            `provenance()`).
        dataset: the dataset's name as the CLI takes it (`1m`).
        command: the command line that made the results.
    """
    rows = []
    for group in group_by_model(results):
        first = group[0]
        metrics = {}
        for name in first.metrics:
            if all(name in result.metrics for result in group):
                metrics[name] = mean_sd([result.metrics[name] for result in group])
        metrics["fit_s"] = mean_sd([result.seconds for result in group])
        code = model_sources(first.model)
        loads = [result.load for result in group if result.load is not None]
        rows.append(
            {
                "section": f"{dataset}, {first.protocol} protocol",
                "what": first.model,
                "command": command,
                "code": code,
                "code_blobs": source_blobs(first.model),
                "commit": provenance["commit"],
                "date": provenance["date"],
                "machine": provenance["machine"],
                "load": round(sum(loads) / len(loads), 2) if loads else None,
                "backend": provenance["backend"],
                "dtype_policy": provenance.get("dtype_policy", "float32"),
                "allocator": provenance.get("allocator", "system"),
                "dataset": dataset,
                "protocol": first.protocol,
                "seeds": [result.seed for result in group],
                "metrics": metrics,
                "best_epoch": [result.best_epoch for result in group],
                "epochs_run": [result.epochs_run for result in group],
                "recipe": first.recipe,
                "published": published_figures(first.model, first.protocol, dataset),
                "notes": first.split.splitlines()[0] if first.split else "",
            }
        )
    return rows


def model_sources(model: str) -> list[str]:
    """The source files a figure of `model` goes stale with (the runner's and its own)."""
    return sorted({*RUNNER_SOURCES, *MODEL_SOURCES.get(model, [])})


def source_blobs(model: str) -> dict:
    """`{path: git blob id}` of `model_sources(model)`: changes whenever that code does."""
    return {path: _blob_sha(path) for path in model_sources(model)}


def _repository_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _blob_sha(path: str) -> str | None:
    """Git's blob id of a source file (what `git hash-object` prints), None if absent."""
    try:
        with open(os.path.join(_repository_root(), path), "rb") as handle:
            content = handle.read()
    except OSError:
        return None
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def commit_of(root: str) -> str | None:
    """The checkout's short commit, with `+modified` when the package's code (`keras_aerec/`)
    differs from it: a run of uncommitted code must not claim a commit that would not
    reproduce it. None outside a git checkout."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return None
        modified = git("diff", "--quiet", "HEAD", "--", "keras_aerec").returncode != 0
    except OSError:
        return None
    return head.stdout.strip() + ("+modified" if modified else "")


def provenance() -> dict:
    """Commit, date (UTC), machine and Keras backend of a run, for its figures."""
    import keras

    commit = commit_of(_repository_root())
    return {
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "backend": keras.backend.backend(),
        "dtype_policy": keras.config.dtype_policy().name,
        "allocator": allocator_mode(),
    }


def allocator_mode() -> str:
    """`"keep"` when `keras_aerec.allocator` keeps freed memory in this process, else
    `"system"` (glibc's default, or no glibc)."""
    from keras_aerec import allocator

    return "keep" if allocator.is_kept() else "system"


def machine() -> str:
    """A short description of this machine: cores, CPU model and its widest vector
    instructions, memory, GPU or not.

    The vector instructions are part of it because a cloud VM of the same name ("AMD EPYC")
    can come up on hosts with or without AVX-512: TensorFlow and torch ran Mult-VAE 2-3x
    slower, and bfloat16 matmuls ~60x slower, on this project's AVX2-only host than on its
    AVX512-BF16 one, so figures from the two must not be compared as one machine.
    """
    cpu, memory, flags = platform.processor() or platform.machine(), None, ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line.split(":", 1)[1]
                    break
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal"):
                    memory = int(line.split()[1]) / 2**20
                    break
    except OSError:
        pass
    extensions = vector_extensions(flags)
    cpu_text = f"{cpu} ({extensions})" if extensions else cpu
    gpu = "GPU" if os.path.exists("/dev/nvidia0") else "no GPU"
    memory_text = f", {memory:.0f} GiB" if memory else ""
    return f"{os.cpu_count()}-core {cpu_text}{memory_text}, {gpu}"


def vector_extensions(flags: str) -> str:
    """The widest x86 vector instructions in a `/proc/cpuinfo` flags line: "AVX512-BF16",
    "AVX512", "AVX2", "AVX" or "" (none of them, or not x86)."""
    present = set(flags.split())
    for flag, name in (
        ("avx512_bf16", "AVX512-BF16"),
        ("avx512f", "AVX512"),
        ("avx2", "AVX2"),
        ("avx", "AVX"),
    ):
        if flag in present:
            return name
    return ""


def single_run_figure(
    section: str,
    what: str,
    command: str,
    code: list[str],
    metrics: dict,
    *,
    load,
    dataset: str = "ml-1m",
    protocol: str = "article",
    seeds=(0,),
    notes: str = "",
    run_info: dict | None = None,
    **fields,
) -> dict:
    """One figure of a benchmark script (a single run per seed: every sd is 0).

    Args:
        section, what, command, code: where the figure goes in BENCHMARKS.md, what it
            measures, the command that reproduces it and the sources it goes stale with.
        metrics: `{name: number}` (rounded to 4 digits).
        load: the load average during the run.
        dataset, protocol, seeds: what it ran on.
        notes: one line for the reader.
        run_info: `provenance()` of the run (taken now when omitted).
        **fields: other keys, e.g. `backend` when a child process ran another one.

    Returns:
        The figure dict `save_figures` stores (see benchmarks/README.md).
    """
    return {
        "section": section,
        "what": what,
        "command": command,
        "code": list(code),
        **(provenance() if run_info is None else run_info),
        **fields,
        "load": None if load is None else round(load, 2),
        "dataset": dataset,
        "protocol": protocol,
        "seeds": list(seeds),
        "metrics": {name: {"mean": round(value, 4), "sd": 0.0} for name, value in metrics.items()},
        "published": {"value": None, "source": None},
        "notes": notes,
    }


def same_backend_and_what(figures: list[dict]):
    """A `save_figures` `replaces` predicate: an old figure goes when a new one has its
    backend and its `what` (a run on one backend keeps the others' figures)."""
    measured = {(figure.get("backend"), figure.get("what")) for figure in figures}
    return lambda old: (old.get("backend"), old.get("what")) in measured


def save_figures(path: str, title: str, figures: list[dict], replaces=None) -> str:
    """Writes `figures` into the results file `path` (`{"title", "figures"}`), keeping others.

    The figures already in `path` stay unless `replaces(old_figure)` is true (every one is
    replaced when `replaces` is None), so that a run on one backend or dataset does not
    erase another's. Other top-level keys of the file (an `intro`) are kept. The file is
    replaced atomically: an interrupted run leaves the previous figures, not half a file.

    Returns:
        `path`.
    """
    document = {"title": title, "figures": []}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    kept = [] if replaces is None else [old for old in document["figures"] if not replaces(old)]
    document.update(title=title, figures=kept + list(figures))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".figures-", suffix=".json", dir=directory)
    try:
        os.chmod(temporary, 0o644)  # mkstemp's 0o600 would make the results file private
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def command_line(argv=None) -> str:
    """The `keras-aerec` command of this process, with the backend and a portable data path."""
    import keras

    argv = list(sys.argv[1:] if argv is None else argv)
    for index, value in enumerate(argv[:-1]):
        if value == "--data-dir" and os.path.normpath(argv[index + 1]).endswith(
            os.path.join("shared", "data")
        ):
            argv[index + 1] = "../shared/data"  # the documented location, not this machine's
    return f"KERAS_BACKEND={keras.backend.backend()} " + shlex.join(["keras-aerec", *argv])


def write_report(
    results,
    output_dir: str,
    title: str = "keras-aerec benchmark",
    published=None,
    dataset: str | None = None,
    command: str | None = None,
) -> list[str]:
    """Writes `report.md`, `results.json` and the PNG plots into `output_dir`.

    `results.json` holds the figures in the format of `benchmarks/results/*.json` (mean
    and sd over seeds, command, commit, date, machine, load), from which
    `benchmarks/make_benchmarks_md.py` renders BENCHMARKS.md, and every seed's run.

    Args:
        results: `ModelResult`s.
        output_dir: created if needed.
        title: heading of the Markdown report.
        published: `{model: {metric: value}}` drawn beside ours in the metric plots (the
            article's ML-1M figures, `ARTICLE`, when the data and protocol are the article's).
        dataset: the dataset's name as the CLI takes it (`1m`), for the published figures.
        command: the command line of the run (default: this process's, `command_line()`).

    Returns:
        The paths written.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    json_path = os.path.join(output_dir, "results.json")
    rows = figures(results, provenance(), dataset or "", command or command_line())
    with open(json_path, "w") as handle:
        json.dump(
            {"title": title, "figures": rows, "results": [r.to_dict() for r in results]},
            handle,
            indent=1,
        )
    paths.append(json_path)
    plots = _plots(results, output_dir, published)
    markdown_path = os.path.join(output_dir, "report.md")
    with open(markdown_path, "w") as handle:
        handle.write(f"# {title}\n\n{markdown_table(results)}\n\n")
        for group in group_by_model(results):
            result = group[0]
            handle.write(
                f"- **{result.model}**: {result.split}; hyperparameters {result.hyperparameters}\n"
            )
        handle.write("\n")
        for plot in plots:
            handle.write(f"![{os.path.basename(plot)}]({os.path.basename(plot)})\n")
    paths.append(markdown_path)
    return paths + plots


def _plots(results, output_dir: str, published) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install 'keras-aerec[dev]')")
        return []
    paths = []
    # Curves of each model's first seed; bars of the mean over seeds.
    trained = [group[0] for group in group_by_model(results) if group[0].history]
    if trained:
        figure, axes = plt.subplots(1, len(trained), figsize=(4 * len(trained), 3.2), squeeze=False)
        for axis, result in zip(axes[0], trained, strict=True):
            axis.plot(result.history["loss"], label="training loss")
            axis.set_xlabel("epoch")
            axis.set_title(result.model)
            validation = [key for key in result.history if key.startswith("val_")]
            if validation:
                twin = axis.twinx()
                twin.plot(result.history[validation[0]], color="tab:orange", label=validation[0])
                twin.set_ylabel(validation[0], color="tab:orange")
            axis.legend(loc="upper right", fontsize="small")
        figure.tight_layout()
        path = os.path.join(output_dir, "learning_curves.png")
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    for kind, metric_names in (("rating", ("rmse",)), ("ranking", COLUMNS[1:])):
        rows = [group for group in group_by_model(results) if group[0].kind == kind]
        if not rows:
            continue
        names = [m for m in metric_names if any(m in r[0].metrics for r in rows)] or sorted(
            rows[0][0].metrics
        )
        figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
        for axis, metric in zip(axes[0], names, strict=True):
            labels = [r[0].model for r in rows]
            ours = [
                mean_sd([result.metrics.get(metric, 0.0) for result in r])["mean"] for r in rows
            ]
            positions = range(len(rows))
            if published:
                theirs = [published.get(r[0].model, {}).get(metric, 0.0) for r in rows]
                axis.bar([p - 0.2 for p in positions], ours, width=0.4, label="keras_aerec")
                axis.bar([p + 0.2 for p in positions], theirs, width=0.4, label="article")
            else:
                axis.bar(list(positions), ours, width=0.6, label="keras_aerec")
            axis.set_xticks(list(positions), labels, rotation=30, fontsize="small")
            axis.set_title(metric)
            axis.legend(fontsize="small")
        figure.tight_layout()
        path = os.path.join(output_dir, f"{kind}_metrics.png")
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths
