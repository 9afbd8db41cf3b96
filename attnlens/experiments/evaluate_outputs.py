"""Writing an evaluation: JSON, CSV, markdown table and AOPC plot, all or nothing (like the study's outputs).

``results.json`` (the summary), ``results.csv`` (one row per method and metric), ``per_example.csv``
(every example with every method's value of every metric), ``table.md`` (methods × metrics:
median [CI95], and the p-value against rollout) and ``aopc.png`` (comprehensiveness and
sufficiency per bin).
"""

from __future__ import annotations

import math
from pathlib import Path

from attnlens.experiments.outputs import write_atomically, write_csv, write_json

OUTPUT_FILES = ("results.json", "results.csv", "per_example.csv", "table.md", "aopc.png")
_LABELS = {"aopc_comp": "AOPC comp. ↑", "aopc_suff": "AOPC suff. ↓", "loo_tau": "τ with LOO ↑",
           "sanity": "sanity ρ ↓", "position_rho": "ρ with position", "reference_tau": "τ with reference"}


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def evaluation_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The methods × metrics table: ``median [low, high]`` and ``p`` against rollout per metric."""
    metrics = summary["metrics"]
    header = ["method"] + [_LABELS.get(m, m) for m in metrics]
    if "sanity" in metrics:
        header.append("sanity check")
    rows = []
    for entry in summary["methods"]:
        row = [entry["name"]]
        for metric in metrics:
            cell = entry["metrics"][metric]
            low, high = cell["ci95"]
            text = f"{_number(cell['median'])} [{_number(low)}, {_number(high)}]"
            p_value = cell.get("wilcoxon_p_vs_rollout")
            if p_value is not None and math.isfinite(p_value):
                text += f" p={p_value:.2g}"
            row.append(text)
        if "sanity" in metrics:
            row.append("pass" if entry.get("sanity_passes") else "FAIL")
        rows.append(row)
    return header, rows


def _disagreement(maps, special) -> float:
    """1 − the mean pairwise Spearman ρ of the methods' maps on the ordinary tokens (NaN when undefined)."""
    import numpy as np  # noqa: PLC0415
    from scipy import stats  # noqa: PLC0415

    keep = ~np.asarray(special, dtype=bool)
    values = np.asarray(maps)[:, keep]
    if values.shape[0] < 2 or values.shape[1] < 3:
        return math.nan
    rho = stats.spearmanr(values.T).statistic
    rho = np.atleast_2d(rho)
    upper = rho[np.triu_indices(values.shape[0], 1)]
    upper = upper[np.isfinite(upper)]
    return float(1 - upper.mean()) if upper.size else math.nan


def evaluation_report(result) -> str:
    """The self-contained ``report.html`` of an evaluation (see :mod:`attnlens.viz.report`)."""
    import io  # noqa: PLC0415

    from attnlens.viz.report import report_page  # noqa: PLC0415

    summary = result.summary
    head, rows = evaluation_rows(summary)
    numeric = []
    for entry in summary["methods"]:
        numeric.append([entry["name"], *[float(entry["metrics"][m]["median"]) for m in summary["metrics"]],
                        *(["pass" if entry.get("sanity_passes") else "FAIL"] if "sanity" in summary["metrics"] else [])])
    numeric_head = ["method", *[_LABELS.get(m, m) for m in summary["metrics"]],
                    *(["sanity check"] if "sanity" in summary["metrics"] else [])]
    sort_keys = [("confidence", "model confidence (high first)"), ("+confidence", "model confidence (low first)"),
                 ("disagreement", "disagreement between methods")]
    for metric in summary["metrics"]:
        for slot, name in enumerate(result.methods):
            sort_keys.append((f"{metric}-{slot}", f"{_LABELS.get(metric, metric)} of {name}"))
    examples = []
    for i, text in enumerate(result.texts):
        maps = result.maps[i] if i < len(result.maps) else None
        if maps is None or maps.shape[1] == 0:
            continue
        keys = {"confidence": float(result.probability[i]), "disagreement": _disagreement(maps, result.specials[i])}
        for metric in summary["metrics"]:
            for slot in range(len(result.methods)):
                keys[f"{metric}-{slot}"] = float(result.scores[metric][slot, i])
        gold = "" if result.labels[i] < 0 else f", gold {int(result.labels[i])}"
        examples.append({"text": text, "tokens": result.tokens[i], "special": result.specials[i],
                         "maps": {name: maps[slot].tolist() for slot, name in enumerate(result.methods)},
                         "meta": f"{result.ids[i]}: predicted {int(result.predictions[i])}{gold}, target probability "
                                 f"{result.probability[i]:.3f}", "keys": keys})
    images = []
    buffer = io.BytesIO()
    if _plot_aopc(summary, buffer):
        images.append(("AOPC curves: mean drop of the target probability per bin", buffer.getvalue()))
    intro = (f"{summary['n_examples']} examples of {summary['data']}, model {summary['model']}. Click a column "
             f"header to sort; ↑ higher is more faithful, ↓ lower is.")
    return report_page(f"attnlens evaluate: {Path(str(summary['model'])).name}", intro=intro,
                       tables=[("Medians per method and metric", numeric_head, numeric),
                               ("Medians with bootstrap CI95 and Wilcoxon p against rollout", head, rows)],
                       images=images, examples=examples, sort_keys=sort_keys)


