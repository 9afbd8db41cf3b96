"""Explain one prediction of any supported model: load → trace → method → relevance → heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from attnlens._checks import _check_choice
from attnlens._files import _check_output_file
from attnlens.methods.mamba_attr import mamba_attr
from attnlens.methods.relevance import relevance
from attnlens.methods.rollout import rollout
from attnlens.models._factory import load_adapter
from attnlens.viz.token_heatmap import write_token_heatmap_html

_METHODS = ("rollout", "mamba_attr")
_GRADIENT_FAMILIES = ("mamba",)  # families whose trace records hidden-attention gradients (for mamba_attr)
ROLLOUT_NOTE = "rollout is class-agnostic (the same for every target); the saliency column is for the target"
_READ_ROW = {"mamba": "last"}  # families whose explained position is the last token; others read [CLS]


class Explanation(NamedTuple):
    """Result of :func:`explain`.

    Attributes:
        tokens: the text's token strings.
        relevance: `(n,)` relevance per token (the explained row of the joint attention). With
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


def _target_label(adapter, target: int) -> str:
    tokenizer = getattr(adapter, "tokenizer", None)
    if getattr(adapter, "family", None) == "mamba" and tokenizer is not None:
        return tokenizer.decode([target])
    model = getattr(adapter, "model", None)
    labels = getattr(getattr(model, "config", None), "id2label", None) or {}
    return str(labels.get(target, target))


def explain(
    model_name_or_path: str | None,
    text: str,
    *,
    target: int | str | None = None,
    method: str = "rollout",
    html: str | Path | None = None,
    start_layer: int = 0,
    device: str = "cpu",
    adapter: object | None = None,
) -> Explanation:
    """Explain one model prediction on `text` with attention (or hidden-attention) rollout.

    The adapter is chosen from the model's Hugging Face config by the registry, so any registered
    family works (Mamba language models, text classifiers). The relevance is the explained row of
    the joint attention: the last token's row for causal language models (the next-token
    prediction), the [CLS] row otherwise.

    Args:
        model_name_or_path: Hugging Face id or local folder; ignored when `adapter` is given.
        text: the text to explain.
        target: token id or single-token string (language models) or class index to explain;
            None explains the model's own prediction. Rollout relevance is the same for every
            target; the saliency and ``"mamba_attr"`` depend on it.
        method: ``"rollout"`` (Abnar & Zuidema 2020 on the trace's attention) or ``"mamba_attr"``
            (gradient-weighted hidden attention, Mamba models only).
        html: where to write an HTML heatmap (atomically; missing parent folders are created);
            None writes nothing. Checked before the model is loaded.
        start_layer: first layer composed by the rollout.
        device: where the model runs.
        adapter: an already built adapter (for example around an in-memory model).

    Returns:
        An :class:`Explanation`.

    Raises:
        ValueError: on an empty text, an unknown method, a target that is not one token,
            ``"mamba_attr"`` with a model that is not a Mamba model, or an `html` path that is
            an existing folder or lies under a file or a read-only folder.
    """
    _check_choice(method, "method", _METHODS)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"Expected `text` to be a non-empty string, but got {text!r}.")
    if html is not None:
        html = _check_output_file(html, "html")
    if adapter is None:
        if model_name_or_path is None:
            raise ValueError("Expected `model_name_or_path` or `adapter`, but got neither.")
        adapter = load_adapter(model_name_or_path, device=device)
    if isinstance(target, str):
        if not hasattr(adapter, "target_id"):
            raise ValueError(f"Expected `target` to be an integer for this model family, but got {target!r}.")
        target = adapter.target_id(target)
    family = getattr(adapter, "family", "")
    if method == "mamba_attr" and family not in _GRADIENT_FAMILIES:
        raise ValueError(_not_mamba_message(adapter, family))
    trace = adapter.trace([text], target=target)
    reduce = _READ_ROW.get(family, "cls")
    if method == "mamba_attr":
        grads = trace.extras.get("hidden_attention_grad")
        if grads is None:
            raise ValueError(_not_mamba_message(adapter, family))
        joint = mamba_attr(trace.attentions, grads[:, :, None], mask=trace.mask, start_layer=start_layer)
    else:
        joint = rollout(trace.attentions, mask=trace.mask, start_layer=start_layer)[:, -1]
    valid = trace.mask[0]
    scores = relevance(joint, mask=trace.mask, reduce=reduce)[0][valid].detach().to(torch.float32).cpu()
    saliency = None if trace.saliency is None else trace.saliency[0][valid].detach().to(torch.float32).cpu()
    special = (torch.zeros(scores.shape, dtype=torch.bool) if trace.special_mask is None
               else trace.special_mask[0][valid].detach().cpu())
    tokens = trace.tokens[0]
    chosen = int(trace.target[0])
    label = _target_label(adapter, chosen)
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


def _not_mamba_message(adapter: object, family: str) -> str:
    model = getattr(adapter, "model", None)
    kind = type(model).__name__ if model is not None else type(adapter).__name__
    return (f"Expected a Mamba model for `method` 'mamba_attr' (it needs hidden-attention gradients), but got a "
            f"{family!r}-family model ({kind}).")
