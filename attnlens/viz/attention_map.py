"""Drawing attention matrices before and after Network Diffusion, per layer, as a PNG or an HTML page.

Both functions only draw an ``AttentionMap`` computed by
``attnlens.experiments.attention_map.compute_attention_map`` (the matrices before and after
diffusion and the rollout relevance of both): `plot_attention_map` draws it with matplotlib
(Agg, no pyplot state) and `attention_map_html` writes one self-contained interactive page
(inline SVG and JavaScript, no network access): hovering a token shows its row. Layers are
numbered from 1 (layer 1 … L), as in the SST-2 study. Both write atomically (temporary file +
rename) and create missing parent folders.
"""

from __future__ import annotations

import html
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from attnlens._files import _write_atomic

if TYPE_CHECKING:  # the computation lives in experiments; views only draw it
    from attnlens.experiments.attention_map import AttentionMap

_MAX_LABELLED_TOKENS = 80


# one palette for the PNG and the HTML page: white to blue, on a square-root scale (the page's `color`)
PALETTE_END = (55, 105, 215)
_MAX_FIGURE_INCHES = 18.0  # the larger side of the PNG, at most (2,160 px at 120 dpi)


def _colormap():
    from matplotlib.colors import LinearSegmentedColormap  # noqa: PLC0415

    return LinearSegmentedColormap.from_list("attnlens", [(1.0, 1.0, 1.0), tuple(c / 255 for c in PALETTE_END)])


