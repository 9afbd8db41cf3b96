"""``report.html``: one self-contained page (no network, no CDN) for a study or an evaluation.

The plots are embedded as base64 PNG, the summary tables sort when a header is clicked, and the
per-example section shows every method's token heatmap side by side, sortable by the model's
confidence, by the disagreement between methods (1 − mean pairwise Spearman ρ of their maps) and
by each metric, with a search box over the sentences. Only draws: the numbers come from the
summary and the per-example records it is given.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

_SCRIPT = r"""
(function () {
  function cellValue(cell) {
    var v = cell.getAttribute('data-value');
    if (v === null) { v = cell.textContent; }
    var x = parseFloat(v);
    return isNaN(x) ? v.toLowerCase() : x;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, column) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var ascending = th.getAttribute('data-order') !== 'asc';
        table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-order'); });
        th.setAttribute('data-order', ascending ? 'asc' : 'desc');
        rows.sort(function (a, b) {
          var x = cellValue(a.cells[column]), y = cellValue(b.cells[column]);
          if (x === y) { return 0; }
          return (x < y ? -1 : 1) * (ascending ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  var list = document.getElementById('examples');
  if (!list) { return; }
  var sortBy = document.getElementById('sort-by');
  var search = document.getElementById('search');
  var counter = document.getElementById('shown');
  function apply() {
    var key = sortBy.value, descending = key.charAt(0) !== '+';
    key = key.replace(/^[+-]/, '');
    var items = Array.prototype.slice.call(list.children);
    items.sort(function (a, b) {
      var x = parseFloat(a.getAttribute('data-' + key)), y = parseFloat(b.getAttribute('data-' + key));
      if (isNaN(x)) { x = -Infinity; } if (isNaN(y)) { y = -Infinity; }
      return descending ? y - x : x - y;
    });
    var query = search.value.toLowerCase(), shown = 0;
    items.forEach(function (item) {
      list.appendChild(item);
      var visible = item.getAttribute('data-text').indexOf(query) !== -1;
      item.style.display = visible ? '' : 'none';
      if (visible) { shown += 1; }
    });
    counter.textContent = shown;
  }
  sortBy.addEventListener('change', apply);
  search.addEventListener('input', apply);
  apply();
})();
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[data-order=asc]::after { content: ' ▲'; } th[data-order=desc]::after { content: ' ▼'; }
.example { border-top: 1px solid #ddd; padding: 0.5em 0; }
.meta { color: #666; font-size: 0.85em; }
.row { display: flex; gap: 0.5em; align-items: baseline; margin: 0.1em 0; }
.method { width: 12em; flex: none; font-size: 0.85em; color: #444; }
.tok { padding: 0 0.15em; border-radius: 2px; }
.special { color: #999; }
img { max-width: 100%; }
"""


def _color(value: float) -> str:
    value = 0.0 if not math.isfinite(value) else max(0.0, min(1.0, value))
    red, green, blue = 255 - int(35 * value), 255 - int(215 * value), 255 - int(215 * value)
    return f"rgb({red},{green},{blue})"


def _heat_row(tokens: Sequence[str], values: Sequence[float], special: Sequence[bool]) -> str:
    ordinary = [abs(v) for v, s in zip(values, special) if not s and math.isfinite(v)]
    top = max(ordinary) if ordinary and max(ordinary) > 0 else 1.0
    spans = []
    for token, value, is_special in zip(tokens, values, special):
        title = html.escape(f"{value:.4g}", quote=True)
        if is_special:
            spans.append(f'<span class="tok special" title="{title}">{html.escape(token)}</span>')
        else:
            spans.append(f'<span class="tok" style="background:{_color(abs(value) / top)}" title="{title}">'
                         f"{html.escape(token)}</span>")
    return " ".join(spans)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], identifier: str) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, float):
                shown = "–" if not math.isfinite(cell) else f"{cell:.4g}"
                cells.append(f'<td data-value="{cell if math.isfinite(cell) else ""}">{shown}</td>')
            else:
                cells.append(f"<td>{html.escape(str(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="sortable" id="{identifier}"><thead><tr>{head}</tr></thead><tbody>' + "".join(body)
            + "</tbody></table>")


def report_page(title: str, *, intro: str = "", tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[object]]]]
                = (), images: Sequence[tuple[str, bytes]] = (), examples: Sequence[Mapping] = (),
                sort_keys: Sequence[tuple[str, str]] = ()) -> str:
    """The whole report as one HTML string.

    Args:
        title: the page title.
        intro: one paragraph under it (plain text).
        tables: (caption, header, rows) of the summary tables; float cells sort numerically.
        images: (caption, PNG bytes) embedded as data URLs.
        examples: per example a mapping with ``text``, ``tokens`` (n strings), ``special`` (n flags),
            ``maps`` (method → n values), ``meta`` (a line) and ``keys`` (sort key → number).
        sort_keys: (key, label) of the per-example orders offered; a key starting with ``+`` sorts
            ascending (the attribute is the key without it).

    Returns:
        The page, with no external resources.
    """
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for number, (caption, header, rows) in enumerate(tables):
        parts.append(f"<h2>{html.escape(caption)}</h2>" + _table(header, rows, f"table-{number}"))
    for caption, png in images:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt=\"{html.escape(caption, quote=True)}\" "
                     f"src=\"data:image/png;base64,{data}\">")
    if examples:
        options = "".join(f'<option value="{html.escape(k, quote=True)}">{html.escape(label)}</option>'
                          for k, label in sort_keys)
        parts.append(f"<h2>Examples (<span id=\"shown\">{len(examples)}</span> shown)</h2><p>"
                     f"<label>sort by <select id=\"sort-by\">{options}</select></label> "
                     f"<label>search <input id=\"search\" type=\"search\" placeholder=\"words of the sentence\">"
                     f"</label></p><div id=\"examples\">")
        for example in examples:
            attributes = " ".join(
                f'data-{html.escape(k.lstrip("+"), quote=True)}="{v if math.isfinite(v) else "nan"}"'
                for k, v in example["keys"].items())
            rows = "".join(f'<div class="row"><span class="method">{html.escape(name)}</span><span>'
                           f"{_heat_row(example['tokens'], values, example['special'])}</span></div>"
                           for name, values in example["maps"].items())
            parts.append(f'<div class="example" data-text="{html.escape(example["text"].lower(), quote=True)}" '
                         f'{attributes}><div>{html.escape(example["text"])}</div><div class="meta">'
                         f"{html.escape(example['meta'])}</div>{rows}</div>")
        parts.append("</div>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "".join(parts)


def write_report(page: str, path: str | Path) -> Path:
    """Write `page` to `path` (UTF-8)."""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["report_page", "write_report"]