def write_evaluation_outputs(result, out_dir: str | Path, *, report: bool = False) -> Path:
    """Write every output file of an :class:`~attnlens.experiments.evaluate.EvaluateResult` into `out_dir`
    (new or empty), atomically; with `report`, also ``report.html``.

    Returns:
        The output folder.
    """
    summary = result.summary

    def fill(folder: Path) -> None:
        write_json(summary, folder / "results.json")
        rows = []
        for entry in summary["methods"]:
            for metric in summary["metrics"]:
                cell = entry["metrics"][metric]
                rows.append([entry["name"], metric, cell["median"], cell["mean"], cell["ci95"][0], cell["ci95"][1],
                             cell["count"], "" if cell["wilcoxon_p_vs_rollout"] is None else
                             cell["wilcoxon_p_vs_rollout"]])
        write_csv(["method", "metric", "median", "mean", "ci95_low", "ci95_high", "count", "wilcoxon_p_vs_rollout"],
                  rows, folder / "results.csv")
        header = ["example", "id", "gold", "predicted", "probability", "sentence"] + [
            f"{name}:{metric}" for name in result.methods for metric in summary["metrics"]]
        per_example = []
        for i, text in enumerate(result.texts):
            values = [result.scores[metric][m, i] for m in range(len(result.methods)) for metric in summary["metrics"]]
            per_example.append([i, result.ids[i], "" if result.labels[i] < 0 else int(result.labels[i]),
                                int(result.predictions[i]), float(result.probability[i]), text,
                                *["" if not math.isfinite(v) else float(v) for v in values]])
        write_csv(header, per_example, folder / "per_example.csv")
        from attnlens.viz.tables import markdown_table  # noqa: PLC0415

        head, table = evaluation_rows(summary)
        title = (f"Faithfulness of {summary['n_examples']} explanations of {summary['model']} on {summary['data']} "
                 f"(perturb={summary['settings']['perturb']}, reduce={summary['settings']['reduce']}, AOPC bins "
                 f"{', '.join(f'{f:g}' for f in summary['fractions'])}): median [bootstrap CI95], Wilcoxon p against "
                 f"rollout; sanity = Spearman ρ with the trained maps after every layer is randomised "
                 f"(fails at ≥ {summary['sanity_threshold']}).")
        (folder / "table.md").write_text(title + "\n\n" + markdown_table(head, table) + "\n", encoding="utf-8")
        _plot_aopc(summary, folder / "aopc.png")
        if report:
            (folder / "report.html").write_text(evaluation_report(result), encoding="utf-8")

    return write_atomically(out_dir, fill)


def _plot_aopc(summary: dict, path) -> bool:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fractions = [100 * f for f in summary["fractions"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for slot, entry in enumerate(summary["methods"]):
        if "comprehensiveness_per_bin" in entry:
            color = plt.cm.tab20(slot % 20)  # distinct colours for up to 20 methods (the default cycle has 10)
            left.plot(fractions, entry["comprehensiveness_per_bin"], marker="o", label=entry["name"], color=color)
            right.plot(fractions, entry["sufficiency_per_bin"], marker="o", label=entry["name"], color=color)
    for axis, title in ((left, "comprehensiveness (top-k removed) ↑"), (right, "sufficiency (only top-k kept) ↓")):
        axis.set_xscale("log")
        axis.set_xlabel("k (% of tokens)")
        axis.set_ylabel("mean drop of the target probability")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    right.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)
    return True


__all__ = ["OUTPUT_FILES", "evaluation_report", "evaluation_rows", "write_evaluation_outputs"]