def plot_attention_map(amap: AttentionMap, out: str | os.PathLike, *, dpi: int = 120, shared_scale: bool = True) -> Path:
    """Draw every layer's matrix before and after diffusion side by side, and the relevance bars, to a PNG.

    Rows are queries, columns keys. The figure is titled with ``amap.caption`` (the text, the
    model and its prediction), uses the HTML page's palette (white to blue, square-root scale),
    lays out two layers per row beyond three layers, and stays within 18 inches a side.

    Args:
        amap: what ``attnlens.experiments.attention_map.compute_attention_map`` returned.
        out: path of the PNG to write (atomically; parent folders are created).
        dpi: resolution.
        shared_scale: one colour scale for every panel (compare layers and before/after by
            colour); False scales each panel to its own maximum.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    layers, n = amap.before.shape[0], amap.before.shape[-1]
    labelled = n <= _MAX_LABELLED_TOKENS
    per_row = 2 if layers > 3 else 1  # layers side by side: (before, after) pairs
    rows = -(-layers // per_row)
    side = min(4.0, max(2.5, 0.22 * n + 1.2))
    scale = min(1.0, _MAX_FIGURE_INCHES / max(2 * per_row * side + 1.0, rows * side + 3.4))
    figure = Figure(figsize=((2 * per_row * side + 1.0) * scale, (rows * side + 3.4) * scale), dpi=dpi,
                    layout="constrained")
    FigureCanvasAgg(figure)
    if amap.caption:
        figure.suptitle(amap.caption, fontsize=10)
    grid = figure.add_gridspec(rows + 1, 2 * per_row, height_ratios=[side] * rows + [2.4])
    font = max(3.5, min(8.0, 160.0 / n)) * max(scale, 0.6)
    highest = float(max(amap.before.max(), amap.after.max()))
    cmap = _colormap()
    image = None
    for layer in range(layers):
        panels = (("before", amap.before), (f"after (α = {amap.alpha:g})", amap.after))
        for column, (name, matrices) in enumerate(panels):
            axes = figure.add_subplot(grid[layer // per_row, 2 * (layer % per_row) + column])
            values = matrices[layer].numpy()
            top = highest if shared_scale else float(values.max())
            image = axes.imshow(values, cmap=cmap, norm=PowerNorm(0.5, vmin=0.0, vmax=max(top, 1e-12)),
                                interpolation="nearest")
            axes.set_title(f"layer {layer + 1}: {name}", fontsize=8)
            axes.set_xlabel("key", fontsize=7)
            axes.set_ylabel("query", fontsize=7)
            if labelled:
                axes.set_xticks(range(n), amap.tokens, rotation=90, fontsize=font)
                axes.set_yticks(range(n), amap.tokens, fontsize=font)
            else:
                axes.set_xticks([])
                axes.set_yticks([])
            if not shared_scale:
                figure.colorbar(image, ax=axes, shrink=0.8)
    if shared_scale and image is not None:
        figure.colorbar(image, ax=figure.axes, shrink=0.6, label="attention weight (shared scale)")
    bars = figure.add_subplot(grid[rows, :])
    positions = torch.arange(n, dtype=torch.float64).numpy()
    bars.bar(positions - 0.2, amap.relevance_before.numpy(), width=0.4, label="before diffusion", color="#7570b3")
    bars.bar(positions + 0.2, amap.relevance_after.numpy(), width=0.4, label=f"after diffusion (α = {amap.alpha:g})",
             color="#d95f02")
    bars.set_title(f"relevance (reduce = {amap.reduce!r})", fontsize=9)
    bars.set_ylabel("relevance", fontsize=8)
    bars.legend(fontsize=8)
    if labelled:
        bars.set_xticks(positions, amap.tokens, rotation=90, fontsize=font)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return _write_atomic(out, buffer.getvalue())


_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.layer { display: flex; gap: 2em; margin-bottom: 1.5em; align-items: flex-start; }
.token { cursor: pointer; font-size: 11px; }
.token.active { font-weight: bold; fill: #c00; }
#row { position: sticky; top: 0; background: #fff; border: 1px solid #ccc; padding: .5em; min-height: 3em;
       font-size: 13px; }
#row span { display: inline-block; margin: 0 .4em .2em 0; }
h2 { font-size: 15px; margin: .2em 0; }
</style>
</head>
<body>
<h1 style="font-size:18px">__TITLE__</h1>
<p>Head-fused attention per layer (layer 1 is the first), before and after Network Diffusion (rows = queries).
Hover a token label or a cell to see that token's row; every matrix shares the colour scale of the legend (white
= 0, square-root scale); the last chart shows the relevance of both.</p>
<div id="legend"></div>
<div id="row">Hover a token.</div>
<div id="layers"></div>
<h2>Rollout relevance (reduce = __REDUCE__)</h2>
<div id="relevance"></div>
<script type="application/json" id="attnlens-data">__DATA__</script>
<script>
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("attnlens-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const n = data.tokens.length, label = 90;
  // two matrices side by side fill the window's width (cells of 6 to 40 px)
  const cell = Math.max(6, Math.min(40, Math.floor((window.innerWidth - 2 * label - 120) / (2 * n))));
  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  const highest = data.layers.reduce((m, l) => Math.max(m, ...l.before.flat(), ...l.after.flat()), 0);
  function color(value, max) {
    const t = max > 0 ? Math.sqrt(value / max) : 0;
    return "rgb(" + Math.round(255 - 200 * t) + "," + Math.round(255 - 150 * t) + "," + Math.round(255 - 40 * t) + ")";
  }
  function showRow(layer, which, row) {
    const values = data.layers[layer][which][row];
    const box = document.getElementById("row");
    box.textContent = "";
    const head = document.createElement("b");
    head.textContent = "layer " + (layer + 1) + ", " + which + ", row of \\"" + data.tokens[row] + "\\": ";
    box.appendChild(head);
    values.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]).forEach(([v, i]) => {
      const span = document.createElement("span");
      span.textContent = data.tokens[i] + " " + v.toFixed(3);
      span.style.background = color(v, values.reduce((a, b) => Math.max(a, b), 0));
      box.appendChild(span);
    });
    document.querySelectorAll(".token").forEach((t) => t.classList.toggle("active", +t.dataset.index === row));
  }
  function matrix(layer, which, title, parent) {
    const wrap = document.createElement("div");
    const heading = document.createElement("h2");
    heading.textContent = "layer " + (layer + 1) + ": " + title;
    wrap.appendChild(heading);
    const size = label + n * cell + 4;
    const svg = el("svg", {width: size, height: size}, wrap);
    const values = data.layers[layer][which];
    const max = highest;  // one colour scale for every matrix, as in the PNG
    for (let i = 0; i < n; i++) {
      const text = el("text", {x: label - 4, y: label + i * cell + cell * 0.75, "text-anchor": "end",
                              class: "token", "data-index": i}, svg);
      text.textContent = data.tokens[i];
      text.addEventListener("mouseenter", () => showRow(layer, which, i));
      const top = el("text", {x: 0, y: 0, class: "token", "data-index": i,
                             transform: "translate(" + (label + i * cell + cell * 0.75) + "," + (label - 4) + ") rotate(-90)"}, svg);
      top.textContent = data.tokens[i];
      for (let j = 0; j < n; j++) {
        const rect = el("rect", {x: label + j * cell, y: label + i * cell, width: cell, height: cell,
                                 fill: color(values[i][j], max)}, svg);
        el("title", {}, rect).textContent = data.tokens[i] + " \\u2192 " + data.tokens[j] + ": " + values[i][j].toFixed(4);
        rect.addEventListener("mouseenter", () => showRow(layer, which, i));
      }
    }
    parent.appendChild(wrap);
  }
  const legend = el("svg", {width: 260, height: 34}, document.getElementById("legend"));
  for (let k = 0; k < 100; k++) {
    el("rect", {x: 10 + 2 * k, y: 2, width: 2, height: 14, fill: color(highest * (k / 99) ** 2, highest)}, legend);
  }
  el("text", {x: 10, y: 30, class: "token"}, legend).textContent = "0";
  el("text", {x: 210, y: 30, "text-anchor": "end", class: "token"}, legend).textContent = highest.toFixed(3);
  el("text", {x: 216, y: 14, class: "token"}, legend).textContent = "weight";
  const layers = document.getElementById("layers");
  data.layers.forEach((_, layer) => {
    const row = document.createElement("div");
    row.className = "layer";
    matrix(layer, "before", "before", row);
    matrix(layer, "after", "after (\\u03b1 = " + data.alpha + ")", row);
    layers.appendChild(row);
  });
  const width = Math.max(300, n * 2 * cell + 60), height = 180;
  const svg = el("svg", {width: width, height: height + label}, document.getElementById("relevance"));
  const max = Math.max(...data.relevance_before, ...data.relevance_after, 1e-12);
  const step = (width - 20) / n;
  [["relevance_before", "#7570b3"], ["relevance_after", "#d95f02"]].forEach(([key, fill], k) => {
    data[key].forEach((v, i) => {
      const h = height * v / max;
      const bar = el("rect", {x: 10 + i * step + k * step / 2, y: height - h, width: step / 2 - 1, height: h, fill: fill}, svg);
      el("title", {}, bar).textContent = (k ? "after" : "before") + " " + data.tokens[i] + ": " + v.toFixed(4);
    });
  });
  data.tokens.forEach((token, i) => {
    const text = el("text", {x: 0, y: 0, class: "token", "data-index": i, "text-anchor": "end",
                             transform: "translate(" + (10 + (i + 0.5) * step) + "," + (height + 6) + ") rotate(-90)"}, svg);
    text.textContent = token;
    text.addEventListener("mouseenter", () => showRow(data.layers.length - 1, "after", i));
  });
  const legend = document.createElement("p");
  legend.innerHTML = '<span style="color:#7570b3">&#9632; rollout</span> &nbsp; ' +
    '<span style="color:#d95f02">&#9632; rollout after diffusion</span>';
  document.getElementById("relevance").appendChild(legend);
})();
</script>
</body>
</html>
"""


