"""An image study's output files, written from its `ImageStudySummary` alone, all or nothing.

``results.json`` (the summary and the mean curves), ``results.csv`` (one row per method and metric),
``per_image.csv`` (every image's score per method and metric), ``table.md`` (methods × metrics: mean
and 95 % interval, with the Wilcoxon p-value against rollout) and ``curves.png`` (the mean
perturbation, deletion and insertion curves of every method).
"""

from __future__ import annotations

from pathlib import Path

from attnlens.experiments.image_study import LOWER_IS_BETTER, ImageStudySummary
from attnlens.experiments.outputs import write_atomically, write_csv, write_json

IMAGE_STUDY_FILES = ("results.json", "results.csv", "per_image.csv", "table.md", "curves.png")
_TITLES = {"positive": "positive perturbation (accuracy; lower is better)",
           "negative": "negative perturbation (accuracy; higher is better)",
           "deletion": "deletion (probability; lower is better)",
           "insertion": "insertion (probability; higher is better)"}


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    if value != value:  # NaN: no differing pairs
        return "n/a"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def image_study_markdown(summary: ImageStudySummary) -> str:
    """The methods × metrics table as markdown: ``mean [low, high]`` and ``p=`` against rollout."""
    settings = summary.settings
    head = ["method"] + [f"{m} {'↓' if m in LOWER_IS_BETTER else '↑'}" for m in summary.metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in summary.methods:
        cells = [method]
        for metric in summary.metrics:
            entry = summary.table[method][metric]
            text = f"{entry.mean:.3f} [{entry.ci95[0]:.3f}, {entry.ci95[1]:.3f}]"
            if entry.wilcoxon_p_vs_rollout is not None:
                text += f" p={_p(entry.wilcoxon_p_vs_rollout)}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    title = (f"Image study of {summary.model} on {summary.n_images} images (accuracy {summary.accuracy:.4f}): mean "
             f"per-image score [bootstrap 95 % interval of the mean] and the Wilcoxon signed-rank p-value against "
             f"rollout; perturbation by {settings.get('perturb')}, deletion/insertion baseline "
             f"{settings.get('baseline')} in {settings.get('steps')} steps, pointing tolerance "
             f"{settings.get('tolerance'):g} px; `random` is a seeded uniformly random map.")
    return title + "\n\n" + "\n".join(lines) + "\n"


def _write_png(summary: ImageStudySummary, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    kinds = [k for k in ("positive", "negative", "deletion", "insertion") if k in summary.curves]
    columns = max(1, min(2, len(kinds)))
    rows = max(1, (len(kinds) + 1) // 2)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    for axis in axes.flat[len(kinds):]:
        axis.set_visible(False)
    if not kinds:
        axes[0, 0].set_visible(True)
        axes[0, 0].text(0.5, 0.5, "no curve metric chosen", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for axis, kind in zip(axes.flat, kinds):
        x = summary.fractions[kind]
        for method in summary.methods:
            style = {"color": "0.5", "linestyle": "--"} if method == "random" else {}
            axis.plot(x, summary.curves[kind][method], marker=".", label=method, **style)
        axis.set_title(_TITLES[kind], fontsize=10)
        axis.set_xlabel("fraction of patches " + ("inserted" if kind == "insertion" else "removed"))
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    if kinds:
        axes.flat[0].legend(fontsize=8)
    figure.suptitle(f"{summary.model}: {summary.n_images} images", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _report(summary: ImageStudySummary, curves_png: Path) -> str:
    """A self-contained ``report.html``: the sortable methods × metrics table and the mean curves."""
    from attnlens.viz.report import report_page  # noqa: PLC0415

    header = ["method"] + [f"{metric} {part}" for metric in summary.metrics for part in ("mean", "p vs rollout")]
    rows = [[method] + [value for metric in summary.metrics for value in (
        summary.table[method][metric].mean,
        float("nan") if summary.table[method][metric].wilcoxon_p_vs_rollout is None
        else summary.table[method][metric].wilcoxon_p_vs_rollout)] for method in summary.methods]
    intervals = [[method] + [f"{e.mean:.4g} [{e.ci95[0]:.4g}, {e.ci95[1]:.4g}]" for e in
                             (summary.table[method][metric] for metric in summary.metrics)]
                 for method in summary.methods]
    intro = (f"{summary.n_images} images, model {summary.model}, accuracy {summary.accuracy:.4f}. Lower is better for "
             f"{', '.join(m for m in summary.metrics if m in LOWER_IS_BETTER) or 'none'}; higher for the rest. Click a "
             f"column to sort.")
    return report_page(f"attnlens image study: {summary.model}", intro=intro,
                       tables=[("Mean and Wilcoxon p against rollout", header, rows),
                               ("Mean [bootstrap 95 % interval]", ["method", *summary.metrics], intervals)],
                       images=[("Mean curves", curves_png.read_bytes())])


def write_image_study(summary: ImageStudySummary, out_dir: str | Path, *, report: bool = False) -> Path:
    """Write :data:`IMAGE_STUDY_FILES` into `out_dir` (new or empty), atomically; with `report` also
    ``report.html`` (one self-contained page: the sortable table and the curves).

    Raises:
        ValueError: when `out_dir` holds files or cannot be created.
    """

    def fill(staging: Path) -> None:
        write_json(summary.to_json(), staging / "results.json")
        rows = [[method, metric, entry.mean, entry.ci95[0], entry.ci95[1], entry.median, entry.count,
                 "" if entry.wilcoxon_p_vs_rollout is None else entry.wilcoxon_p_vs_rollout]
                for method in summary.methods for metric, entry in summary.table[method].items()]
        write_csv(["method", "metric", "mean", "ci95_low", "ci95_high", "median", "count", "wilcoxon_p_vs_rollout"],
                  rows, staging / "results.csv")
        scores = summary.scores
        header = ["image", "label", "predicted"] + [f"{method}:{metric}" for method in scores.methods
                                                   for metric in scores.metrics]
        per_image = [[identifier, int(label), int(predicted), *values.reshape(-1).tolist()]
                     for identifier, label, predicted, values in zip(scores.ids, scores.labels, scores.predictions,
                                                                     scores.scores)]
        write_csv(header, per_image, staging / "per_image.csv")
        (staging / "table.md").write_text(image_study_markdown(summary), encoding="utf-8")
        _write_png(summary, staging / "curves.png")
        if report:
            (staging / "report.html").write_text(_report(summary, staging / "curves.png"), encoding="utf-8")

    return write_atomically(out_dir, fill)


__all__ = ["IMAGE_STUDY_FILES", "image_study_markdown", "write_image_study"]
