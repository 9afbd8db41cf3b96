"""The model-driving half of faithfulness: perturbed predictions, leave-one-out, AOPC curves, randomisation.

Everything here runs the model only through the adapter contract (``predict``, ``perturb``,
``trace``, ``layers()``); the math is in :mod:`attnlens.metrics.faithfulness`. Every perturbed
variant of a batch is run as part of a batch: the batch's texts are repeated once per variant, so
the tokenizer pads them to the trace's length and the keep masks stay in the trace's positions.
Special tokens ([CLS], [SEP]) are never removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from attnlens.metrics.faithfulness import DEFAULT_FRACTIONS, _top_k_mask_compute, top_k_counts

if TYPE_CHECKING:
    from attnlens.models import Adapter
    from attnlens.trace import Trace


class AopcCurves(NamedTuple):
    """Target probabilities of one batch under the ERASER perturbations of every explanation.

    Attributes:
        probability: `(B,)` on the whole input.
        removed: `(M, B, K)` with the top-k tokens of each bin removed (comprehensiveness).
        kept: `(M, B, K)` with only the top-k tokens (and special tokens) kept (sufficiency).
        counts: `(B, K)` tokens perturbed per bin.
    """

    probability: Tensor
    removed: Tensor
    kept: Tensor
    counts: Tensor


def candidate_tokens(trace: Trace) -> Tensor:
    """`(B, n)` bool: the valid tokens that may be perturbed (never special tokens), at least one per example."""
    mask = trace.mask
    if trace.special_mask is None:
        return mask
    candidates = mask & ~trace.special_mask.to(mask.device)
    return torch.where(candidates.any(dim=-1, keepdim=True), candidates, mask)


def target_probability(logits: Tensor, target: Tensor) -> Tensor:
    """`(B,)` softmax probability of each example's target class from `(B, C)` logits."""
    return torch.softmax(logits.double(), dim=-1).gather(-1, target.view(-1, 1).to(logits.device)).squeeze(-1)


