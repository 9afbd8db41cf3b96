"""The attention-map figure of one text: every layer's attention before and after Network Diffusion.

Runs a text classifier on one text, fuses the heads of each layer, diffuses the fused matrices
(`attnlens.methods.network_diffusion`) and writes a PNG or an interactive HTML page, chosen by
the file's extension, with both matrices side by side and the rollout relevance of both.
`compute_attention_map` does the computation on one example's attention and returns an
`AttentionMap`; the views in `attnlens.viz.attention_map` only draw it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_attention, _check_choice, _check_floating, _check_ndim
from attnlens._files import _check_output_file
from attnlens._options import option
from attnlens.methods._common import _normalize_rows, fuse_heads
from attnlens.methods.network_diffusion import network_diffusion
from attnlens.methods.relevance import relevance
from attnlens.methods.registry import MethodCache, list_methods, method_variant
from attnlens.viz.attention_map import attention_map_html, plot_attention_map

_FORMATS = {".png": False, ".html": True}  # suffix -> HTML page?
_REDUCTIONS = ("cls", "max", "mean")


class AttentionMap(NamedTuple):
    """One example's attention before and after diffusion, ready to draw.

    Attributes:
        tokens: the n token strings.
        before: `(L, n, n)` head-fused attention.
        after: `(L, n, n)` the same after :func:`~attnlens.methods.network_diffusion`.
        relevance_before: `(n,)` rollout relevance of `before`.
        relevance_after: `(n,)` rollout relevance of `after`.
        alpha: the diffusion strength used.
        reduce: how rollout's last joint attention was reduced to relevance.
        caption: what the figure shows in one line (the text, the model's name and its
            prediction), empty when unknown.
    """

    tokens: list[str]
    before: Tensor
    after: Tensor
    relevance_before: Tensor
    relevance_after: Tensor
    alpha: float
    reduce: str
    caption: str = ""


def compute_attention_map(
    attentions: Tensor,
    tokens: list[str],
    *,
    alpha: float = 0.9,
    reduce: str = "cls",
    cls_index: int = 0,
    top_k: int | None = None,
    residual: bool = True,
    head_fusion: str = "mean",
    method: str = "rollout",
) -> AttentionMap:
    """Diffuse one example's attention layer by layer and roll out both versions.

    Network Diffusion (see :func:`~attnlens.methods.network_diffusion`) of the head-fused
    matrices; relevance from Attention Rollout (Abnar & Zuidema 2020) after the last layer.

    Args:
        attentions: `(L, n, n)` head-fused or `(L, H, n, n)` per-head attention of one example,
            valid tokens only (no padding).
        tokens: the n token strings.
        alpha: diffusion strength in [0, 1).
        reduce: ``"cls"``, ``"max"`` or ``"mean"``, how the joint attention becomes relevance.
        cls_index: the row read by ``reduce="cls"``.
        top_k: row sparsification before diffusion (None keeps every entry).
        residual: add the identity for the residual connection in rollout.
        method: the registered method (:func:`~attnlens.methods.registry.list_methods`) whose
            joint attention after the last layer gives the relevance of both versions.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads of a per-head input; rows
            are renormalized after fusion.

    Returns:
        An :class:`AttentionMap` of float64 CPU tensors.

    Raises:
        ValueError: on a wrong shape, a token count that is not n, or a bad option.

    Example:
        >>> import torch
        >>> attn = torch.tensor([[[0.7, 0.3], [0.4, 0.6]]])
        >>> amap = compute_attention_map(attn, ["[CLS]", "hi"], alpha=0.5)
        >>> amap.after.shape, amap.relevance_after.shape
        (torch.Size([1, 2, 2]), torch.Size([2]))
    """
    _check_floating(attentions, "attentions")
    _check_ndim(attentions, "attentions", (3, 4), "(L, n, n) or (L, H, n, n)")
    _check_attention(attentions, "attentions", ndims=(3, 4))
    _check_choice(reduce, "reduce", _REDUCTIONS)
    n = attentions.shape[-1]
    if len(tokens) != n:
        raise ArgumentError(f"Expected `tokens` to have one string per token ({n}), but got {len(tokens)}.", "tokens")
    attn = attentions.detach().to("cpu", torch.float64)[None]
    if attn.ndim == 5:
        # max/min fusion leaves rows that do not sum to 1; renormalize (a no-op for the mean).
        attn = _normalize_rows(fuse_heads(attn, how=head_fusion))
    diffused = network_diffusion(attn, alpha=alpha, top_k=top_k)

    variant = method_variant(method, residual=residual)

    def _relevance(matrices: Tensor) -> Tensor:
        mask = torch.ones(matrices.shape[0], matrices.shape[-1], dtype=torch.bool)
        joint = variant.compute(MethodCache(matrices, mask)).joint[:, -1]
        return relevance(joint, reduce=reduce, cls_index=cls_index)[0]

    return AttentionMap(
        tokens=[str(token) for token in tokens],
        before=attn[0],
        after=diffused[0],
        relevance_before=_relevance(attn),
        relevance_after=_relevance(diffused),
        alpha=float(alpha),
        reduce=reduce,
    )


def attention_map(
    model: object,
    text: str,
    *,
    alpha: float = 0.9,
    out: str | os.PathLike,
    html: bool | None = None,
    reduce: str = "cls",
    top_k: int | None = None,
    head_fusion: str = "mean",
    residual: bool = True,
    method: str = "rollout",
    shared_scale: bool = True,
    device: str | torch.device = "cpu",
) -> Path:
    """Draw one text's per-layer attention before and after diffusion, with rollout relevance bars.

    Network Diffusion (thesis "Improving Explainability of Transformer Models"; Wang et al.
    2018's Network Enhancement) of each layer's head-fused attention; relevance by Attention
    Rollout (Abnar & Zuidema 2020).

    Args:
        model: a Hugging Face model id or local folder (loaded with
            :func:`~attnlens.models.load_text_classifier`), or an adapter with a
            ``trace(texts, *, saliency=None)`` method returning a :class:`~attnlens.trace.Trace`.
        text: the text to explain.
        alpha: diffusion strength in [0, 1).
        out: path to write: ``.png`` gives a PNG, ``.html`` a self-contained interactive HTML
            page. Checked before the model is loaded; written atomically, missing parent
            folders are created.
        html: optional; True asks for an HTML page and False for a PNG, and must then agree
            with the suffix of `out`. None (default) goes by the suffix alone.
        reduce: ``"cls"``, ``"max"`` or ``"mean"``, how rollout's joint attention becomes relevance.
        top_k: row sparsification before diffusion (None keeps every entry).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        residual: add the identity for the residual connection in rollout.
        method: the registered method giving the relevance bars (default Attention Rollout).
        shared_scale: one colour scale for every matrix of a PNG (False: each panel its own).
        device: where a model loaded by name runs.

    Returns:
        The path written.

    Raises:
        ValueError: on a model that cannot be loaded, an empty text or a bad option (the
            adapter's and the methods' one-line messages), or an `out` that does not end in
            ``.png``/``.html`` (or disagrees with `html`), is an existing folder, or lies under a
            file or a read-only folder.
    """
    html = _output_format(out, html, "out")
    amap = attention_map_data(model, text, alpha=alpha, reduce=reduce, top_k=top_k, head_fusion=head_fusion,
                              residual=residual, method=method, device=device)
    if html:
        return attention_map_html(amap, out, title=f"attnlens attention map: {amap.caption or text}")
    return plot_attention_map(amap, out, shared_scale=shared_scale)


def attention_map_data(
    model: object,
    text: str,
    *,
    alpha: float = 0.9,
    reduce: str = "cls",
    top_k: int | None = None,
    head_fusion: str = "mean",
    residual: bool = True,
    method: str = "rollout",
    device: str | torch.device = "cpu",
) -> AttentionMap:
    """What :func:`attention_map` draws, without drawing it (same arguments, no `out`/`html`)."""
    _check_choice(method, "method", list_methods(needs=("attention",)))
    if isinstance(model, (str, os.PathLike)):
        from attnlens.models import load_adapter  # noqa: PLC0415

        model = load_adapter(str(model), device=device)
    trace = model.trace([text], saliency=None)
    valid = trace.mask[0].nonzero().squeeze(-1)
    attentions = trace.attentions[0][..., valid[:, None], valid[None, :]]
    amap = compute_attention_map(attentions, list(trace.tokens[0]), alpha=alpha, reduce=reduce, top_k=top_k,
                                 residual=residual, head_fusion=head_fusion, method=method)
    return amap._replace(caption=_caption(model, text, trace))


def _caption(adapter: object, text: str, trace) -> str:
    """``"text" — model name, predicted 'label' (p)``: what a reader needs to read the figure alone."""
    from attnlens.experiments.writers import model_display_name  # noqa: PLC0415

    config = getattr(getattr(adapter, "model", None), "config", None)
    name = model_display_name(str(getattr(config, "_name_or_path", "") or type(adapter).__name__))
    probabilities = torch.softmax(trace.logits[0].detach().double(), dim=-1)
    predicted = int(probabilities.argmax())
    label = adapter.label(predicted) if hasattr(adapter, "label") else str(predicted)
    shown = text if len(text) <= 80 else text[:77] + "..."
    return f"\"{shown}\" — {name}, predicted {label!r} ({float(probabilities[predicted]):.2f})"


def _output_format(out: object, html: bool | None, name: str) -> bool:
    """Check the output path of :func:`attention_map` before any work; True when it is an HTML page.

    `name` is the option named in messages (``"out"`` here, ``"--out"`` in the CLI).
    """
    path = _check_output_file(out, name, suffixes=tuple(_FORMATS))
    by_suffix = _FORMATS[path.suffix.lower()]
    if html is not None and bool(html) != by_suffix:
        wanted = ".html" if html else ".png"
        raise ArgumentError(f"Expected `{name}` to end in {wanted} ({'an HTML page' if html else 'a PNG'} was asked "
                            f"for), but got {str(out)!r}.", name)
    return by_suffix


@dataclass(frozen=True)
class AttentionMapConfig:
    """Options of ``attnlens attention-map``; each field is a command-line option (see :func:`attention_map`)."""

    model: str = field(metadata=option("hub id or local folder of a text classifier (or a Mamba LM)",
                                       metavar="ID|DIR"))
    text: str = field(metadata=option("the sentence to draw, or an image file for an image model (ViT, DeiT, "
                                      "Vision Mamba)", positional=True))
    out: str = field(metadata=option("output file: .png for a PNG, .html for an interactive page (checked before the "
                                     "model loads; written atomically; missing folders are created)", metavar="PATH"))
    alpha: float = field(default=0.9, metadata=option("diffusion strength in [0, 1)"))
    html: bool = field(default=False, metadata=option(
        "optional: insist on an HTML page (--out must end in .html; the extension alone already decides)"))
    reduce: str = field(default="cls", metadata=option("relevance row reduction", choices=("cls", "max", "mean")))
    top_k: int | None = field(default=None, metadata=option("keep the k largest entries per row before diffusion",
                                                            metavar="K"))
    head_fusion: str = field(default="mean", metadata=option("how heads are fused", choices=("mean", "max", "min")))
    residual: bool = field(default=True, metadata=option("rollout with the residual identity (--no-residual: "
                                                         "without)"))
    shared_scale: bool = field(default=True, metadata=option(
        "one colour scale for every matrix of the PNG (--no-shared-scale: each panel its own)"))
    method: str = field(default="rollout", metadata=option(
        "registered method giving the relevance bars of both matrices", choices=lambda: list_methods(
            needs=("attention",))))
    device: str = field(default="cpu", metadata=option("where the model runs", choices=("cpu", "cuda")))
    layers: tuple[str, ...] | None = field(default=None, metadata=option(
        "image models: the layers drawn (0-based, negative from the end; default: first, middle, last)",
        metavar="L,L,..."))
    scale: str = field(default="abs", metadata=option(
        "image models: matrices as absolute values min-max scaled (the Vim authors' plots) or signed",
        choices=("abs", "signed")))


def attention_map_from_config(config: AttentionMapConfig) -> Path:
    """:func:`attention_map` with the options of an :class:`AttentionMapConfig` (what the CLI calls); for an
    image model, :func:`~attnlens.experiments.image_attention_map.image_attention_map_data` drawn as a PNG."""
    from attnlens.models import load_adapter  # noqa: PLC0415

    html = _output_format(config.out, True if config.html else None, "out")
    adapter = load_adapter(config.model, device=config.device)
    if getattr(adapter, "modality", "text") == "image":
        from attnlens.experiments.image_attention_map import image_attention_map_data  # noqa: PLC0415
        from attnlens.viz.image_attention_map import plot_image_attention_map  # noqa: PLC0415

        if html:
            raise ArgumentError(f"Expected `out` to end in .png for an image model (the HTML page draws text), but "
                                f"got {config.out!r}.", "out")
        amap = image_attention_map_data(adapter, config.text, alpha=config.alpha, layers=config.layers,
                                        scale=config.scale)
        return plot_image_attention_map(amap, config.out)
    if config.layers or config.scale != "abs":
        raise ArgumentError("Expected `layers` and `scale` only with an image model (a text figure draws every "
                            "layer), but got them for a text model.", "layers")
    return attention_map(adapter, config.text, alpha=config.alpha, out=config.out,
                         html=True if config.html else None, reduce=config.reduce, top_k=config.top_k,
                         head_fusion=config.head_fusion, residual=config.residual, method=config.method,
                         shared_scale=config.shared_scale,
                         device=config.device)
