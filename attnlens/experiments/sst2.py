"""The SST-2 study of the thesis: how well does each attention method agree with input gradients?

For every method and layer, the per-sentence Spearman correlation between the method's token
relevance and the input-gradient saliency of the explained logit, summarised with a median,
a bootstrap interval and a paired Wilcoxon test against plain rollout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from attnlens._checks import _check_choice, _check_device
from attnlens.datasets.sst2 import load_sst2
from attnlens.experiments.study_methods import METHOD_FAMILIES, StudyMethod, build_study_methods, parse_numbers
from attnlens.methods.relevance import _relevance_compute
from attnlens.metrics.clarity import _gini_compute, _normalized_entropy_compute
from attnlens.metrics.spearman import _spearman_compute
from attnlens.metrics.summary import paired_wilcoxon, summarize_score_table
from attnlens.models.defaults import resolve_sst2_model
from attnlens.models.hf_text import SALIENCY_POSITIONS, SALIENCY_REDUCTIONS, TextClassifierAdapter

ProgressFn = Callable[[float, int], None]


@dataclass(frozen=True)
class SST2StudyConfig:
    """Options of the SST-2 study; every field has a command-line flag of the same name.

    Attributes:
        model: hub id or local folder of a sequence classifier; None resolves the default.
        data: folder holding ``sst2/{train,dev}.tsv``; None uses ``$ATTNLENS_DATA`` or the hub.
        split: ``"dev"`` or ``"train"``.
        limit: first N sentences only; None for all.
        methods: method families (see ``study_methods.METHOD_FAMILIES``).
        thresholds: selective-rollout thresholds, as written.
        alphas: network-diffusion strengths, as written.
        reduce: relevance reduction over query rows (``max``, ``cls``, ``mean``).
        saliency: input-gradient reduction (``sum_abs``, ``l2``, ``grad_x_input``).
        saliency_at: where the gradient is taken (``layer_input`` or ``word_embeddings``).
        target: ``pred`` (predicted class) or ``gold`` (label).
        batch_size: sentences per batch (batches are formed by sorted length).
        device: ``cpu`` or ``cuda``.
        exclude_special: drop [CLS]/[SEP] from relevance and correlation.
        distance: selective-rollout distance.
        head_fusion: how heads are fused.
        seed: seed of the bootstrap.
    """

    model: str | None = None
    data: str | None = None
    split: str = "dev"
    limit: int | None = None
    methods: tuple[str, ...] = ("raw", "rollout", "selective")
    thresholds: tuple[str, ...] = ("0.5", "1", "2")
    alphas: tuple[str, ...] = ("0.9",)
    reduce: str = "max"
    saliency: str = "sum_abs"
    saliency_at: str = "layer_input"
    target: str = "pred"
    batch_size: int = 32
    device: str = "cpu"
    exclude_special: bool = False
    distance: str = "frobenius"
    head_fusion: str = "mean"
    seed: int = 0


@dataclass
class SST2StudyResult:
    """Everything the study measured; ``to_json()`` gives the ``results.json`` document."""

    config: SST2StudyConfig
    model: str
    n_examples: int
    accuracy: float
    num_layers: int
    correlations: dict[str, np.ndarray]  # method -> (N, L), NaN where undefined
    entropy: dict[str, np.ndarray]  # method -> (N, L) normalized entropy of the relevance map
    gini: dict[str, np.ndarray]  # method -> (N, L) Gini coefficient of the relevance map
    layers_used: dict[str, np.ndarray]  # selective method -> (N,) layers composed
    lengths: np.ndarray
    sentences: list[str] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    timings: dict[str, float] = field(default_factory=dict)
    summaries: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "split": self.config.split,
            "n_examples": self.n_examples,
            "accuracy": self.accuracy,
            "num_layers": self.num_layers,
            "saliency": self.config.saliency,
            "saliency_at": self.config.saliency_at,
            "reduce": self.config.reduce,
            "target": self.config.target,
            "exclude_special": self.config.exclude_special,
            "distance": self.config.distance,
            "head_fusion": self.config.head_fusion,
            "timings_seconds": self.timings,
            "config": {  # everything needed to rerun the study
                "model": self.model, "data": self.config.data, "split": self.config.split, "limit": self.config.limit,
                "methods": list(self.config.methods), "thresholds": list(self.config.thresholds),
                "alphas": list(self.config.alphas), "batch_size": self.config.batch_size,
                "device": self.config.device, "seed": self.config.seed,
            },
            "methods": self.summaries,
        }


def validate_sst2_config(config: SST2StudyConfig) -> list[StudyMethod]:
    """Check every option before anything is loaded or written; return the expanded methods.

    Raises:
        ValueError: one line naming the bad option.
    """
    _check_choice(config.split, "split", ("dev", "train"))
    _check_choice(config.reduce, "reduce", ("max", "cls", "mean"))
    _check_choice(config.saliency, "saliency", SALIENCY_REDUCTIONS)
    _check_choice(config.saliency_at, "saliency_at", SALIENCY_POSITIONS)
    _check_choice(config.target, "target", ("pred", "gold"))
    _check_choice(config.device, "device", ("cpu", "cuda"))
    _check_device(config.device)
    if config.limit is not None and config.limit <= 0:
        raise ValueError(f"Expected `limit` to be a positive integer, but got {config.limit}.")
    if config.batch_size <= 0:
        raise ValueError(f"Expected `batch_size` to be a positive integer, but got {config.batch_size}.")
    thresholds = parse_numbers(config.thresholds, "thresholds", low=0.0, allow_inf=True)
    alphas = parse_numbers(config.alphas, "alphas", low=0.0, high=1.0, high_inclusive=False)
    return build_study_methods(list(config.methods), thresholds=thresholds, alphas=alphas, distance=config.distance,
                               head_fusion=config.head_fusion)


def _length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, longest first), so padding is small."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def run_sst2_study(
    config: SST2StudyConfig,
    *,
    adapter: TextClassifierAdapter | None = None,
    progress: ProgressFn | None = None,
) -> SST2StudyResult:
    """Run the SST-2 correlation study.

    Args:
        config: study options.
        adapter: an already loaded text classifier (tests, notebooks); else `config.model` is loaded.
        progress: called with (sentences done, total) after every batch, and with fractional
            counts within a batch by slow methods (attention flow).

    Returns:
        The per-sentence correlations and their summaries.

    Raises:
        ValueError: on bad options, data, or model (one line each).
    """
    methods = validate_sst2_config(config)
    split = load_sst2(config.split, data_dir=config.data)
    sentences, labels = split.sentences, split.labels
    if config.limit is not None:
        sentences, labels = sentences[: config.limit], labels[: config.limit]
    if not sentences:
        raise ValueError(f"Expected the {config.split} split to hold sentences, but {split.source} has none.")
    for index, sentence in enumerate(sentences):
        if not sentence.strip():
            raise ValueError(f"Expected every sentence to be non-empty, but sentence {index} of {split.source} is empty.")
    model_name = config.model
    if adapter is None:
        model_name = resolve_sst2_model(config.model)
        adapter = TextClassifierAdapter.from_pretrained(model_name, device=config.device)
    model_name = model_name or getattr(adapter.model.config, "_name_or_path", "model")
    lengths = [min(len(ids), adapter.max_length) for ids in adapter.tokenizer(sentences)["input_ids"]]
    total, layers = len(sentences), adapter.num_layers
    correlations = {m.name: np.full((total, layers), np.nan) for m in methods}
    layers_used = {m.name: np.zeros(total) for m in methods if m.uses_threshold}
    entropy = {m.name: np.full((total, layers), np.nan) for m in methods}
    gini_scores = {m.name: np.full((total, layers), np.nan) for m in methods}
    correct = 0
    timings = {"model": 0.0, "methods": 0.0}
    pending: list[tuple[list[int], torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []
    done = 0
    for batch in _length_batches(lengths, config.batch_size):
        start = time.perf_counter()
        trace = adapter.trace([sentences[i] for i in batch], target=config.target,
                              labels=[labels[i] for i in batch], saliency=config.saliency,
                              saliency_at=config.saliency_at)
        timings["model"] += time.perf_counter() - start
        start = time.perf_counter()
        correct = correct + (trace.logits.argmax(dim=-1) == trace.labels).sum()  # stays on the device
        within = None if progress is None else (lambda fraction: progress(done + fraction * len(batch), total))
        pending.append((batch, trace.logits.argmax(dim=-1), *_score_batch(trace, methods, config, within)))
        timings["methods"] += time.perf_counter() - start
        done += len(batch)
        if progress is not None:
            progress(done, total)
    start = time.perf_counter()
    predictions = np.zeros(total, dtype=np.int64)
    for batch, predicted, scores, used in pending:  # one transfer per batch, after all device work is queued
        index = np.asarray(batch)
        predictions[index] = predicted.cpu().numpy()
        scores = scores.double().cpu().numpy()  # (3, M, B, L): rho, entropy, Gini
        for slot, method in enumerate(methods):
            correlations[method.name][index] = scores[0, slot]
            entropy[method.name][index] = scores[1, slot]
            gini_scores[method.name][index] = scores[2, slot]
        for name, count in used.items():
            layers_used[name][index] = count.double().cpu().numpy()
    correct = int(correct)
    timings["transfer"] = time.perf_counter() - start
    result = SST2StudyResult(config=config, model=str(model_name), n_examples=total, accuracy=correct / total,
                             num_layers=layers, correlations=correlations, entropy=entropy, gini=gini_scores,
                             layers_used=layers_used,
                             lengths=np.asarray(lengths), sentences=list(sentences),
                             labels=np.asarray(labels, dtype=np.int64), predictions=predictions, timings=timings)
    start = time.perf_counter()
    result.summaries = summarize_study(result)
    timings["summaries"] = time.perf_counter() - start
    return result


def _score_batch(trace, methods: list[StudyMethod], config: SST2StudyConfig,
                 within: Callable[[float], None] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Every method's per-layer relevance for one batch, scored together: Spearman ρ against the
    saliency, normalized entropy and Gini, as one `(3, M, B, L)` tensor on the batch's device,
    plus the number of layers each selective method composed per example."""
    corr_mask = trace.mask & ~trace.special_mask if config.exclude_special else trace.mask
    corr_mask = torch.where(corr_mask.any(dim=-1, keepdim=True), corr_mask, trace.mask)
    cache: dict = {"progress": within}  # slow methods (flow) report the fraction of the batch they finished
    joints, used = [], {}
    for method in methods:
        joint, composed = method.compute(trace.attentions, trace.mask, cache)
        joints.append(joint)
        if composed is not None:
            used[method.name] = composed.sum(dim=-1)
    batch, layers, n = len(trace.tokens), joints[0].shape[1], trace.mask.shape[1]
    count = len(methods)
    # the trace was checked by the adapter: the private, check-free parts keep the device busy (no host syncs)
    scores = _relevance_compute(torch.cat(joints), trace.mask.repeat(count, 1), config.reduce)  # (M*B, L, n)
    flat = scores.reshape(-1, n)
    flat_mask = corr_mask[None, :, None, :].expand(count, batch, layers, n).reshape(-1, n)
    saliency = trace.saliency[None, :, None, :].expand(count, batch, layers, n).reshape(-1, n)
    rho = _spearman_compute(flat, saliency, flat_mask, "average")
    entropy, gini_values = _clarity(flat, flat_mask)
    return torch.stack([rho, entropy, gini_values]).reshape(3, count, batch, layers), used


