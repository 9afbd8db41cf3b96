"""The table of propagation methods an experiment can run, and the expansion of their options.

Each entry turns a batch of attention `(B, L, H, n, n)` plus `mask (B, n)` into per-layer joint
attention `(B, L, n, n)` (and, for selective variants, which layers were composed). Entries share a
per-batch cache, so diffusion at one alpha is computed once for all methods that use it. Names carry
their option: ``selective@<threshold>``, ``diffusion@<alpha>``, ``diffused_rollout@<alpha>``,
``diffused_selective@<alpha>:<threshold>``, with the numbers exactly as written by the user.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attnlens.methods._common import _apply_mask, _fuse_if_per_head, _residual_attention
from attnlens.methods.rollout import _rollout_compute, _selective_rollout_compute

METHOD_FAMILIES = ("raw", "rollout", "selective", "flow", "diffusion", "diffused_rollout", "diffused_selective")
ComputeFn = Callable[[Tensor, Tensor, dict], "tuple[Tensor, Tensor | None]"]


@dataclass(frozen=True)
class StudyMethod:
    """One runnable method: its display name, family, and the function computing joint attention."""

    name: str
    family: str
    compute: ComputeFn
    uses_threshold: bool = False


def parse_numbers(text: str | Sequence[str], name: str, *, low: float, high: float | None = None,
                  high_inclusive: bool = True, allow_inf: bool = False) -> list[str]:
    """Split a comma list like ``"0.5,1,2"`` and check each is a number in range; keep the spelling.

    Raises:
        ValueError: naming `name` and the offending entry.
    """
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    if not items or any(not t for t in items):
        raise ValueError(f"Expected `{name}` to be a comma-separated list of numbers, but got {text!r}.")
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"Expected every entry of `{name}` to be a number, but got {item!r}.") from None
        bad_high = high is not None and (value > high if high_inclusive else value >= high)
        if math.isnan(value) or (math.isinf(value) and not allow_inf) or value < low or bad_high:
            bound = "" if high is None else (f", {high:g}]" if high_inclusive else f", {high:g})")
            interval = f"[{low:g}{bound or (', inf]' if allow_inf else ', inf)')}"
            raise ValueError(f"Expected every entry of `{name}` to lie in {interval}, but got {item!r}.")
    if len({float(item) for item in items}) != len(items):
        raise ValueError(f"Expected the entries of `{name}` to be distinct numbers, but got {','.join(items)!r}.")
    return items


def _augmented(attn: Tensor, mask: Tensor, residual: bool, cache: dict, source: tuple) -> Tensor:
    """Â = norm_rows(A + I) of already head-fused `(B, L, n, n)` attention, once per batch and source."""
    key = ("augmented", residual, *source)
    if key not in cache:
        cache[key] = _residual_attention(attn, mask, residual=residual)
    return cache[key]


def _fused_cached(attn: Tensor, head_fusion: str, cache: dict) -> Tensor:
    key = ("fused", head_fusion)
    if key not in cache:
        cache[key] = _fuse_if_per_head(attn, how=head_fusion)
    return cache[key]


def _diffuse(attn: Tensor, mask: Tensor, alpha: float, head_fusion: str, cache: dict) -> Tensor:
    from attnlens.methods.network_diffusion import network_diffusion  # noqa: PLC0415

    key = ("diffusion", alpha, head_fusion)
    if key not in cache:
        cache[key] = network_diffusion(_fused_cached(attn, head_fusion, cache), alpha=alpha, mask=mask)
    return cache[key]


def _flow(fused: Tensor, mask: Tensor, cache: dict) -> Tensor:
    """Attention flow at every layer of head-fused `(B, L, n, n)` attention."""
    from attnlens.methods.attention_flow import attention_flow  # noqa: PLC0415

    report = cache.get("progress")  # fraction of the batch done, for the study's progress bar
    progress = None if report is None else (lambda done, total: report(done / total))
    return attention_flow(fused, mask=mask, layer=None, progress=progress)


def build_study_methods(
    methods: Sequence[str],
    *,
    thresholds: Sequence[str] = ("1.0",),
    alphas: Sequence[str] = ("0.9",),
    distance: str = "frobenius",
    head_fusion: str = "mean",
    residual: bool = True,
) -> list[StudyMethod]:
    """Expand method families into runnable methods, one per threshold and/or alpha.

    Args:
        methods: family names from :data:`METHOD_FAMILIES`.
        thresholds: selective-rollout thresholds as written (``"0.5"``, ``"1"``).
        alphas: diffusion strengths as written.
        distance: selective-rollout distance (``"frobenius"`` or ``"frobenius_per_token"``).
        head_fusion: how heads are fused before propagation.
        residual: add the residual identity in rollout-type methods.

    Raises:
        ValueError: on an unknown or repeated family.
    """
    if not methods:
        raise ValueError(f"Expected `methods` to name at least one of {', '.join(METHOD_FAMILIES)}, but got none.")
    for family in methods:
        if family not in METHOD_FAMILIES:
            raise ValueError(f"Expected every entry of `methods` to be one of {', '.join(METHOD_FAMILIES)}, "
                             f"but got {family!r}.")
    if len(set(methods)) != len(methods):
        raise ValueError(f"Expected the entries of `methods` to be distinct, but got {','.join(methods)}.")
    built: list[StudyMethod] = []
    numbers = tuple(float(t) for t in thresholds)
    for family in methods:
        if family == "raw":
            built.append(StudyMethod("raw", family, lambda a, m, c: (
                _apply_mask(_fused_cached(a, head_fusion, c), m), None)))
        elif family == "rollout":
            built.append(StudyMethod("rollout", family, lambda a, m, c: (
                _rollout_compute(_augmented(_fused_cached(a, head_fusion, c), m, residual, c, (head_fusion,)), m),
                None)))
        elif family == "selective":
            for text in thresholds:
                compute = _selective_fn(float(text), numbers, distance, head_fusion, residual)
                built.append(StudyMethod(f"selective@{text}", family, compute, True))
        elif family == "flow":
            built.append(StudyMethod("flow", family, lambda a, m, c: (_flow(_fused_cached(a, head_fusion, c), m, c),
                                                                   None)))
        else:
            for alpha_text in alphas:
                alpha = float(alpha_text)
                if family == "diffusion":
                    built.append(StudyMethod(f"diffusion@{alpha_text}", family, _diffusion_fn(alpha, head_fusion)))
                elif family == "diffused_rollout":
                    built.append(StudyMethod(f"diffused_rollout@{alpha_text}", family,
                                             _diffused_rollout_fn(alpha, head_fusion, residual)))
                else:
                    for text in thresholds:
                        built.append(StudyMethod(
                            f"diffused_selective@{alpha_text}:{text}", family,
                            _diffused_selective_fn(alpha, float(text), numbers, distance, head_fusion, residual), True))
    return built


def _selective_group(augmented: Tensor, mask: Tensor, thresholds: tuple[float, ...], distance: str, cache: dict,
                     source: tuple) -> dict[float, tuple[Tensor, Tensor]]:
    """Selective rollout at every threshold in one pass: the batch is repeated once per threshold
    (per-example thresholds), so L layer steps serve all of them. Cached per batch and source."""
    key = ("selective", distance, thresholds, *source)
    if key not in cache:
        batch = augmented.shape[0]
        values = torch.cat([torch.full((batch,), t, dtype=augmented.dtype, device=augmented.device)
                            for t in thresholds])  # filled on the device: no host-to-device copy
        result = _selective_rollout_compute(augmented.repeat(len(thresholds), 1, 1, 1),
                                            mask.repeat(len(thresholds), 1), values, distance)
        joints, used = result.joint.split(batch), result.used.split(batch)
        cache[key] = {t: (j, u) for t, j, u in zip(thresholds, joints, used)}
    return cache[key]


def _selective_fn(threshold: float, thresholds: tuple[float, ...], distance: str, head_fusion: str,
                  residual: bool) -> ComputeFn:
    def compute(attn: Tensor, mask: Tensor, cache: dict) -> tuple[Tensor, Tensor]:
        augmented = _augmented(_fused_cached(attn, head_fusion, cache), mask, residual, cache, (head_fusion,))
        return _selective_group(augmented, mask, thresholds, distance, cache, (head_fusion,))[threshold]

    return compute


def _diffusion_fn(alpha: float, head_fusion: str) -> ComputeFn:
    return lambda attn, mask, cache: (_diffuse(attn, mask, alpha, head_fusion, cache), None)


def _diffused_rollout_fn(alpha: float, head_fusion: str, residual: bool) -> ComputeFn:
    def compute(attn: Tensor, mask: Tensor, cache: dict) -> tuple[Tensor, None]:
        diffused = _diffuse(attn, mask, alpha, head_fusion, cache)
        return _rollout_compute(_augmented(diffused, mask, residual, cache, ("diffused", alpha, head_fusion)), mask), None

    return compute


def _diffused_selective_fn(alpha: float, threshold: float, thresholds: tuple[float, ...], distance: str,
                           head_fusion: str, residual: bool) -> ComputeFn:
    def compute(attn: Tensor, mask: Tensor, cache: dict) -> tuple[Tensor, Tensor]:
        diffused = _diffuse(attn, mask, alpha, head_fusion, cache)
        source = ("diffused", alpha, head_fusion)
        augmented = _augmented(diffused, mask, residual, cache, source)
        return _selective_group(augmented, mask, thresholds, distance, cache, source)[threshold]

    return compute
