"""Study tables as markdown and as rich tables."""

from __future__ import annotations

import math
from collections.abc import Mapping

from rich.table import Table


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def study_rows(summaries: Mapping[str, Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per method, one column per layer (median ρ), plus extras."""
    layers = len(next(iter(summaries.values()))["median"])
    header = ["method"] + [f"L{i + 1}" for i in range(layers)] + ["last-layer 95% CI", "× rollout (last)",
                                                                  "layers used"]
    rows = []
    for name, entry in summaries.items():
        low, high = entry["ci95"][-1]
        ratio = entry.get("ratio_to_rollout", [float("nan")])[-1] if "ratio_to_rollout" in entry else None
        used = entry.get("layers_used_mean")
        rows.append([name] + [_fmt(m) for m in entry["median"]] + [f"[{_fmt(low)}, {_fmt(high)}]",
                                                                   "–" if ratio is None else _fmt(ratio, 2),
                                                                   "–" if used is None else f"{used:.2f}"])
    return header, rows


def clarity_rows(summaries: Mapping[str, Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the clarity table: median normalized entropy and Gini of the relevance
    maps at the first and last layer (lower entropy / higher Gini = more concentrated)."""
    header = ["method", "entropy L1", "entropy last", "Gini L1", "Gini last", "median ρ last"]
    rows = []
    for name, entry in summaries.items():
        entropy, gini = entry.get("entropy_median"), entry.get("gini_median")
        if not entropy:
            continue
        rows.append([name, _fmt(entropy[0]), _fmt(entropy[-1]), _fmt(gini[0]), _fmt(gini[-1]),
                     _fmt(entry["median"][-1])])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rich_table(header: list[str], rows: list[list[str]], *, title: str | None = None) -> Table:
    """The same table for the terminal."""
    table = Table(title=title, header_style="bold")
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table
