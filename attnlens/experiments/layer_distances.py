"""The distribution of the distances Selective Attention Rollout thresholds, and thresholds chosen from it.

Selective Attention Rollout (thesis "Improving Explainability of Transformer Models") composes a
layer when the Frobenius distance between its residual-augmented, head-fused attention
``Â = norm_rows(A + I)`` and the last composed layer's exceeds a threshold. Which thresholds are
sensible depends on the model; this module measures, over a dataset, the distances between
consecutive layers (absolute and per token, ``/ √n``) and the distances between every pair of
layers, from which the layers selective rollout would use at any threshold follow exactly.

``attnlens sst2 --distances`` writes ``distances.md``, ``distances.csv``, ``distances.json`` and
``distances.png``; ``--thresholds auto:Q`` takes the threshold at quantile Q of the consecutive
distances (:func:`resolve_thresholds`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from attnlens._checks import ArgumentError

if TYPE_CHECKING:
    from attnlens.datasets import Examples
    from attnlens.models import Adapter

QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
"""Quantiles of the consecutive distances the table lists."""
SKIP_SHARES = (0.25, 0.5, 0.75)
"""Shares of skipped layers the table gives a threshold for."""
DISTANCE_FILES = ("distances.md", "distances.csv", "distances.json", "distances.png")
_AUTO = re.compile(r"auto:(.*)")


@dataclass(frozen=True)
class DistanceDistribution:
    """Layer-to-layer distances of every example.

    Attributes:
        model: the model's name.
        title: the data's name.
        ids: example ids, in order.
        pairwise: `(N, L, L)` ``‖Â_i − Â_j‖_F`` between every two layers of each example.
        tokens: `(N,)` valid tokens per example.
    """

    model: str
    title: str
    ids: tuple[str, ...]
    pairwise: np.ndarray
    tokens: np.ndarray

    @property
    def num_layers(self) -> int:
        return int(self.pairwise.shape[1])

    def consecutive(self, distance: str = "frobenius") -> np.ndarray:
        """`(N, L - 1)` the distance between layer l and l − 1 (``"frobenius"`` or ``"frobenius_per_token"``)."""
        layers = np.arange(1, self.num_layers)
        values = self.pairwise[:, layers, layers - 1]
        return values / self._scale(distance)[:, None]

    def quantile(self, q: float, distance: str = "frobenius") -> float:
        """The `q` quantile (linear interpolation) of all consecutive distances, pooled over examples and layers."""
        return float(np.quantile(self.consecutive(distance), q))

    def layers_used(self, threshold: float, distance: str = "frobenius") -> np.ndarray:
        """`(N,)` how many layers selective rollout composes at `threshold` (layer 1 always), exactly as
        :func:`~attnlens.methods.selective_rollout.selective_rollout` decides from the pairwise distances."""
        count = len(self.ids)
        scale = self._scale(distance)
        reference = np.zeros(count, dtype=np.int64)
        used = np.ones(count, dtype=np.int64)
        rows = np.arange(count)
        for layer in range(1, self.num_layers):
            take = self.pairwise[rows, layer, reference] / scale > threshold
            reference = np.where(take, layer, reference)
            used += take
        return used

    def skipped_share(self, threshold: float, distance: str = "frobenius") -> float:
        """Mean share of the L layers selective rollout skips at `threshold`."""
        return float(1.0 - self.layers_used(threshold, distance).mean() / self.num_layers)

    def threshold_for_skipped(self, share: float, distance: str = "frobenius") -> float:
        """The smallest threshold (bisection, 1e-4 relative) at which at least `share` of the layers are skipped."""
        low, high = 0.0, float(self.pairwise.max() / self._scale(distance).min()) + 1e-6
        for _ in range(60):
            middle = (low + high) / 2
            if self.skipped_share(middle, distance) >= share:
                high = middle
            else:
                low = middle
            if high - low <= 1e-4 * high:
                break
        return high

    def _scale(self, distance: str) -> np.ndarray:
        if distance == "frobenius":
            return np.ones(len(self.ids))
        if distance == "frobenius_per_token":
            return np.sqrt(self.tokens.astype(np.float64))
        raise ArgumentError(f"Expected `distance` to be frobenius or frobenius_per_token, but got {distance!r}.",
                            "distance")


def measure_layer_distances(adapter: Adapter, examples: Examples, *, batch_size: int = 32,
                            head_fusion: str = "mean", model: str = "model",
                            progress: Callable[[float, int], None] | None = None) -> DistanceDistribution:
    """Trace every example (no gradients) and keep the distances between its layers' attention.

    Selective Attention Rollout (the thesis): distances of ``norm_rows(A + I)`` of the head-fused attention.

    Args:
        adapter: a text adapter (``trace(texts, saliency=None)``).
        examples: the examples; their texts are traced in length-sorted batches.
        batch_size: texts per batch.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        model: the model's name, for titles.
        progress: called with (examples done, total) after every batch.

    Returns:
        A :class:`DistanceDistribution` with pairwise `(N, L, L)` distances in float64.
    """
    from attnlens.experiments.scoring import length_batches  # noqa: PLC0415
    from attnlens.methods.rollout import _rollout_prepare  # noqa: PLC0415

    texts = examples.texts
    lengths = adapter.count_tokens(texts)
    pairwise: list[np.ndarray | None] = [None] * len(texts)
    tokens = np.zeros(len(texts), dtype=np.int64)
    done = 0
    for batch in length_batches(lengths, batch_size):
        with torch.no_grad():
            trace = adapter.trace([texts[i] for i in batch], saliency=None)
            augmented, mask = _rollout_prepare(trace.attentions.double(), trace.mask, True, head_fusion)
            flat = augmented.flatten(start_dim=2)
            distances = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist").cpu().numpy()
            counts = mask.sum(dim=-1).cpu().numpy()
        for row, index in enumerate(batch):
            pairwise[index] = distances[row]
            tokens[index] = int(counts[row])
        done += len(batch)
        if progress is not None:
            progress(done, len(texts))
    return DistanceDistribution(model=model, title=getattr(examples, "name", "data"),
                                ids=tuple(str(e.id) for e in examples), pairwise=np.stack(pairwise), tokens=tokens)


def parse_auto_threshold(text: str) -> float | None:
    """The quantile of a threshold written ``auto:Q`` (Q in [0, 1]), or None for a plain number.

    Example:
        >>> parse_auto_threshold("auto:0.25"), parse_auto_threshold("0.5")
        (0.25, None)
    """
    match = _AUTO.fullmatch(str(text).strip())
    if match is None:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ArgumentError(f"Expected `thresholds` entry {text!r} to be auto:Q with Q a quantile in [0, 1], but got "
                            f"{match.group(1)!r}.", "thresholds")
    return value


def has_auto_thresholds(thresholds: Sequence[str]) -> bool:
    """Whether any entry is ``auto:Q`` (checking every such entry)."""
    return any([parse_auto_threshold(t) is not None for t in thresholds])


def resolve_thresholds(thresholds: Sequence[str], distribution: DistanceDistribution, *,
                       distance: str = "frobenius") -> tuple[str, ...]:
    """Replace every ``auto:Q`` by the Q quantile of the consecutive `distance`s (4 significant digits).

    Example:
        >>> d = DistanceDistribution("m", "t", ("a",), np.array([[[0.0, 1.0, 2.0], [1.0, 0.0, 3.0],
        ...     [2.0, 3.0, 0.0]]]), np.array([4]))
        >>> resolve_thresholds(["auto:0.5", "1"], d)
        ('2', '1')
    """
    resolved = []
    for text in thresholds:
        quantile = parse_auto_threshold(text)
        resolved.append(text if quantile is None else f"{distribution.quantile(quantile, distance):.4g}")
    return tuple(resolved)


# ----------------------------------------------------------------------------------------------- outputs


def distance_rows(distribution: DistanceDistribution) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """Two markdown tables: per layer transition (median and quartiles of both distances), and per
    quantile / skipped share the threshold with the layers selective rollout then uses."""
    head = ["layers", "frobenius median", "frobenius IQR", "per-token median", "per-token IQR"]
    absolute, per_token = distribution.consecutive("frobenius"), distribution.consecutive("frobenius_per_token")
    rows = []
    for layer in range(distribution.num_layers - 1):
        a, p = np.quantile(absolute[:, layer], (0.25, 0.5, 0.75)), np.quantile(per_token[:, layer], (0.25, 0.5, 0.75))
        rows.append([f"{layer + 1}→{layer + 2}", f"{a[1]:.4f}", f"{a[0]:.4f}–{a[2]:.4f}", f"{p[1]:.4f}",
                     f"{p[0]:.4f}–{p[2]:.4f}"])
    a, p = np.quantile(absolute, (0.25, 0.5, 0.75)), np.quantile(per_token, (0.25, 0.5, 0.75))
    rows.append(["all", f"{a[1]:.4f}", f"{a[0]:.4f}–{a[2]:.4f}", f"{p[1]:.4f}", f"{p[0]:.4f}–{p[2]:.4f}"])
    choice_head = ["choice", "frobenius threshold", "layers used", "skipped", "per-token threshold", "layers used",
                   "skipped"]
    choices = []
    # Thresholds are shown (and used by the study) with 4 significant digits; a skip threshold is rounded up,
    # so the value shown still skips its share; the layers used are those at the value shown.
    for label, pick in ([(f"auto:{q:g}", lambda d, q=q: f"{distribution.quantile(q, d):.4g}") for q in QUANTILES]
                        + [(f"skip {s:.0%}", lambda d, s=s: _round_up(distribution.threshold_for_skipped(s, d)))
                           for s in SKIP_SHARES]):
        row = [label]
        for distance in ("frobenius", "frobenius_per_token"):
            threshold = pick(distance)
            used = distribution.layers_used(float(threshold), distance).mean()
            row += [threshold, f"{used:.2f}", f"{1 - used / distribution.num_layers:.0%}"]
        choices.append(row)
    return head, rows, choice_head, choices


def _round_up(value: float, digits: int = 4) -> str:
    """`value` rounded up to `digits` significant digits, as text (``0.66812`` → ``'0.6682'``)."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:.{digits}g}"
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    rounded = math.ceil(value / step - 1e-9) * step
    return f"{rounded:.{digits}g}"


