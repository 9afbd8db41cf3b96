"""Token heatmaps of a study's examples for ``report.html``: every method's last-layer relevance.

The study keeps per-example scores, not maps (a run over a whole dataset would hold
examples × methods × layers × tokens). The report re-traces the first few examples after the
study, which costs one forward and backward per batch, and draws each method's relevance after
the last layer (:func:`attnlens.experiments.evaluate.explanation_maps`) next to the reference
explanation the study correlates them with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnlens.datasets.examples import Examples
from attnlens.experiments.scoring import length_batches
from attnlens.methods.registry import MethodVariant
from attnlens.models.base import Adapter


def study_heatmaps(adapter: Adapter, examples: Examples, methods: Sequence[MethodVariant], *, reduce: str = "max",
                   saliency: str = "sum_abs", saliency_at: str = "layer_input", target: str = "pred",
                   batch_size: int = 32, trace_options: dict | None = None) -> dict[str, dict]:
    """Per example id, what the report draws: tokens, special flags, maps and the model's confidence.

    Args:
        adapter: the study's text adapter.
        examples: the examples to draw (the study shows the first ``--report-examples``).
        methods: the study's method variants.
        reduce, saliency, saliency_at, target: the study's options, so the maps are the ones it scored.
        batch_size: examples per trace.
        trace_options: further keyword arguments of ``adapter.trace`` (the study's ``form``).

    Returns:
        ``{id: {"tokens": [n], "special": [n], "maps": {name: [n]}, "confidence": p}}``; ``maps``
        holds every method's relevance after the last layer, then ``gradient`` (the input-gradient
        saliency, the study's reference), over the valid tokens; ``confidence`` is the softmax
        probability of the explained class.
    """
    from attnlens.experiments.evaluate import explanation_maps  # noqa: PLC0415 - evaluate imports the study

    if len(examples) == 0:
        return {}
    texts, ids, gold = examples.texts, examples.ids, examples.labels
    names = [m.name for m in methods] + ["gradient"]
    out: dict[str, dict] = {}
    for batch in length_batches(adapter.count_tokens(texts), batch_size):
        batch_texts = [texts[i] for i in batch]
        labels = None if gold is None else [gold[i] for i in batch]
        trace = adapter.trace(batch_texts, target=target, labels=labels, saliency=saliency, saliency_at=saliency_at,
                              **(trace_options or {}))
        with torch.no_grad():
            maps = explanation_maps(adapter, batch_texts, trace, methods, ["gradient"], reduce=reduce).float().cpu()
            confidence = torch.softmax(trace.logits.double(), dim=-1).gather(-1, trace.target.view(-1, 1))[:, 0]
        mask = trace.mask.cpu()
        special = trace.special_mask.cpu() if trace.special_mask is not None else torch.zeros_like(mask)
        for slot, i in enumerate(batch):
            valid = mask[slot]
            out[ids[i]] = {"tokens": list(trace.tokens[slot]), "special": special[slot][valid].tolist(),
                           "maps": {name: maps[m, slot][valid].tolist() for m, name in enumerate(names)},
                           "confidence": float(confidence[slot])}
    return out


__all__ = ["study_heatmaps"]
