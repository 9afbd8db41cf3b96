"""``attnlens evaluate``: how faithful each explanation is to the model, one table methods × metrics.

Per batch one trace; every method's relevance after the last layer (registered methods through
the :class:`~attnlens.methods.registry.MethodCache`, the gradient baselines from the trace, the
model's own leave-one-out, and the data-independent position-only and random maps); then the
faithfulness metrics (:mod:`attnlens.metrics.faithfulness`), whose perturbations run through the
adapter (:mod:`attnlens.experiments.faithfulness`):

- ``aopc_comp`` / ``aopc_suff``: ERASER's AOPC comprehensiveness (higher is better) and
  sufficiency (lower is better) over the ``--fractions`` bins (DeYoung et al., ACL 2020);
- ``loo_tau``: Kendall τ-b with leave-one-out relevance (ferret's ``taucorr_loo``);
- ``sanity``: Spearman ρ of the maps after every layer was randomised, top down, with the trained
  model's (Adebayo et al., NeurIPS 2018; lower is better, a method at ≥ 0.5 fails), with the
  curve over the cascade in ``results.json``;
- ``position_rho``: Spearman ρ with the position-only map (a data-independent baseline);
- ``reference_tau``: Kendall τ-b with the ``--reference`` explanation (input gradients, or captum's
  Integrated Gradients, Input×Gradient, occlusion, KernelSHAP: :mod:`attnlens.experiments.references`).

Every summary has the median, a bootstrap 95 % interval and a paired Wilcoxon test against
rollout; outputs are written like the study's (JSON, CSV, markdown, PNG), all or nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice, _check_integer
from attnlens._options import option
from attnlens.experiments.faithfulness import (
    aopc_curves,
    candidate_tokens,
    cascading_randomization,
    leave_one_out_probabilities,
    target_probability,
)
from attnlens.experiments.references import CAPTUM_REFERENCES, captum_attributions
from attnlens.experiments.scoring import REDUCTIONS, TARGETS, length_batches
from attnlens.methods._common import _HEAD_FUSIONS
from attnlens.methods.attention_flow import attention_flow
from attnlens.methods.registry import MethodCache, MethodVariant, expand_methods, list_methods
from attnlens.methods.relevance import _relevance_compute
from attnlens.metrics.faithfulness import (
    DEFAULT_FRACTIONS,
    _kendall_tau_compute,
    aopc_comprehensiveness,
    aopc_sufficiency,
    leave_one_out,
    position_map,
    randomization_similarity,
    sanity_passes,
)
from attnlens.metrics.spearman import _spearman_compute

if TYPE_CHECKING:
    from attnlens.datasets import Examples
    from attnlens.models import Adapter

ProgressFn = Callable[[float, int], None]
BASELINES = ("gradient", "grad_x_input", "loo", "position", "random", *CAPTUM_REFERENCES)
REFERENCES = ("loo", "gradient", "grad_x_input", *CAPTUM_REFERENCES)
METRICS = ("aopc_comp", "aopc_suff", "loo_tau", "sanity", "position_rho", "reference_tau")
DEFAULT_METRICS = ("aopc_comp", "aopc_suff", "loo_tau", "sanity", "position_rho")
LOWER_IS_BETTER = ("aopc_suff", "sanity")
PERTURB_MODES = ("remove", "mask")
SANITY_THRESHOLD = 0.5


def _method_choices() -> list[str]:
    return [*list_methods(), *BASELINES]


@dataclass(frozen=True)
class EvaluateConfig:
    """Options of ``attnlens evaluate``; each field is a command-line option."""

    model: str | None = field(default=None, metadata=option(
        "hub id or local folder of a sequence classifier (default: $ATTNLENS_MODEL or the fine-tuned default)",
        metavar="ID|DIR"))
    data: str | None = field(default=None, metadata=option(
        "a TSV/CSV/JSONL file, a folder of <split>.{tsv,csv,jsonl}, or a Hugging Face dataset name (default: the "
        "SST-2 dev set shipped with attnlens)", metavar="FILE|DIR|NAME"))
    split: str | None = field(default=None, metadata=option("split of a folder or hub dataset"))
    text_column: str | None = field(default=None, metadata=option("column holding the text"))
    label_column: str | None = field(default=None, metadata=option("column holding the label"))
    limit: int | None = field(default=None, metadata=option("first N examples only (default: all)", metavar="N"))
    methods: tuple[str, ...] = field(default=("raw", "rollout", "selective", "gradient", "loo", "random"),
                                     metadata=option("comma list of registered methods and baselines",
                                                     choices=_method_choices))
    metrics: tuple[str, ...] = field(default=DEFAULT_METRICS, metadata=option(
        "comma list of metrics (reference_tau: Kendall τ with --reference)", choices=METRICS))
    reference: str = field(default="gradient", metadata=option(
        "the reference explanation of reference_tau (ig, input_x_gradient, occlusion, kernel_shap need captum)",
        choices=REFERENCES))
    thresholds: tuple[str, ...] = field(default=("0.5", "1", "2"), metadata=option(
        "selective-rollout thresholds, comma list; one result selective@<t> each"))
    alphas: tuple[str, ...] = field(default=("0.9",), metadata=option(
        "network-diffusion strengths in [0, 1), comma list", flag="--alpha"))
    fractions: tuple[str, ...] = field(default=("0.01", "0.05", "0.1", "0.2", "0.5"), metadata=option(
        "AOPC bins: fractions of the (non-special) tokens removed or kept"))
    perturb: str = field(default="remove", metadata=option(
        "remove the tokens (re-packed) or replace them by the mask/unknown token", choices=PERTURB_MODES))
    reduce: str = field(default="max", metadata=option(
        "relevance from joint attention: max over query rows (thesis), the readout row ([CLS]), or the mean",
        choices=REDUCTIONS))
    target: str = field(default="pred", metadata=option("explained class: predicted or gold", choices=TARGETS))
    head_fusion: str = field(default="mean", metadata=option("how heads are fused", choices=_HEAD_FUSIONS))
    sanity_steps: str = field(default="all", metadata=option(
        "randomisation cascade: every step (top 1, 2, ... L layers) or only all layers at once",
        choices=("all", "last")))
    batch_size: int = field(default=16, metadata=option("examples per batch, grouped by length", metavar="B"))
    max_batch: int = field(default=2048, metadata=option(
        "perturbed sequences per adapter call (text adapters run the distinct ones in length-sorted batches)",
        metavar="N"))
    device: str = field(default="cpu", metadata=option("where the model runs", choices=("cpu", "cuda")))
    seed: int = field(default=0, metadata=option("seed of the random map, the randomised weights and the bootstrap"))
    out: str | None = field(default=None, metadata=option(
        "output folder, new or empty (default: runs/evaluate-<model>-<time>)", metavar="DIR"))
    report: bool = field(default=False, metadata=option(
        "also write report.html: one self-contained page with the tables, the AOPC plot and every example's token "
        "heatmaps, sortable and searchable"))

    def check(self) -> tuple[list[MethodVariant], list[str], tuple[float, ...]]:
        """Check every option; return (registered variants, baselines, fractions) in the order given."""
        _check_integer(self.batch_size, "batch_size", low=1, description="a positive integer")
        _check_integer(self.max_batch, "max_batch", low=1, description="a positive integer")
        _check_integer(self.limit, "limit", low=1, allow_none=True, description="a positive integer")
        for name in self.metrics:
            _check_choice(name, "metrics", METRICS)
        _check_choice(self.reference, "reference", REFERENCES)
        if not self.methods:
            raise ArgumentError("Expected `methods` to name at least one method, but got none.", "methods")
        registered = [m for m in self.methods if m not in BASELINES]
        baselines = [m for m in self.methods if m in BASELINES]
        variants = expand_methods(registered, threshold=list(self.thresholds), alpha=list(self.alphas),
                                  head_fusion=self.head_fusion) if registered else []
        try:
            fractions = tuple(float(f) for f in self.fractions)
        except ValueError as err:
            raise ArgumentError(f"Expected `fractions` to be numbers in (0, 1], but got {','.join(self.fractions)}.",
                                "fractions") from err
        if not fractions or not all(0 < f <= 1 for f in fractions):
            raise ArgumentError(f"Expected `fractions` to be numbers in (0, 1], but got {','.join(self.fractions)}.",
                                "fractions")
        return variants, baselines, fractions

    def load_examples(self):
        """The examples evaluated (SST-2 dev by default)."""
        from attnlens.datasets import load_examples  # noqa: PLC0415

        if self.data is None:
            from attnlens.datasets.sst2 import load_sst2_examples  # noqa: PLC0415

            examples = load_sst2_examples("dev")
            return examples[: self.limit] if self.limit is not None else examples
        return load_examples(self.data, split=self.split, text_column=self.text_column,
                             label_column=self.label_column, limit=self.limit)


@dataclass
class EvaluateResult:
    """Per-example faithfulness scores and their summary.

    Attributes:
        methods: the M explanation names, in order.
        scores: metric → `(M, N)` per-example values (NaN where undefined).
        sanity_curve: `(M, N, S)` ρ after each cascade step (S = L or 1).
        removed, kept: `(M, N, K)` target probabilities per AOPC bin.
        probability: `(N,)` target probability on the whole input.
        ids, texts, predictions, labels: per example.
        summary: the JSON-ready summary (see :func:`summarize_evaluation`).
    """

    methods: list[str]
    scores: dict[str, np.ndarray]
    sanity_curve: np.ndarray
    removed: np.ndarray
    kept: np.ndarray
    probability: np.ndarray
    ids: list[str]
    texts: list[str]
    predictions: np.ndarray
    labels: np.ndarray
    summary: dict = field(default_factory=dict)
    out: Path | None = None
    tokens: list[list[str]] = field(default_factory=list)
    specials: list[list[bool]] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)


def _last_layer_maps(cache: MethodCache, variants: Sequence[MethodVariant], trace, reduce: str) -> list[Tensor]:
    """Every registered variant's relevance after the last layer, `(B, n)` each (flow on the last layer only)."""
    mask, maps = trace.mask, []
    for variant in variants:
        if variant.spec.name == "flow":
            joint = attention_flow(cache.fused(variant.params["head_fusion"]), mask=mask, layer=-1,
                                   residual=variant.params["residual"])
        else:
            joint = variant.compute(cache).joint[:, -1]
        how, readout = ("readout", trace.readout) if reduce == "cls" else (reduce, None)
        maps.append(_relevance_compute(joint, mask, how, 0, readout))
    return maps