def write_distance_outputs(distribution: DistanceDistribution, out_dir: str | Path) -> Path:
    """Write ``distances.md`` (both tables), ``distances.csv`` (every example's consecutive distances),
    ``distances.json`` (quantiles and thresholds) and ``distances.png`` into a new folder, atomically."""
    from attnlens.experiments.outputs import write_atomically, write_csv, write_json  # noqa: PLC0415
    from attnlens.viz.tables import markdown_table  # noqa: PLC0415

    head, rows, choice_head, choices = distance_rows(distribution)

    def fill(folder: Path) -> None:
        count, layers = len(distribution.ids), distribution.num_layers
        text = (f"{distribution.title}, {count} examples, model {distribution.model} ({layers} layers): distance "
                f"between consecutive layers' residual-augmented, head-fused attention norm_rows(A + I), "
                f"Frobenius and per token (/ √n).\n\n" + markdown_table(head, rows)
                + "\nThresholds at quantiles of the consecutive distances (`--thresholds auto:Q`) and thresholds "
                  "that skip a share of the layers; layers used = mean over examples of the layers selective "
                  f"rollout composes (of {layers}, the first always).\n\n" + markdown_table(choice_head, choices))
        (folder / "distances.md").write_text(text, encoding="utf-8")
        absolute = distribution.consecutive("frobenius")
        per_token = distribution.consecutive("frobenius_per_token")
        write_csv(["id", "tokens"] + [f"frobenius@{i + 1}-{i + 2}" for i in range(layers - 1)]
                  + [f"per_token@{i + 1}-{i + 2}" for i in range(layers - 1)],
                  [[distribution.ids[i], int(distribution.tokens[i]), *absolute[i].tolist(), *per_token[i].tolist()]
                   for i in range(count)], folder / "distances.csv")
        write_json({"model": distribution.model, "data": distribution.title, "examples": count, "layers": layers,
                    "quantiles": {distance: {f"{q:g}": distribution.quantile(q, distance) for q in QUANTILES}
                                  for distance in ("frobenius", "frobenius_per_token")},
                    "skip_thresholds": {distance: {f"{s:g}": distribution.threshold_for_skipped(s, distance)
                                                   for s in SKIP_SHARES}
                                        for distance in ("frobenius", "frobenius_per_token")}},
                   folder / "distances.json")
        _plot(distribution, folder / "distances.png")

    return write_atomically(out_dir, fill)