def _rounded(values: Tensor) -> list:
    return [[round(float(v), 6) for v in row] for row in values] if values.ndim == 2 else [
        round(float(v), 6) for v in values
    ]


def attention_map_html(amap: AttentionMap, out: str | os.PathLike, *, title: str = "attnlens attention map") -> Path:
    """Write one self-contained interactive HTML page of the attention map (hover a token to see its row).

    The data sit in a ``<script type="application/json" id="attnlens-data">`` element: tokens,
    per-layer ``before``/``after`` rows (6 decimals) and both relevance vectors.

    Args:
        amap: what ``attnlens.experiments.attention_map.compute_attention_map`` returned.
        out: path of the HTML file to write (atomically; parent folders are created).
        title: page title.

    Returns:
        The path written.
    """
    data = {
        "tokens": amap.tokens,
        "alpha": amap.alpha,
        "reduce": amap.reduce,
        "layers": [
            {"before": _rounded(amap.before[layer]), "after": _rounded(amap.after[layer])}
            for layer in range(amap.before.shape[0])
        ],
        "relevance_before": _rounded(amap.relevance_before),
        "relevance_after": _rounded(amap.relevance_after),
    }
    # "</script" or "<!--" would end or upset the script element; "\u003c" is the same JSON character.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    page = (
        _HTML_TEMPLATE.replace("__TITLE__", html.escape(title))
        .replace("__REDUCE__", html.escape(amap.reduce))
        .replace("__DATA__", payload)
    )
    return _write_atomic(out, page)