def _clarity(scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized entropy and Gini of `(M, n)` relevance maps; NaN for maps with no mass."""
    scores = scores.clamp_min(0)
    empty = (scores * mask).sum(dim=-1) <= 0
    safe = torch.where(empty[:, None], torch.ones_like(scores), scores)
    safe = safe * mask.to(safe.dtype)
    return (_normalized_entropy_compute(safe, mask).masked_fill(empty, float("nan")),
            _gini_compute(safe, mask).masked_fill(empty, float("nan")))


def _layer_medians(values: np.ndarray) -> list[float]:
    """Median over examples of `(N, L)` values per layer, ignoring NaN (NaN for an all-NaN layer)."""
    return [float(np.median(column[np.isfinite(column)])) if np.isfinite(column).any() else float("nan")
            for column in values.T]


def summarize_study(result: SST2StudyResult) -> dict[str, dict]:
    """Per method and layer: median, mean, std, bootstrap 95 % interval of the median, count,
    Wilcoxon p-value against rollout and the ratio of medians to rollout's (when rollout ran)."""
    baseline = result.correlations.get("rollout")
    names = list(result.correlations)
    table = np.concatenate([result.correlations[name].T for name in names], axis=0)  # (methods * L, N)
    device = result.config.device if result.config.device != "cuda" or torch.cuda.is_available() else "cpu"
    flat = summarize_score_table(table, seed=result.config.seed, device=device)
    layers = result.num_layers
    if baseline is not None:  # rollout's medians, read once from its own summaries
        start = names.index("rollout") * layers
        base_medians = [s.median for s in flat[start:start + layers]]
    summaries: dict[str, dict] = {}
    for index, name in enumerate(names):
        values = result.correlations[name]
        layer_summaries = flat[index * result.num_layers:(index + 1) * result.num_layers]
        entry: dict = {
            "median": [s.median for s in layer_summaries],
            "mean": [s.mean for s in layer_summaries],
            "std": [s.std for s in layer_summaries],
            "ci95": [list(s.ci95) for s in layer_summaries],
            "count": [s.count for s in layer_summaries],
            "entropy_median": _layer_medians(result.entropy[name]),
            "gini_median": _layer_medians(result.gini[name]),
        }
        if name in result.layers_used:
            entry["layers_used_mean"] = float(result.layers_used[name].mean())
        if baseline is not None and name != "rollout":
            entry["ratio_to_rollout"] = [m / b if b not in (0.0,) and np.isfinite(b) else float("nan")
                                         for m, b in zip(entry["median"], base_medians)]
            entry["wilcoxon_p_vs_rollout"] = [paired_wilcoxon(values[:, layer], baseline[:, layer])
                                              for layer in range(result.num_layers)]
        summaries[name] = entry
    return summaries



def write_sst2_outputs(result: SST2StudyResult, out_dir: str) -> Path:
    """Write ``results.json``, ``results.csv``, ``per_example.csv``, ``table.md`` and ``layers.png``.

    Returns:
        The output folder (written atomically).
    """
    from attnlens.experiments.outputs import write_atomically, write_csv, write_json  # noqa: PLC0415
    from attnlens.viz.layer_curves import plot_layer_curves  # noqa: PLC0415
    from attnlens.viz.tables import clarity_rows, markdown_table, study_rows  # noqa: PLC0415

    def fill(folder: Path) -> None:
        write_json(result.to_json(), folder / "results.json")
        rows = []
        for name, entry in result.summaries.items():
            for layer in range(result.num_layers):
                rows.append([name, layer + 1, entry["median"][layer], entry["mean"][layer], entry["std"][layer],
                             entry["ci95"][layer][0], entry["ci95"][layer][1], entry["count"][layer],
                             entry.get("ratio_to_rollout", [""] * result.num_layers)[layer],
                             entry.get("wilcoxon_p_vs_rollout", [""] * result.num_layers)[layer],
                             entry["entropy_median"][layer], entry["gini_median"][layer]])
        write_csv(["method", "layer", "median", "mean", "std", "ci95_low", "ci95_high", "count", "ratio_to_rollout",
                   "wilcoxon_p_vs_rollout", "entropy_median", "gini_median"], rows, folder / "results.csv")
        names = list(result.correlations)
        header = ["example", "tokens", "gold", "predicted", "sentence"] + [
            f"{n}@L{layer + 1}" for n in names for layer in range(result.num_layers)]
        per_example = [[i, int(result.lengths[i]), int(result.labels[i]), int(result.predictions[i]),
                        result.sentences[i]] + [result.correlations[n][i, layer] for n in names
                                                for layer in range(result.num_layers)]
                       for i in range(result.n_examples)]
        write_csv(header, per_example, folder / "per_example.csv")
        head, table_rows = study_rows(result.summaries)
        title = (f"SST-2 {result.config.split}, {result.n_examples} sentences, model {result.model}, accuracy "
                 f"{result.accuracy:.4f}; median Spearman ρ between relevance (reduce={result.config.reduce}) and "
                 f"input-gradient saliency ({result.config.saliency} at {result.config.saliency_at}) per layer.")
        clarity_head, clarity_table = clarity_rows(result.summaries)
        clarity = ("\nClarity of the relevance maps (median over sentences): normalized entropy (1 = uniform) and "
                   "Gini coefficient (0 = uniform).\n\n" + markdown_table(clarity_head, clarity_table))
        (folder / "table.md").write_text(title + "\n\n" + markdown_table(head, table_rows) + clarity,
                                         encoding="utf-8")
        plot_layer_curves(result.summaries, folder / "layers.png", title=f"SST-2 {result.config.split}: {result.model}")

    return write_atomically(out_dir, fill)


__all__ = [
    "METHOD_FAMILIES",
    "SST2StudyConfig",
    "SST2StudyResult",
    "run_sst2_study",
    "summarize_study",
    "validate_sst2_config",
    "write_sst2_outputs",
]