def perturbed_probabilities(adapter: Adapter, texts: Sequence[str], keep: Tensor, target: Tensor, *,
                            mode: str = "remove", max_batch: int = 2048) -> Tensor:
    """Target probability of every perturbed variant of a batch, the variants run as batches.

    ERASER-style perturbation (DeYoung et al., ACL 2020) through ``adapter.perturb``.

    Args:
        adapter: a text adapter.
        texts: the B texts of one traced batch.
        keep: `(B, V, n)` bool keep masks in the trace's positions (V variants per text).
        target: `(B,)` long, the explained classes.
        mode: ``"remove"`` or ``"mask"`` (see :meth:`attnlens.models.base.Adapter.perturb`).
        max_batch: at most this many sequences per model call (whole copies of the batch).

    Returns:
        `(B, V)` float64 probabilities on the adapter's device.
    """
    batch, variants, n = keep.shape
    per_call = max(1, max_batch // max(batch, 1))
    out = []
    for start in range(0, variants, per_call):
        chunk = keep[:, start:start + per_call]  # (B, v, n)
        v = chunk.shape[1]
        repeated = [text for _ in range(v) for text in texts]  # variant-major: copy j is rows j*B..(j+1)*B
        flat = chunk.transpose(0, 1).reshape(v * batch, n)
        logits = adapter.perturb(repeated, flat.cpu(), mode=mode)
        out.append(target_probability(logits, target.repeat(v)).view(v, batch).T)
    return torch.cat(out, dim=1)


def leave_one_out_probabilities(adapter: Adapter, texts: Sequence[str], trace: Trace, *, mode: str = "remove",
                                max_batch: int = 2048) -> Tensor:
    """`(B, n)` target probability with each candidate token alone removed (the whole input elsewhere).

    Abnar & Zuidema, ACL 2020 ("blank-out"); see :func:`attnlens.metrics.faithfulness.leave_one_out`.
    """
    mask, candidates = trace.mask.cpu(), candidate_tokens(trace).cpu()
    n = mask.shape[1]
    eye = torch.eye(n, dtype=torch.bool)
    keep = mask[:, None, :] & ~(eye[None] & candidates[:, :, None])  # variant i drops token i when it is a candidate
    live = candidates.any(dim=0)  # positions that are a candidate of some example
    probability = target_probability(trace.logits, trace.target)
    without = probability[:, None].repeat(1, n).clone()
    columns = live.nonzero().flatten()
    if len(columns):
        values = perturbed_probabilities(adapter, texts, keep[:, columns], trace.target, mode=mode,
                                         max_batch=max_batch)
        without[:, columns.to(without.device)] = torch.where(candidates[:, columns].to(values.device), values,
                                                             probability[:, None])
    return without


def aopc_curves(adapter: Adapter, texts: Sequence[str], trace: Trace, scores: Tensor, *,
                fractions: Sequence[float] = DEFAULT_FRACTIONS, mode: str = "remove",
                max_batch: int = 2048) -> AopcCurves:
    """The comprehensiveness and sufficiency perturbations of M explanations of one batch.

    DeYoung et al., ERASER, ACL 2020: for each bin remove the top-k candidate tokens, or keep only
    them (special tokens always stay); feed the result to
    :func:`~attnlens.metrics.faithfulness.aopc_comprehensiveness` / ``aopc_sufficiency``.

    Args:
        adapter: a text adapter.
        texts: the B texts of `trace`.
        trace: the batch's trace (mask, special_mask, logits, target).
        scores: `(M, B, n)` relevance of M explanations.
        fractions: the K bins.
        mode: ``"remove"`` or ``"mask"``.
        max_batch: at most this many sequences per model call.

    Returns:
        An :class:`AopcCurves`.
    """
    methods, batch, n = scores.shape
    mask, candidates = trace.mask.cpu(), candidate_tokens(trace).cpu()
    counts = top_k_counts(candidates, fractions=fractions)
    top = _top_k_mask_compute(scores.detach().double().cpu().reshape(methods * batch, n),
                              candidates.repeat(methods, 1), counts.repeat(methods, 1))  # (M*B, K, n)
    top = top.view(methods, batch, -1, n)
    others = mask & ~candidates  # special tokens: always kept
    removed_keep = mask[None, :, None] & ~top
    kept_keep = top | others[None, :, None]
    k = counts.shape[1]
    both = torch.cat([removed_keep, kept_keep], dim=2)  # (M, B, 2K, n)
    flat = both.permute(1, 0, 2, 3).reshape(batch, methods * 2 * k, n)
    values = perturbed_probabilities(adapter, texts, flat, trace.target, mode=mode, max_batch=max_batch)
    values = values.view(batch, methods, 2 * k).permute(1, 0, 2)
    return AopcCurves(target_probability(trace.logits, trace.target), values[..., :k], values[..., k:], counts)


def _reset_module(module: torch.nn.Module) -> None:
    for child in module.modules():
        reset = getattr(child, "reset_parameters", None)
        if callable(reset):  # Linear, LayerNorm, Embedding, ...: their own initialisation
            reset()


@contextlib.contextmanager
def cascading_randomization(adapter: Adapter, *, seed: int = 0) -> Iterator[Callable[[int], None]]:
    """Yield ``randomize(step)``: re-initialise the top `step` layers (cascading, top down), then restore.

    Adebayo et al., NeurIPS 2018 (cascading model randomisation) through ``adapter.layers()``;
    every layer's parameters and buffers are copied first and put back in ``finally``, on success
    and on error alike, and so is the global torch random state.
    """
    layers = adapter.layers()
    saved = [{k: v.detach().clone() for k, v in layer.state_dict().items()} for layer in layers]
    done = 0
    try:
        with torch.random.fork_rng(devices=[]):
            def randomize(step: int) -> None:
                nonlocal done
                with torch.no_grad():
                    while done < step:
                        torch.manual_seed(seed + done)
                        _reset_module(layers[len(layers) - 1 - done])
                        done += 1

            yield randomize
    finally:
        with torch.no_grad():
            for layer, state in zip(layers, saved):
                layer.load_state_dict(state)


__all__ = [
    "AopcCurves",
    "aopc_curves",
    "candidate_tokens",
    "cascading_randomization",
    "leave_one_out_probabilities",
    "perturbed_probabilities",
    "target_probability",
]
