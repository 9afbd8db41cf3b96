"""The attention-map figure of one text: every layer's attention before and after Network Diffusion.

Runs a text classifier on one text, fuses the heads of each layer, diffuses the fused matrices
(:func:`~attnlens.methods.network_diffusion`) and writes a PNG or an interactive HTML page,
chosen by the file's extension, with both matrices side by side and the rollout relevance of
both (:mod:`attnlens.viz.attention_map`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from attnlens._files import _check_output_file
from attnlens.viz.attention_map import AttentionMap, attention_map_html, compute_attention_map, plot_attention_map

_FORMATS = {".png": False, ".html": True}  # suffix -> HTML page?


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
                              residual=residual, device=device)
    if html:
        return attention_map_html(amap, out, title=f"attnlens attention map: {text}")
    return plot_attention_map(amap, out)


def attention_map_data(
    model: object,
    text: str,
    *,
    alpha: float = 0.9,
    reduce: str = "cls",
    top_k: int | None = None,
    head_fusion: str = "mean",
    residual: bool = True,
    device: str | torch.device = "cpu",
) -> AttentionMap:
    """What :func:`attention_map` draws, without drawing it (same arguments, no `out`/`html`)."""
    if isinstance(model, (str, os.PathLike)):
        from attnlens.models.hf_text import load_text_classifier  # noqa: PLC0415

        model = load_text_classifier(str(model), device=device)
    trace = model.trace([text], saliency=None)
    valid = trace.mask[0].nonzero().squeeze(-1)
    attentions = trace.attentions[0][..., valid[:, None], valid[None, :]]
    return compute_attention_map(attentions, list(trace.tokens[0]), alpha=alpha, reduce=reduce, top_k=top_k,
                                 residual=residual, head_fusion=head_fusion)


def _output_format(out: object, html: bool | None, name: str) -> bool:
    """Check the output path of :func:`attention_map` before any work; True when it is an HTML page.

    `name` is the option named in messages (``"out"`` here, ``"--out"`` in the CLI).
    """
    path = _check_output_file(out, name, suffixes=tuple(_FORMATS))
    by_suffix = _FORMATS[path.suffix.lower()]
    if html is not None and bool(html) != by_suffix:
        wanted = ".html" if html else ".png"
        raise ValueError(f"Expected `{name}` to end in {wanted} ({'an HTML page' if html else 'a PNG'} was asked for), "
                         f"but got {str(out)!r}.")
    return by_suffix