def explanation_maps(adapter: Adapter, texts: Sequence[str], trace, variants: Sequence[MethodVariant],
                     baselines: Sequence[str], *, reduce: str = "max", seed: int = 0, loo: Tensor | None = None,
                     ) -> Tensor:
    """`(M, B, n)` relevance of every explanation of one batch (registered variants, then baselines).

    Registered methods read the last layer's joint attention (:func:`attnlens.methods.relevance`);
    ``gradient`` is the trace's saliency, ``grad_x_input`` |Σ_d g·e| at the word embeddings
    (Shrikumar et al. 2017), ``loo`` the given leave-one-out relevance, ``position`` earlier tokens
    first, ``random`` a seeded uniform map.
    """
    mask = trace.mask
    cache = MethodCache(trace.attentions, mask, extras=trace.extras, readout=trace.readout)
    maps = _last_layer_maps(cache, variants, trace, reduce)
    dtype = trace.attentions.dtype
    for name in baselines:
        if name == "gradient":
            maps.append(trace.saliency.to(dtype))
        elif name == "grad_x_input":
            other = adapter.trace(list(texts), target=trace.target, saliency="grad_x_input",
                                  saliency_at="word_embeddings")
            maps.append(other.saliency.to(dtype))
        elif name == "loo":
            maps.append((loo if loo is not None else torch.zeros_like(mask, dtype=dtype)).to(dtype))
        elif name in CAPTUM_REFERENCES:
            maps.append(captum_attributions(adapter, texts, trace.target, algorithm=name,
                                            special_mask=trace.special_mask).to(dtype))
        elif name == "position":
            maps.append(position_map(mask, dtype=dtype))
        else:
            generator = torch.Generator().manual_seed(seed)
            maps.append((torch.rand(mask.shape, generator=generator, dtype=torch.float64).to(mask.device, dtype)
                         * mask.to(dtype)))
    return torch.stack([m.to(mask.device) for m in maps])


