"""`score`: examples → traces → every method's relevance → a `ScoreTable`.

Per batch, one trace of the model (attention, logits, target, reference saliency), one
:class:`~attnlens.methods.registry.MethodCache` shared by every method variant, and one pass of
the metrics over all variants and layers together: Spearman ρ against the reference explanation
(Spearman 1904), normalized entropy and Gini of each relevance map. Device results are copied to
the host once per batch, after all batches are queued.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice
from attnlens.experiments.score_table import METRICS, ScoreTable
from attnlens.methods.registry import MethodCache, MethodVariant
from attnlens.methods.relevance import _relevance_compute
from attnlens.metrics.clarity import _gini_compute, _normalized_entropy_compute
from attnlens.metrics.spearman import _spearman_compute

if TYPE_CHECKING:
    from attnlens.datasets import Examples
    from attnlens.models import Adapter

ProgressFn = Callable[[float, int], None]
REDUCTIONS = ("max", "cls", "mean")
TARGETS = ("pred", "gold")
TIES = ("average", "dense")
# gradient: the adapter's input-gradient saliency of the explained logit; loo: leave-one-out (Abnar & Zuidema 2020);
# ig, input_x_gradient, occlusion, kernel_shap, lime: captum's attributions (attnlens.experiments.references); all as |value|
REFERENCES = ("gradient", "loo", "ig", "input_x_gradient", "occlusion", "kernel_shap", "lime")


FORMS = ("scan", "unified")  # hidden-attention forms of the state-space adapters


def check_trace_options(adapter: object, options: ScoreOptions) -> None:
    """Raise a one-line `ArgumentError` when the adapter's ``trace`` does not take the options' ``form``."""
    import inspect  # noqa: PLC0415

    if options.form is not None and "form" not in inspect.signature(adapter.trace).parameters:
        raise ArgumentError(f"Expected `form` only with a state-space model (Mamba, Mamba-2, Falcon-Mamba, Jamba, the "
                            f"Mamba classifier), but the model is a {getattr(adapter, 'family', '?')!r} model.", "form")


@dataclass(frozen=True)
class ScoreOptions:
    """How `score` explains and compares.

    Attributes:
        reduce: relevance from joint attention: ``max`` over query rows (the thesis), ``cls`` the
            readout row (the adapter's ``Trace.readout``: [CLS], or the last token of a causal
            classifier), ``mean`` over rows.
        saliency: input-gradient reduction (``sum_abs``, ``l2``, ``grad_x_input``).
        saliency_at: where the gradient is taken (``layer_input``, ``word_embeddings``).
        target: ``pred`` (the predicted class) or ``gold`` (the label).
        reference: the explanation methods are correlated with (``gradient``).
        ties: Spearman's tie handling, ``average`` (= scipy) or ``dense`` (the thesis's formula).
        exclude_special: leave special tokens ([CLS], [SEP]) out of the correlation.
        batch_size: examples per batch (batches group examples of similar length).
        form: the hidden attention of state-space models, ``scan`` (α) or ``unified`` (the whole
            mixer, Zimerman, Ali & Wolf, ICLR 2025); None leaves the adapter's default (scan).
            Only adapters whose ``trace`` takes a ``form`` accept it.
    """

    reduce: str = "max"
    saliency: str = "sum_abs"
    saliency_at: str = "layer_input"
    target: str = "pred"
    reference: str = "gradient"
    ties: str = "average"
    exclude_special: bool = False
    batch_size: int = 32
    form: str | None = None

    def trace_options(self) -> dict:
        """The keyword arguments of every ``adapter.trace`` call beyond target, labels and saliency."""
        return {} if self.form is None else {"form": self.form}

    def check(self) -> None:
        """Raise a one-line `ArgumentError` naming the first bad option."""
        from attnlens._checks import _check_integer  # noqa: PLC0415
        from attnlens.models._saliency import SALIENCY_REDUCTIONS  # noqa: PLC0415

        _check_choice(self.reduce, "reduce", REDUCTIONS)
        _check_choice(self.saliency, "saliency", SALIENCY_REDUCTIONS)
        _check_choice(self.saliency_at, "saliency_at", ("layer_input", "word_embeddings"))
        _check_choice(self.target, "target", TARGETS)
        _check_choice(self.reference, "reference", REFERENCES)
        _check_choice(self.ties, "ties", TIES)
        _check_integer(self.batch_size, "batch_size", low=1, description="a positive integer")
        if self.form is not None:
            _check_choice(self.form, "form", FORMS)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, longest first), so padding is small.

    Example:
        >>> length_batches([3, 9, 1, 7, 5], 2)
        [[1, 3], [4, 0], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def score(
    adapter: Adapter,
    examples: Examples,
    methods: Sequence[MethodVariant],
    *,
    options: ScoreOptions = ScoreOptions(),
    meta: dict | None = None,
    progress: ProgressFn | None = None,
    skip_batches: Collection[int] = (),
    on_batch: Callable[[int, ScoreTable], None] | None = None,
    lengths: Sequence[int] | None = None,
) -> ScoreTable:
    """Score every example with every method at every layer.

    Args:
        adapter: a model adapter (:class:`attnlens.models.Adapter`).
        examples: an :class:`attnlens.datasets.Examples` (or any sequence of examples with `id`,
            `index`, `text`, `label`); labels are needed for ``target="gold"`` and accuracy.
        methods: variants from :func:`attnlens.methods.registry.expand_methods`.
        options: how to explain and compare.
        meta: recorded in the table (merges check it).
        progress: called with (examples done, total) after every batch, and with fractional
            counts within a batch by slow methods (attention flow).
        skip_batches: batches of the plan (:func:`length_batches` over the examples) not to score,
            because a resumed shard already holds them.
        on_batch: called with (batch number, its :class:`ScoreTable`) for every scored batch, one
            batch late (after the next batch's work is queued, so a device is never idle waiting).
        lengths: every example's token count, as ``adapter.count_tokens`` gives it, when the caller
            has counted already; None counts here.

    Returns:
        A :class:`ScoreTable` with one row per example × method × layer, in source order (the
        scored batches only).

    Raises:
        ValueError: on bad options, an empty example set, or inputs the adapter refuses.
    """
    options.check()
    if len(examples) == 0:
        raise ValueError("Expected at least one example to score, but got none.")
    texts = [example.text for example in examples]
    gold = [example.label for example in examples]
    if options.target == "gold" and any(label is None for label in gold):
        raise ValueError("Expected every example to have a label when `target` is 'gold', but some have none.")
    lengths = list(adapter.count_tokens(texts) if lengths is None else lengths)
    if len(lengths) != len(texts):
        raise ValueError(f"Expected `lengths` to hold one token count per example ({len(texts)}), but got "
                         f"{len(lengths)}.")
    total, layers, count = len(texts), adapter.num_layers, len(methods)
    names, families = [m.name for m in methods], {m.name: m.family for m in methods}
    timings = {"model": 0.0, "methods": 0.0, "transfer": 0.0}
    plan = length_batches(lengths, options.batch_size)
    skip = set(skip_batches)
    pieces: list[ScoreTable] = []
    pending: list[tuple[int, list[int], Tensor, Tensor, Tensor]] = []

    def to_host(item: tuple[int, list[int], Tensor, Tensor, Tensor]) -> None:
        number, batch, predicted, values, used = item
        start = time.perf_counter()
        values = values.double().cpu().numpy()  # (3, M, B, L)
        piece = ScoreTable(
            methods=list(names), families=dict(families), num_layers=layers, ids=[str(examples[i].id) for i in batch],
            index=np.asarray([examples[i].index for i in batch], dtype=np.int64), texts=[texts[i] for i in batch],
            labels=np.asarray([-1 if gold[i] is None else gold[i] for i in batch], dtype=np.int64),
            predictions=predicted.cpu().numpy().astype(np.int64),
            tokens=np.asarray([lengths[i] for i in batch], dtype=np.int64),
            scores={name: values[slot].transpose(1, 0, 2) for slot, name in enumerate(METRICS)},
            layers_used=used.double().cpu().numpy().T, meta=dict(meta or {}))
        timings["transfer"] += time.perf_counter() - start
        pieces.append(piece)
        if on_batch is not None:
            on_batch(number, piece)

    done = sum(len(plan[k]) for k in skip if k < len(plan))
    for number, batch in enumerate(plan):
        if number in skip:
            continue
        start = time.perf_counter()
        labels = None if any(gold[i] is None for i in batch) else [gold[i] for i in batch]
        trace = adapter.trace([texts[i] for i in batch], target=options.target, labels=labels,
                              saliency=options.saliency, saliency_at=options.saliency_at, **options.trace_options())
        if options.reference != "gradient":
            trace.saliency = _reference_saliency(adapter, [texts[i] for i in batch], trace, options.reference)
        timings["model"] += time.perf_counter() - start
        start = time.perf_counter()
        within = None if progress is None else (lambda fraction: progress(done + fraction * len(batch), total))
        values, used = _score_batch(trace, methods, options, within)
        pending.append((number, batch, trace.logits.argmax(dim=-1), values, used))
        timings["methods"] += time.perf_counter() - start
        if on_batch is not None and len(pending) > 1:  # hand on the previous batch once this one is queued
            to_host(pending.pop(0))
        done += len(batch)
        if progress is not None:
            progress(done, total)
    for item in pending:  # one transfer per batch, after all device work is queued
        to_host(item)
    if not pieces:
        return _empty_table(names, families, layers, meta, timings)
    table = pieces[0].sorted() if len(pieces) == 1 else ScoreTable.concat(pieces)
    table.timings = timings
    return table


def _reference_saliency(adapter: Adapter, texts: list[str], trace, reference: str) -> Tensor:
    """`(B, n)` |reference attribution| per token (0 on padding) that replaces the trace's saliency."""
    if reference == "loo":
        from attnlens.experiments.faithfulness import (  # noqa: PLC0415
            candidate_tokens,
            leave_one_out_probabilities,
            target_probability,
        )
        from attnlens.metrics.faithfulness import leave_one_out  # noqa: PLC0415

        without = leave_one_out_probabilities(adapter, texts, trace)
        values = leave_one_out(target_probability(trace.logits, trace.target), without,
                               mask=candidate_tokens(trace).to(without.device))
    else:
        from attnlens.experiments.references import captum_attributions  # noqa: PLC0415

        values = captum_attributions(adapter, texts, trace.target, algorithm=reference,
                                     special_mask=trace.special_mask)
    return values.abs().to(trace.attentions.dtype).to(trace.mask.device) * trace.mask


def _empty_table(names: list[str], families: dict[str, str], layers: int, meta: dict | None,
                 timings: dict[str, float]) -> ScoreTable:
    empty = np.zeros(0, dtype=np.int64)
    return ScoreTable(methods=names, families=families, num_layers=layers, ids=[], index=empty, texts=[],
                      labels=empty, predictions=empty, tokens=empty,
                      scores={name: np.zeros((0, len(names), layers)) for name in METRICS},
                      layers_used=np.zeros((0, len(names))), meta=dict(meta or {}), timings=timings)


def _score_batch(trace, methods: Sequence[MethodVariant], options: ScoreOptions,
                 within: Callable[[float], None] | None) -> tuple[Tensor, Tensor]:
    """Every method's per-layer relevance for one batch, scored together: Spearman ρ against the
    reference, normalized entropy and Gini as one `(3, M, B, L)` tensor on the batch's device, and
    `(M, B)` layers composed (NaN for methods that are not selective)."""
    mask = trace.mask
    corr_mask = mask & ~trace.special_mask if options.exclude_special and trace.special_mask is not None else mask
    corr_mask = torch.where(corr_mask.any(dim=-1, keepdim=True), corr_mask, mask)
    cache = MethodCache(trace.attentions, mask, extras=trace.extras, progress=within, readout=trace.readout)
    joints, used = [], []
    for method in methods:
        result = method.compute(cache)
        joints.append(result.joint)
        dtype = result.joint.dtype
        used.append(result.used.sum(dim=-1).to(dtype) if result.used is not None else
                    torch.full((mask.shape[0],), float("nan"), dtype=dtype, device=mask.device))
    batch, layers, n = mask.shape[0], joints[0].shape[1], mask.shape[1]
    count = len(methods)
    reduce, readout = ("readout", trace.readout.repeat(count)) if options.reduce == "cls" else (options.reduce, None)
    # the trace was checked by the adapter: the private, check-free parts keep the device busy (no host syncs)
    relevance = _relevance_compute(torch.cat(joints), mask.repeat(count, 1), reduce, 0, readout)  # (M*B, L, n)
    flat = relevance.reshape(-1, n)
    flat_mask = corr_mask[None, :, None, :].expand(count, batch, layers, n).reshape(-1, n)
    reference = trace.saliency[None, :, None, :].expand(count, batch, layers, n).reshape(-1, n)
    rho = _spearman_compute(flat, reference, flat_mask, options.ties)
    entropy, gini_values = _clarity(flat, flat_mask)
    return torch.stack([rho, entropy, gini_values]).reshape(3, count, batch, layers), torch.stack(used)


def _clarity(scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Normalized entropy and Gini of `(M, n)` relevance maps; NaN for maps with no mass."""
    scores = scores.clamp_min(0)
    empty = (scores * mask).sum(dim=-1) <= 0
    safe = torch.where(empty[:, None], torch.ones_like(scores), scores)
    safe = safe * mask.to(safe.dtype)
    return (_normalized_entropy_compute(safe, mask).masked_fill(empty, float("nan")),
            _gini_compute(safe, mask).masked_fill(empty, float("nan")))


__all__ = ["REFERENCES", "ScoreOptions", "length_batches", "score"]
