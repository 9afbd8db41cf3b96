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

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=150)
    try:
        for name, entry in summaries.items():
            medians = list(entry["median"])
            layers = list(range(1, len(medians) + 1))
            (line,) = ax.plot(layers, medians, marker="o", markersize=3, label=name)
            if "ci95" in entry:
                low = [c[0] for c in entry["ci95"]]
                high = [c[1] for c in entry["ci95"]]
                ax.fill_between(layers, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)