def evaluate(config: EvaluateConfig, *, adapter: Adapter | None = None, examples: Examples | None = None,
             progress: ProgressFn | None = None) -> EvaluateResult:
    """Measure the faithfulness of every explanation (without writing files).

    Args:
        config: the options.
        adapter: an already loaded text classifier adapter; else `config.model` is loaded.
        examples: already loaded examples; else the config loads them.
        progress: called with (examples done, total) after every batch.

    Returns:
        An :class:`EvaluateResult` with its summary.

    Raises:
        ValueError: on bad options, data or model (one line each).
    """
    variants, baselines, fractions = config.check()
    if examples is None:
        examples = config.load_examples()
    elif config.limit is not None:
        examples = examples[: config.limit]
    if len(examples) == 0:
        raise ArgumentError("Expected at least one example to evaluate, but got none.", "data")
    model_name = config.model
    if adapter is None:
        from attnlens.models import load_adapter  # noqa: PLC0415
        from attnlens.models.defaults import resolve_sst2_model  # noqa: PLC0415

        model_name = resolve_sst2_model(config.model)
        adapter = load_adapter(model_name, device=config.device)
    if getattr(adapter, "modality", "text") != "text" or getattr(adapter, "task", "classification") != "classification":
        raise ArgumentError(f"Expected `model` to be a text sequence classifier, but got a "
                            f"{getattr(adapter, 'family', type(adapter).__name__)!r} model.", "model")
    provides = set(getattr(adapter, "provides", ("attention",)))
    for variant in variants:
        missing = sorted(variant.spec.needs - provides)
        if missing:
            raise ArgumentError(f"Expected every entry of `methods` to be a method this model supports, but "
                                f"{variant.spec.name!r} needs {', '.join(missing)}.", "methods")
    from attnlens.experiments.study import align_labels  # noqa: PLC0415

    examples = align_labels(examples, adapter)
    model_name = str(model_name or getattr(getattr(adapter.model, "config", None), "_name_or_path", "model"))
    names = [v.name for v in variants] + list(baselines)
    texts = [e.text for e in examples]
    gold = [e.label for e in examples]
    if config.target == "gold" and any(label is None for label in gold):
        raise ArgumentError("Expected every example to have a label when `target` is 'gold', but some have none.",
                            "target")
    wanted = set(config.metrics)
    need_loo = "loo_tau" in wanted or "loo" in baselines or ("reference_tau" in wanted and config.reference == "loo")
    need_aopc = bool(wanted & {"aopc_comp", "aopc_suff"})
    steps = adapter.num_layers if config.sanity_steps == "all" else 1
    count, total, k = len(names), len(texts), len(fractions)
    scores = {m: np.full((count, total), np.nan) for m in METRICS}
    curve = np.full((count, total, steps), np.nan)
    removed, kept = np.full((count, total, k), np.nan), np.full((count, total, k), np.nan)
    probability, predictions = np.zeros(total), np.zeros(total, dtype=np.int64)
    timings = {"trace": 0.0, "leave_one_out": 0.0, "aopc": 0.0, "sanity": 0.0}
    tokens: list[list[str]] = [[] for _ in texts]
    specials: list[list[bool]] = [[] for _ in texts]
    per_map: list[np.ndarray] = [np.zeros((count, 0)) for _ in texts]
    plan = length_batches(adapter.count_tokens(texts), config.batch_size)
    done = 0
    started = time.perf_counter()
    for batch in plan:
        batch_texts = [texts[i] for i in batch]
        labels = None if any(gold[i] is None for i in batch) else [gold[i] for i in batch]
        clock = time.perf_counter()
        trace = adapter.trace(batch_texts, target=config.target, labels=labels, saliency="sum_abs")
        timings["trace"] += time.perf_counter() - clock
        mask = trace.mask
        candidates = candidate_tokens(trace)
        p = target_probability(trace.logits, trace.target)
        loo = None
        if need_loo:
            clock = time.perf_counter()
            without = leave_one_out_probabilities(adapter, batch_texts, trace, mode=config.perturb,
                                                  max_batch=config.max_batch)
            loo = leave_one_out(p, without, mask=candidates.to(without.device))
            timings["leave_one_out"] += time.perf_counter() - clock
        maps = explanation_maps(adapter, batch_texts, trace, variants, baselines, reduce=config.reduce,
                                seed=config.seed, loo=loo).double()
        flat_candidates = candidates[None].expand(count, -1, -1).reshape(-1, mask.shape[1])
        flat = maps.reshape(count * len(batch), -1)
        index = np.asarray(batch)
        if loo is not None and "loo_tau" in wanted:
            reference = loo.double()[None].expand(count, -1, -1).reshape(flat.shape)
            scores["loo_tau"][:, index] = _kendall_tau_compute(flat, reference, flat_candidates).view(
                count, -1).cpu().numpy()
        if "reference_tau" in wanted:
            if config.reference in names:
                reference = maps[names.index(config.reference)]
            else:
                reference = explanation_maps(adapter, batch_texts, trace, [], [config.reference], loo=loo)[0].double()
            reference = reference[None].expand(count, -1, -1).reshape(flat.shape)
            scores["reference_tau"][:, index] = _kendall_tau_compute(flat, reference, flat_candidates).view(
                count, -1).cpu().numpy()
        if "position_rho" in wanted:
            position = position_map(mask, dtype=torch.float64)[None].expand(count, -1, -1).reshape(flat.shape)
            scores["position_rho"][:, index] = _spearman_compute(flat, position, flat_candidates, "average").view(
                count, -1).cpu().numpy()
        if need_aopc:
            clock = time.perf_counter()
            curves = aopc_curves(adapter, batch_texts, trace, maps, fractions=fractions, mode=config.perturb,
                                 max_batch=config.max_batch)
            base = curves.probability[None].expand(count, -1).reshape(-1)
            scores["aopc_comp"][:, index] = aopc_comprehensiveness(base, curves.removed.reshape(count * len(batch), -1)
                                                                   ).view(count, -1).cpu().numpy()
            scores["aopc_suff"][:, index] = aopc_sufficiency(base, curves.kept.reshape(count * len(batch), -1)
                                                             ).view(count, -1).cpu().numpy()
            removed[:, index] = curves.removed.cpu().numpy()
            kept[:, index] = curves.kept.cpu().numpy()
            timings["aopc"] += time.perf_counter() - clock
        if "sanity" in wanted:
            clock = time.perf_counter()
            curve[:, index] = _sanity_batch(adapter, batch_texts, trace, maps, variants, baselines, config,
                                            candidates, steps).cpu().numpy()
            scores["sanity"][:, index] = curve[:, index, -1]
            timings["sanity"] += time.perf_counter() - clock
        probability[index] = p.cpu().numpy()
        predictions[index] = trace.logits.argmax(dim=-1).cpu().numpy()
        host_maps, host_mask = maps.float().cpu().numpy(), mask.cpu().numpy()
        special = (trace.special_mask if trace.special_mask is not None else torch.zeros_like(mask)).cpu().numpy()
        for slot, i in enumerate(batch):
            valid = host_mask[slot]
            tokens[i], specials[i] = list(trace.tokens[slot]), special[slot][valid].tolist()
            per_map[i] = host_maps[:, slot][:, valid]
        done += len(batch)
        if progress is not None:
            progress(done, total)
    timings["total"] = time.perf_counter() - started
    result = EvaluateResult(methods=names, scores={m: scores[m] for m in config.metrics}, sanity_curve=curve,
                            removed=removed, kept=kept, probability=probability,
                            ids=[str(e.id) for e in examples], texts=texts, predictions=predictions,
                            labels=np.asarray([-1 if g is None else g for g in gold], dtype=np.int64),
                            tokens=tokens, specials=specials, maps=per_map)
    result.summary = summarize_evaluation(result, seed=config.seed, fractions=fractions)
    result.summary.update(model=model_name, data=str(getattr(examples, "source", config.data)), n_examples=total,
                          timings=timings, settings={"perturb": config.perturb, "reduce": config.reduce,
                                                     "target": config.target, "head_fusion": config.head_fusion,
                                                     "sanity_steps": config.sanity_steps, "seed": config.seed,
                                                     "reference": config.reference})
    return result


