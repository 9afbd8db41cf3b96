"""`summarize`: a `ScoreTable` → a typed `StudySummary` (medians, intervals, tests, ratios, clarity).

Per method and layer: median, mean and standard deviation of the per-example Spearman ρ, a
percentile-bootstrap 95 % interval of the median (Efron & Tibshirani 1993), a paired Wilcoxon
signed-rank test against rollout (Wilcoxon 1945) and the ratio of medians to rollout's; for
selective methods the mean number of layers composed; the median clarity of the relevance maps.
Writers read only the summary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from attnlens.experiments.score_table import ScoreTable
from attnlens.metrics.summary import paired_wilcoxon, summarize_score_table

BASELINE = "rollout"


@dataclass(frozen=True)
class MethodSummary:
    """One method's summary; every list has one entry per layer, first layer first.

    Attributes:
        name: the variant's name (``selective@0.5``).
        family: its registry family.
        median, mean, std: of the per-example Spearman ρ (NaN examples left out).
        ci95: bootstrap 95 % interval of the median, ``[low, high]`` per layer.
        count: examples with a finite ρ.
        entropy_median, gini_median: median clarity of the relevance maps.
        ratio_to_rollout: median / rollout's median (None for rollout or without it).
        wilcoxon_p_vs_rollout: paired Wilcoxon p-value against rollout (None likewise).
        layers_used_mean: mean layers composed (selective methods), else None.
    """

    name: str
    family: str
    median: list[float]
    mean: list[float]
    std: list[float]
    ci95: list[list[float]]
    count: list[int]
    entropy_median: list[float]
    gini_median: list[float]
    ratio_to_rollout: list[float] | None = None
    wilcoxon_p_vs_rollout: list[float] | None = None
    layers_used_mean: float | None = None

    def to_json(self) -> dict:
        """The ``results.json`` entry of this method (keys of unset extras left out)."""
        entry = {key: value for key, value in asdict(self).items() if key not in ("name", "family")}
        return {key: value for key, value in entry.items() if value is not None}


@dataclass(frozen=True)
class ExampleRow:
    """One example of the ``per_example.csv`` file."""

    index: int
    id: str
    tokens: int
    label: int
    prediction: int
    text: str
    spearman: list[float]  # method-major, layer-minor


@dataclass
class StudySummary:
    """Everything a study's writers need.

    Attributes:
        title: what was studied, for tables and figures (``SST-2 dev``).
        model: the model's name or path.
        n_examples: examples scored.
        accuracy: the model's accuracy on the labelled examples (NaN without labels).
        num_layers: L.
        methods: one :class:`MethodSummary` per method variant, in study order.
        examples: per-example rows, in source order.
        settings: the options that shaped the numbers (saliency, reduce, target, ...).
        config: everything needed to rerun the study.
        timings: seconds per stage.
    """

    title: str
    model: str
    n_examples: int
    accuracy: float
    num_layers: int
    methods: list[MethodSummary]
    examples: list[ExampleRow] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def method(self, name: str) -> MethodSummary:
        """The summary of method `name`."""
        for entry in self.methods:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def method_dicts(self) -> dict[str, dict]:
        """Method name → its ``results.json`` entry (what the tables and figures draw)."""
        return {entry.name: entry.to_json() for entry in self.methods}

    def to_json(self) -> dict:
        """The ``results.json`` document."""
        return {"model": self.model, **{k: v for k, v in self.settings.items() if k in ("split",)},
                "n_examples": self.n_examples, "accuracy": self.accuracy, "num_layers": self.num_layers,
                **{k: v for k, v in self.settings.items() if k != "split"},
                "timings_seconds": self.timings, "config": self.config, "methods": self.method_dicts()}


def _layer_medians(values: np.ndarray) -> list[float]:
    """Median over examples of `(N, L)` values per layer, ignoring NaN (NaN for an all-NaN layer)."""
    return [float(np.median(column[np.isfinite(column)])) if np.isfinite(column).any() else float("nan")
            for column in values.T]


def summarize(table: ScoreTable, *, seed: int = 0, device: str | torch.device = "cpu", title: str = "",
              model: str = "", settings: dict | None = None, config: dict | None = None) -> StudySummary:
    """Summarise a (merged) score table; the same rows in any shard order give the same numbers.

    Args:
        table: the scores (sorted into source order here).
        seed: seed of the bootstrap resampling.
        device: where the bootstrap runs (``cuda`` falls back to the CPU when unavailable).
        title: what was studied (``SST-2 dev``), recorded in the summary.
        model: the model's name, recorded in the summary.
        settings: the options that shaped the numbers, recorded in the summary.
        config: everything needed to rerun the study, recorded in the summary.

    Returns:
        A :class:`StudySummary`.
    """
    table = table.sorted()
    layers, names = table.num_layers, table.methods
    rho = table.scores["spearman"]  # (N, M, L)
    flat_rows = rho.transpose(1, 2, 0).reshape(len(names) * layers, -1)  # (M * L, N), method-major
    device = device if str(device) == "cpu" or torch.cuda.is_available() else "cpu"
    flat = summarize_score_table(flat_rows, seed=seed, device=device)
    has_baseline = BASELINE in names
    if has_baseline:  # rollout's medians, read once from its own summaries
        start = names.index(BASELINE) * layers
        base_medians = [s.median for s in flat[start:start + layers]]
        baseline = rho[:, names.index(BASELINE)]
    methods = []
    for m, name in enumerate(names):
        parts = flat[m * layers:(m + 1) * layers]
        values = rho[:, m]
        used = table.layers_used[:, m]
        ratio = wilcoxon = None
        if has_baseline and name != BASELINE:
            ratio = [med / base if base != 0.0 and np.isfinite(base) else float("nan")
                     for med, base in zip((s.median for s in parts), base_medians)]
            wilcoxon = [paired_wilcoxon(values[:, layer], baseline[:, layer]) for layer in range(layers)]
        methods.append(MethodSummary(
            name=name, family=table.families.get(name, ""), median=[s.median for s in parts],
            mean=[s.mean for s in parts], std=[s.std for s in parts], ci95=[list(s.ci95) for s in parts],
            count=[s.count for s in parts], entropy_median=_layer_medians(table.scores["entropy"][:, m]),
            gini_median=_layer_medians(table.scores["gini"][:, m]), ratio_to_rollout=ratio,
            wilcoxon_p_vs_rollout=wilcoxon,
            layers_used_mean=float(used.mean()) if np.isfinite(used).all() and used.size else None))
    labelled = table.labels >= 0
    accuracy = float((table.predictions[labelled] == table.labels[labelled]).mean()) if labelled.any() else float("nan")
    examples = [ExampleRow(int(table.index[i]), table.ids[i], int(table.tokens[i]), int(table.labels[i]),
                           int(table.predictions[i]), table.texts[i], rho[i].reshape(-1).tolist())
                for i in range(table.num_examples)]
    return StudySummary(title=title, model=model, n_examples=table.num_examples, accuracy=accuracy,
                        num_layers=layers, methods=methods, examples=examples, settings=dict(settings or {}),
                        config=dict(config or {}), timings=dict(table.timings))


__all__ = ["ExampleRow", "MethodSummary", "StudySummary", "summarize"]
