"""Explain one prediction of any supported model: load → trace → method → relevance → heatmap.

The method comes from the registry (:func:`attnlens.methods.registry.list_methods`), the model
family from the adapter registry; the relevance is the readout row of the method's joint attention
after the last layer (the [CLS] row of an encoder, the last token of a causal model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice, _check_integer, _check_number
from attnlens._files import _check_output_file
from attnlens._options import option
from attnlens.methods._common import _HEAD_FUSIONS
from attnlens.methods.registry import MethodCache, get_method, list_methods, method_variant
from attnlens.methods.relevance import relevance
from attnlens.viz.token_heatmap import write_token_heatmap_html

ROLLOUT_NOTE = "rollout is class-agnostic (the same for every target); the saliency column is for the target"


@dataclass(frozen=True)
class ExplainConfig:
    """Options of ``attnlens explain``; each field is a command-line option."""

    text: str = field(metadata=option("the text to explain", positional=True, aliases=("texts",)))
    model: str = field(metadata=option("hub id or local folder (text classifier or Mamba LM)", metavar="ID|DIR",
                                       aliases=("model_name_or_path",)))
    target: str | None = field(default=None, metadata=option(
        "class index or name, or for a language model a token id or single-token string (default: the model's "
        "own prediction). Rollout is class-agnostic: the target changes the saliency column (and mamba_attr), "
        "not the rollout relevance"))
    method: str = field(default="rollout", metadata=option(
        "registered method (mamba_attr needs a Mamba model: hidden-attention gradients)", choices=list_methods))
    start_layer: int = field(default=0, metadata=option("first layer composed by rollout-type methods"))
    threshold: float = field(default=1.0, metadata=option("selective-rollout threshold"))
    alpha: float = field(default=0.9, metadata=option("network-diffusion strength in [0, 1)"))
    head_fusion: str = field(default="mean", metadata=option("how heads are fused", choices=_HEAD_FUSIONS))
    top: int = field(default=10, metadata=option("rows in the table of most relevant tokens, special tokens "
                                                 "excluded"))
    html: str | None = field(default=None, metadata=option(
        "also write an HTML heatmap with the table to this file (checked before the model loads; missing folders "
        "are created)", metavar="PATH"))
    device: str = field(default="cpu", metadata=option("where the model runs", choices=("cpu", "cuda")))


class Explanation(NamedTuple):
    """Result of :func:`explain`.

    Attributes:
        tokens: the text's token strings.
        relevance: `(n,)` relevance per token (the readout row of the joint attention). With
            ``"rollout"`` it does not depend on the target.
        target: the explained token id or class.
        target_label: the target as text (a token or a class name).
        method: the method used.
        html: the written page, or None.
        saliency: `(n,)` input-gradient saliency of the target's logit per token (it does depend
            on the target), or None when the adapter records none.
        special: `(n,)` bool, True on special tokens ([CLS], [SEP], ...); all False when the
            adapter does not say.
    """

    tokens: list[str]
    relevance: Tensor
    target: int
    target_label: str
    method: str
    html: Path | None
    saliency: Tensor | None
    special: Tensor


def _resolve_target(adapter, target: int | str | None) -> int | None:
    """A class index or token id from an int, a digit string, a class name or a single-token string."""
    if target is None or isinstance(target, int):
        return target
    text = str(target)
    if text.lstrip("-").isdigit():
        return int(text)
    return int(adapter.class_index(text))


def explain(
    model_name_or_path: str | None,
    text: str,
    *,
    target: int | str | None = None,
    method: str = "rollout",
    html: str | Path | None = None,
    start_layer: int = 0,
    threshold: float = 1.0,
    alpha: float = 0.9,
    head_fusion: str = "mean",
    device: str = "cpu",
    adapter: object | None = None,
) -> Explanation:
    """Explain one model prediction on `text` with a registered method (default: Attention Rollout).

    Attention Rollout (Abnar & Zuidema 2020) or any method of the registry, read at the adapter's
    readout row: the last token for causal language models (the next-token prediction), [CLS]
    otherwise.

    Args:
        model_name_or_path: Hugging Face id or local folder; ignored when `adapter` is given.
        text: the text to explain.
        target: token id or single-token string (language models), class index or class name to
            explain; None explains the model's own prediction. Rollout relevance is the same for
            every target; the saliency and ``"mamba_attr"`` depend on it.
        method: a registered method (``rollout``, ``selective``, ``diffused_rollout``, ``flow``,
            ``mamba_attr`` for Mamba models, ...).
        html: where to write an HTML heatmap (atomically; missing parent folders are created);
            None writes nothing. Checked before the model is loaded.
        start_layer: first layer composed by rollout-type methods.
        threshold: selective-rollout threshold.
        alpha: network-diffusion strength.
        head_fusion: how heads are fused.
        device: where the model runs.
        adapter: an already built adapter (for example around an in-memory model).

    Returns:
        An :class:`Explanation`.

    Raises:
        ValueError: on an empty text, an unknown method, a target that is not one token or
            class, a method whose needs the model cannot meet (``"mamba_attr"`` without a Mamba
            model), or an `html` path that is an existing folder or lies under a file or a
            read-only folder.
    """
    _check_choice(method, "method", list_methods())
    if not isinstance(text, str) or not text.strip():
        raise ArgumentError(f"Expected `text` to be a non-empty string, but got {text!r}.", "text")
    _check_integer(start_layer, "start_layer")
    _check_number(threshold, "threshold", low=0.0, allow_inf=True)
    _check_number(alpha, "alpha", low=0.0, high=1.0, high_inclusive=False)
    _check_choice(head_fusion, "head_fusion", _HEAD_FUSIONS)
    if html is not None:
        html = _check_output_file(html, "html")
    if adapter is None:
        if model_name_or_path is None:
            raise ValueError("Expected `model_name_or_path` or `adapter`, but got neither.")
        from attnlens.models import load_adapter  # noqa: PLC0415

        adapter = load_adapter(model_name_or_path, device=device)
    target = _resolve_target(adapter, target)
    spec = get_method(method)
    family = getattr(adapter, "family", "")
    if not spec.needs <= set(getattr(adapter, "provides", ("attention",))):
        raise ArgumentError(_missing_needs_message(adapter, family, method), "method")
    trace = adapter.trace([text], target=target)
    variant = method_variant(method, start_layer=start_layer, threshold=threshold, alpha=alpha, head_fusion=head_fusion)
    joint = variant.compute(MethodCache(trace.attentions, trace.mask, extras=trace.extras)).joint[:, -1]
    valid = trace.mask[0]
    scores = relevance(joint, mask=trace.mask, reduce="readout", readout=trace.readout)[0][valid]
    scores = scores.detach().to(torch.float32).cpu()
    saliency = None if trace.saliency is None else trace.saliency[0][valid].detach().to(torch.float32).cpu()
    special = (torch.zeros(scores.shape, dtype=torch.bool) if trace.special_mask is None
               else trace.special_mask[0][valid].detach().cpu())
    tokens = trace.tokens[0]
    chosen = int(trace.target[0])
    label = adapter.label(chosen)
    path = None
    if html is not None:
        title = f"attnlens {method}: explaining {label!r}"
        note = (f"R{ROLLOUT_NOTE[1:]} ({label!r})." if method == "rollout" else
                f"Relevance and saliency are for the target {label!r}.")
        note += " Colours are scaled over the non-special tokens; special tokens are grey."
        path = write_token_heatmap_html(html, tokens, scores, title=title, saliency=saliency, special=special,
                                        note=note)
    return Explanation(tokens=tokens, relevance=scores, target=chosen, target_label=label, method=method, html=path,
                       saliency=saliency, special=special)


def explain_config(config: ExplainConfig) -> Explanation:
    """:func:`explain` with the options of an :class:`ExplainConfig` (what ``attnlens explain`` calls)."""
    _check_integer(config.top, "top", low=1)
    return explain(config.model, config.text, target=config.target, method=config.method, html=config.html,
                   start_layer=config.start_layer, threshold=config.threshold, alpha=config.alpha,
                   head_fusion=config.head_fusion, device=config.device)


def _missing_needs_message(adapter: object, family: str, method: str) -> str:
    model = getattr(adapter, "model", None)
    kind = type(model).__name__ if model is not None else type(adapter).__name__
    if method == "mamba_attr":
        return (f"Expected a Mamba model for `method` 'mamba_attr' (it needs hidden-attention gradients), but got a "
                f"{family!r}-family model ({kind}).")
    needs = ", ".join(sorted(get_method(method).needs))
    return f"Expected a model whose traces hold {needs} for `method` {method!r}, but got a {family!r}-family model " \
           f"({kind})."


__all__ = ["ROLLOUT_NOTE", "ExplainConfig", "Explanation", "explain", "explain_config"]