def run_and_write_evaluation(config: EvaluateConfig, *, adapter: Adapter | None = None,
                             examples: Examples | None = None, progress: ProgressFn | None = None) -> EvaluateResult:
    """Check the options and the output folder, :func:`evaluate`, then write every output file atomically
    into `config.out` (or a new ``runs/evaluate-<model>-<time>``).

    Returns:
        The :class:`EvaluateResult` with `out` set.

    Raises:
        ValueError: on bad options, data, model, or an output folder that is not new or empty.
    """
    import re  # noqa: PLC0415

    from attnlens._checks import _check_creatable_folder  # noqa: PLC0415
    from attnlens.experiments.evaluate_outputs import write_evaluation_outputs  # noqa: PLC0415
    from attnlens.experiments.outputs import check_output_folder  # noqa: PLC0415

    config.check()
    if config.out is not None:
        check_output_folder(config.out, "out")
    else:
        _check_creatable_folder("runs", "runs")
    result = evaluate(config, adapter=adapter, examples=examples, progress=progress)
    out = config.out
    if out is None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(result.summary["model"]).name).strip("-") or "model"
        out = Path("runs") / f"evaluate-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    result.out = write_evaluation_outputs(result, out, report=config.report)
    return result


def _sanity_batch(adapter, texts, trace, maps: Tensor, variants, baselines, config: EvaluateConfig,
                  candidates: Tensor, steps: int) -> Tensor:
    """`(M, B, S)` ρ of every map after each cascade step with the trained model's (NaN for ``loo``)."""
    layers = adapter.num_layers
    schedule = list(range(1, layers + 1)) if steps == layers else [layers]
    count, batch = maps.shape[0], maps.shape[1]
    out = torch.full((count, batch, len(schedule)), float("nan"), dtype=torch.float64)
    plain = [b for b in baselines if b != "loo"]
    rows = [i for i, name in enumerate([v.name for v in variants] + list(baselines)) if name != "loo"]
    with cascading_randomization(adapter, seed=config.seed) as randomize:
        for slot, step in enumerate(schedule):
            randomize(step)
            shuffled = adapter.trace(list(texts), target=trace.target, saliency="sum_abs")
            again = explanation_maps(adapter, texts, shuffled, variants, plain, reduce=config.reduce,
                                     seed=config.seed).double()
            flat_candidates = candidates[None].expand(len(rows), -1, -1).reshape(-1, candidates.shape[1])
            rho = randomization_similarity(maps[rows].reshape(len(rows) * batch, -1),
                                           again.reshape(len(rows) * batch, -1), mask=flat_candidates)
            out[rows, :, slot] = rho.view(len(rows), batch).cpu()
    return out


