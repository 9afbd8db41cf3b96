"""Per-layer curves: one line per method with its interval shaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_layer_curves(
    summaries: Mapping[str, Mapping[str, Sequence]],
    path: str | Path,
    *,
    ylabel: str = "median Spearman ρ",
    title: str | None = None,
) -> Path:
    """Draw the median per layer of every method, first layer first, with its 95 % interval shaded.

    Args:
        summaries: method name → {"median": [L floats], "ci95": [[lo, hi] × L]}.
        path: PNG file to write.
        ylabel: y-axis label.
        title: figure title.

    Returns:
        The written path.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    count = len(summaries)
    colors = plt.get_cmap("tab10" if count <= 10 else "tab20").colors
    styles = ("-", "--", "-.", ":")
    families: dict[str, str] = {}  # method family (name before "@") -> line style
    fig, ax = plt.subplots(figsize=(7 + (2.5 if count > 6 else 0), 4.2), dpi=150)
    try:
        for index, (name, entry) in enumerate(summaries.items()):
            medians = [float("nan") if m is None else m for m in entry["median"]]
            layers = list(range(1, len(medians) + 1))
            style = families.setdefault(name.split("@")[0], styles[len(families) % len(styles)])
            (line,) = ax.plot(layers, medians, marker="o", markersize=3, label=name, linestyle=style,
                              color=colors[index % len(colors)])
            if "ci95" in entry:
                low = [float("nan") if c[0] is None else c[0] for c in entry["ci95"]]
                high = [float("nan") if c[1] is None else c[1] for c in entry["ci95"]]
                ax.fill_between(layers, low, high, color=line.get_color(), alpha=0.15 if count <= 6 else 0.04,
                                linewidth=0)
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.set_xticks(layers)
        if title:
            ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if count > 6:  # many methods: the legend goes beside the plot, not over the curves
            ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        else:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)