def _plot(distribution: DistanceDistribution, path: Path) -> None:
    """Per layer transition box plots (top) and the skipped share against the threshold (bottom), per distance."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=120)
    try:
        for column, (distance, label) in enumerate((("frobenius", "Frobenius"),
                                                    ("frobenius_per_token", "Frobenius / √n"))):
            values = distribution.consecutive(distance)
            top, bottom = axes[0, column], axes[1, column]
            top.boxplot([values[:, i] for i in range(values.shape[1])], showfliers=False)
            top.set_xticks(range(1, values.shape[1] + 1), [f"{i + 1}→{i + 2}" for i in range(values.shape[1])],
                           rotation=45, fontsize=7)
            top.set_title(f"{label} distance between consecutive layers")
            top.set_ylabel("distance")
            grid = np.linspace(0.0, float(np.quantile(values, 0.995)) * 1.2, 80)
            bottom.plot(grid, [distribution.skipped_share(t, distance) for t in grid], color="C0")
            for q in (0.25, 0.5, 0.75):
                bottom.axvline(distribution.quantile(q, distance), color="C1", linestyle=":", linewidth=1)
            bottom.set_xlabel(f"threshold ({label}); dotted: quartiles of consecutive distances", fontsize=8)
            bottom.set_ylabel("share of layers skipped")
            bottom.set_ylim(0, 1)
        fig.suptitle(f"{distribution.title}: {Path(distribution.model).name or distribution.model}, "
                     f"{len(distribution.ids)} examples")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


__all__ = ["DISTANCE_FILES", "QUANTILES", "SKIP_SHARES", "DistanceDistribution", "distance_rows",
           "has_auto_thresholds", "measure_layer_distances", "parse_auto_threshold", "resolve_thresholds",
           "write_distance_outputs"]