def _interval(values: np.ndarray, seed: int) -> tuple[float, float]:
    from attnlens.metrics.summary import bootstrap_median_interval  # noqa: PLC0415

    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (math.nan, math.nan)
    low, high = bootstrap_median_interval(torch.from_numpy(finite)[None], seed=seed)[0].tolist()
    return (low, high)


def summarize_evaluation(result: EvaluateResult, *, seed: int = 0,
                         fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict:
    """The summary of an evaluation: per method and metric the median, mean, CI95, count and the
    paired Wilcoxon p-value against rollout (Wilcoxon 1945; bootstrap percentile CI, Efron &
    Tibshirani 1993), the sanity verdict and cascade curve, and the mean AOPC curves per bin."""
    from attnlens.metrics.summary import paired_wilcoxon  # noqa: PLC0415

    baseline = result.methods.index("rollout") if "rollout" in result.methods else None
    methods = []
    for slot, name in enumerate(result.methods):
        entry: dict = {"name": name, "metrics": {}}
        for metric, values in result.scores.items():
            row = values[slot]
            finite = row[np.isfinite(row)]
            p_value = None
            if baseline is not None and slot != baseline:
                p_value = paired_wilcoxon(row, values[baseline])
            entry["metrics"][metric] = {
                "median": float(np.median(finite)) if finite.size else math.nan,
                "mean": float(finite.mean()) if finite.size else math.nan,
                "ci95": list(_interval(row, seed)), "count": int(finite.size), "wilcoxon_p_vs_rollout": p_value}
        if "sanity" in result.scores:
            median = entry["metrics"]["sanity"]["median"]
            entry["sanity_passes"] = sanity_passes(median, threshold=SANITY_THRESHOLD)
            entry["sanity_curve"] = [float(np.nanmedian(c)) if np.isfinite(c).any() else math.nan
                                     for c in result.sanity_curve[slot].T]
        if np.isfinite(result.removed[slot]).any():
            entry["comprehensiveness_per_bin"] = (result.probability[:, None] - result.removed[slot]).mean(0).tolist()
            entry["sufficiency_per_bin"] = (result.probability[:, None] - result.kept[slot]).mean(0).tolist()
        methods.append(entry)
    return {"methods": methods, "metrics": list(result.scores), "fractions": list(fractions),
            "lower_is_better": [m for m in LOWER_IS_BETTER if m in result.scores],
            "sanity_threshold": SANITY_THRESHOLD}


__all__ = ["BASELINES", "METRICS", "EvaluateConfig", "EvaluateResult", "evaluate", "explanation_maps",
           "run_and_write_evaluation", "summarize_evaluation"]
