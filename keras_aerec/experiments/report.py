"""The benchmark report: the article's table as Markdown and JSON, and PNG plots."""

import json
import logging
import os

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

COLUMNS = ("rmse", "precision@100", "recall@100", "ndcg@100")


def _columns(results) -> list[str]:
    seen = []
    for result in results:
        for key in result.metrics:
            if key not in seen and key != "mae":
                seen.append(key)
    ordered = [key for key in COLUMNS if key in seen]
    return ordered + sorted(key for key in seen if key not in ordered)


def markdown_table(results) -> str:
    """The article's table: model, epochs, metrics, runtime."""
    columns = _columns(results)
    header = ["model", "protocol", "epochs", *columns, "runtime (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        cells = [result.model, result.protocol, str(result.epochs)]
        cells += [
            f"{result.metrics[column]:.4f}" if column in result.metrics else ""
            for column in columns
        ]
        cells.append(f"{result.seconds:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    results, output_dir: str, title: str = "keras-aerec benchmark", published=None
) -> list[str]:
    """Writes `report.md`, `results.json` and the PNG plots into `output_dir`.

    Args:
        results: `ModelResult`s.
        output_dir: created if needed.
        title: heading of the Markdown report.
        published: `{model: {metric: value}}` drawn beside ours in the metric plots (the
            article's ML-1M figures, `ARTICLE`, when the data and protocol are the article's).

    Returns:
        The paths written.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    json_path = os.path.join(output_dir, "results.json")
    with open(json_path, "w") as handle:
        json.dump({"title": title, "results": [r.to_dict() for r in results]}, handle, indent=2)
    paths.append(json_path)
    plots = _plots(results, output_dir, published)
    markdown_path = os.path.join(output_dir, "report.md")
    with open(markdown_path, "w") as handle:
        handle.write(f"# {title}\n\n{markdown_table(results)}\n\n")
        for result in results:
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
    trained = [result for result in results if result.history]
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
        rows = [result for result in results if result.kind == kind]
        if not rows:
            continue
        names = [m for m in metric_names if any(m in r.metrics for r in rows)] or sorted(
            rows[0].metrics
        )
        figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
        for axis, metric in zip(axes[0], names, strict=True):
            labels = [r.model for r in rows]
            ours = [r.metrics.get(metric, 0.0) for r in rows]
            positions = range(len(rows))
            if published:
                theirs = [published.get(r.model, {}).get(metric, 0.0) for r in rows]
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
