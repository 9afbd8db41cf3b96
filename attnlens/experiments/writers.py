"""A study's output files, written from its `StudySummary` alone, all or nothing.

``results.json`` (the summary), ``results.csv`` (one row per method and layer), ``per_example.csv``
(every example with its ρ per method and layer), ``table.md`` (medians per layer and clarity) and
``layers.png`` (median per layer with the 95 % interval shaded).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from attnlens.experiments.outputs import write_atomically, write_csv, write_json
from attnlens.experiments.study_summary import StudySummary

OUTPUT_FILES = ("results.json", "results.csv", "per_example.csv", "table.md", "layers.png")


def write_results_json(summary: StudySummary, folder: Path) -> None:
    """``results.json``: the whole summary."""
    write_json(summary.to_json(), folder / "results.json")


def write_results_csv(summary: StudySummary, folder: Path) -> None:
    """``results.csv``: one row per method and layer."""
    rows = []
    for entry in summary.methods:
        for layer in range(summary.num_layers):
            rows.append([entry.name, layer + 1, entry.median[layer], entry.mean[layer], entry.std[layer],
                         entry.ci95[layer][0], entry.ci95[layer][1], entry.count[layer],
                         "" if entry.ratio_to_rollout is None else entry.ratio_to_rollout[layer],
                         "" if entry.wilcoxon_p_vs_rollout is None else entry.wilcoxon_p_vs_rollout[layer],
                         entry.entropy_median[layer], entry.gini_median[layer]])
    write_csv(["method", "layer", "median", "mean", "std", "ci95_low", "ci95_high", "count", "ratio_to_rollout",
               "wilcoxon_p_vs_rollout", "entropy_median", "gini_median"], rows, folder / "results.csv")


def write_per_example_csv(summary: StudySummary, folder: Path) -> None:
    """``per_example.csv``: every example (index, id, tokens, gold, prediction, text) and its ρ per
    method and layer."""
    header = ["example", "id", "tokens", "gold", "predicted", "sentence"] + [
        f"{entry.name}@L{layer + 1}" for entry in summary.methods for layer in range(summary.num_layers)]
    rows = [[row.index, row.id, row.tokens, "" if row.label < 0 else row.label, row.prediction, row.text,
             *row.spearman] for row in summary.examples]
    write_csv(header, rows, folder / "per_example.csv")


def _reference_text(settings: dict) -> str:
    """What the methods were correlated with, in words."""
    reference = settings.get("reference", "gradient") or "gradient"
    if reference != "gradient":
        return f"|{reference}| reference attributions"
    return (f"input-gradient saliency ({settings.get('saliency', 'sum_abs')} at "
            f"{settings.get('saliency_at', 'layer_input')})")


def write_table_md(summary: StudySummary, folder: Path) -> None:
    """``table.md``: median ρ per layer, then the clarity of the relevance maps."""
    from attnlens.viz.tables import clarity_rows, markdown_table, study_rows  # noqa: PLC0415

    settings = summary.settings
    head, rows = study_rows(summary.method_dicts())
    title = (f"{summary.title}, {summary.n_examples} examples, model {summary.model}, accuracy "
             f"{summary.accuracy:.4f}; median Spearman ρ between relevance (reduce={settings.get('reduce')}) and "
             f"{_reference_text(settings)} per layer.")
    clarity_head, clarity_table = clarity_rows(summary.method_dicts())
    clarity = ("\nClarity of the relevance maps (median over examples): normalized entropy (1 = uniform) and "
               "Gini coefficient (0 = uniform).\n\n" + markdown_table(clarity_head, clarity_table))
    (folder / "table.md").write_text(title + "\n\n" + markdown_table(head, rows) + clarity, encoding="utf-8")


def write_layers_png(summary: StudySummary, folder: Path) -> None:
    """``layers.png``: median per layer, one line per method, the 95 % interval shaded."""
    from attnlens.viz.layer_curves import plot_layer_curves  # noqa: PLC0415

    settings = summary.settings
    reference = _reference_text(settings)
    plot_layer_curves(summary.method_dicts(), folder / "layers.png",
                      title=f"{summary.title}: {model_display_name(summary.model)}, {summary.n_examples} examples",
                      ylabel=f"median Spearman ρ with {reference}")


def write_study_report(summary: StudySummary, folder: str | Path, *, heatmaps: Mapping[str, dict] | None = None,
                       ) -> Path:
    """``report.html`` beside a study's outputs: the per-layer plot, the tables, and per example the
    last-layer ρ of every method, sortable by each method's ρ, by the disagreement between methods
    (their spread) and by the model's confidence, with a search box (:mod:`attnlens.viz.report`).
    Written atomically.

    Args:
        summary: the study's summary.
        folder: its output folder.
        heatmaps: per example id, token heatmaps of every method side by side (what
            :func:`attnlens.experiments.study_heatmaps.study_heatmaps` returns); examples without
            one are listed with their ρ only.
    """
    import math  # noqa: PLC0415

    from attnlens._files import _write_atomic  # noqa: PLC0415
    from attnlens.viz.report import report_page  # noqa: PLC0415
    from attnlens.viz.tables import study_rows  # noqa: PLC0415

    folder = Path(folder)
    head, rows = study_rows(summary.method_dicts())
    layers = summary.num_layers
    names = [entry.name for entry in summary.methods]
    heatmaps = dict(heatmaps or {})
    sort_keys = ([("confidence", "model confidence (high first)"), ("+confidence", "model confidence (low first)")]
                 if heatmaps else []) + [("disagreement", "disagreement between methods (spread of ρ)")] + [
        (f"rho-{slot}", f"last-layer ρ of {name}") for slot, name in enumerate(names)] + [
        (f"+rho-{slot}", f"last-layer ρ of {name} (low first)") for slot, name in enumerate(names)]
    examples = []
    for row in summary.examples:
        last = [row.spearman[slot * layers + layers - 1] for slot in range(len(names))]
        finite = [v for v in last if v is not None and math.isfinite(v)]
        mean = sum(finite) / len(finite) if finite else math.nan
        spread = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite)) if finite else math.nan
        keys = {"disagreement": spread, **{f"rho-{slot}": (v if v is not None else math.nan)
                                           for slot, v in enumerate(last)}}
        values = ", ".join(f"{name} {v:.3f}" if v is not None and math.isfinite(v) else f"{name} –"
                           for name, v in zip(names, last))
        gold = "" if row.label < 0 else f", gold {row.label}"
        drawn = heatmaps.get(row.id, {"tokens": [], "special": [], "maps": {}, "confidence": math.nan})
        keys["confidence"] = drawn["confidence"]
        examples.append({"text": row.text, "tokens": drawn["tokens"], "special": drawn["special"],
                         "maps": drawn["maps"], "keys": keys,
                         "meta": f"{row.id}: predicted {row.prediction}{gold}, {row.tokens} tokens; last-layer ρ: "
                                 f"{values}"})
    drawn_note = (f"Token heatmaps (relevance after the last layer; gradient: the reference) for {len(heatmaps)} of "
                  f"the {summary.n_examples} examples (--report-examples)." if heatmaps else "")
    plot = folder / "layers.png"
    images = [("Median Spearman ρ per layer (95 % interval shaded)", plot.read_bytes())] if plot.is_file() else []
    page = report_page(f"attnlens study: {summary.title}, {model_display_name(summary.model)}",
                       intro=f"{summary.n_examples} examples, accuracy {summary.accuracy:.4f}. Click a column header "
                             f"to sort. {drawn_note}", tables=[("Median ρ per layer", head, rows)], images=images,
                       examples=examples, sort_keys=sort_keys)
    path = folder / "report.html"
    _write_atomic(path, page.encode("utf-8"))
    return path


def model_display_name(model: str) -> str:
    """A model's name for titles: a hub id as it is, a local folder by its last part.

    Example:
        >>> model_display_name("/home/me/models/minilm-sst2"), model_display_name("textattack/bert-base-uncased-SST-2")
        ('minilm-sst2', 'textattack/bert-base-uncased-SST-2')
    """
    from pathlib import Path  # noqa: PLC0415

    path = Path(model).expanduser()
    return path.name if model.startswith(("/", ".", "~")) or path.exists() else model


def write_study_outputs(summary: StudySummary, out_dir: str | Path) -> Path:
    """Write every output file of a study into `out_dir` (new or empty), atomically.

    Returns:
        The output folder.
    """

    def fill(folder: Path) -> None:
        for writer in (write_results_json, write_results_csv, write_per_example_csv, write_table_md,
                       write_layers_png):
            writer(summary, folder)

    return write_atomically(out_dir, fill)


__all__ = [
    "OUTPUT_FILES",
    "model_display_name",
    "write_layers_png",
    "write_per_example_csv",
    "write_results_csv",
    "write_results_json",
    "write_study_outputs",
    "write_study_report",
    "write_table_md",
]
