"""Token heatmaps: relevance as background colour, in the terminal (rich) and as an HTML page.

Colours are scaled over the ordinary tokens only: special tokens ([CLS], [SEP], ...) often hold
most of the relevance and would otherwise wash every word out to white, so they are shown
greyed and uncoloured. Numbers come with the colours: :func:`token_table` lists the top tokens
with their relevance and saliency, and the HTML page has the same table under the text.

"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

from rich.style import Style
from rich.table import Table
from rich.text import Text
from torch import Tensor

_LOW = (255, 255, 255)
_HIGH = (220, 40, 40)
_SPECIAL_GREY = "grey50"
_SPECIAL_HTML = "#999"

from attnlens._files import _write_atomic


def _values(values: Tensor | Sequence[float], count: int, name: str) -> list[float]:
    values = values.detach().float().cpu().reshape(-1).tolist() if isinstance(values, Tensor) else list(values)
    if len(values) != count:
        raise ValueError(f"Expected `{name}` to have one value per token ({count}), but got {len(values)} values.")
    return [float(v) for v in values]


def _scores(tokens: Sequence[str], relevance: Tensor | Sequence[float]) -> list[float]:
    if not tokens:
        raise ValueError("Expected at least one token, but got none.")
    return _values(relevance, len(tokens), "relevance")


def _specials(tokens: Sequence[str], special: Tensor | Sequence[bool] | None) -> list[bool]:
    if special is None:
        return [False] * len(tokens)
    flags = special.detach().cpu().reshape(-1).tolist() if isinstance(special, Tensor) else list(special)
    if len(flags) != len(tokens):
        raise ValueError(f"Expected `special` to have one flag per token ({len(tokens)}), but got {len(flags)}.")
    return [bool(flag) for flag in flags]


def _shades(values: list[float], special: list[bool]) -> list[tuple[int, int, int]]:
    """White (0 or below) to red (the largest non-special value), linear in the value."""
    ordinary = [v for v, s in zip(values, special) if not s] or values
    peak = max(ordinary)
    shades = []
    for value in values:
        level = min(max(value / peak, 0.0), 1.0) if peak > 0 else 0.0
        shades.append(tuple(round(lo + (hi - lo) * level) for lo, hi in zip(_LOW, _HIGH)))
    return shades


def token_heatmap_text(
    tokens: Sequence[str], relevance: Tensor | Sequence[float], *, special: Tensor | Sequence[bool] | None = None
) -> Text:
    """A rich `Text` with each token on a background whose redness is its relevance.

    Args:
        tokens: the token strings, as displayed.
        relevance: `(n,)` one value per token; colours are scaled to the largest value of a
            non-special token.
        special: `(n,)` True on special tokens ([CLS], [SEP], ...), shown grey and uncoloured;
            None treats every token as ordinary.

    Returns:
        A `rich.text.Text`; print it with ``rich.console.Console().print(text)``.

    Raises:
        ValueError: if the lengths differ or there are no tokens.

    Example:
        >>> token_heatmap_text(["[CLS]", "a", "b"], [0.9, 0.0, 0.1], special=[True, False, False]).plain
        '[CLS] a b'
    """
    values = _scores(tokens, relevance)
    flags = _specials(tokens, special)
    text = Text()
    for index, (token, shade, is_special) in enumerate(zip(tokens, _shades(values, flags), flags)):
        if index:
            text.append(" ")
        shown = token.strip() or token
        if is_special:
            text.append(shown, style=Style(color=_SPECIAL_GREY))
        else:
            text.append(shown, style=Style(color="black", bgcolor=f"rgb({shade[0]},{shade[1]},{shade[2]})"))
    return text


def _decimals(values: list[float]) -> int:
    """Decimals that give the largest magnitude 3-4 significant digits, and at least 4 (saliency scales vary)."""
    peak = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    return 4 if peak == 0 else min(12, max(4, 3 - math.floor(math.log10(peak))))


def _ranked(values: list[float], flags: list[bool], top: int | None) -> list[int]:
    order = sorted((i for i, s in enumerate(flags) if not s), key=lambda i: (-values[i], i))
    return order if top is None else order[:top]


def token_table(
    tokens: Sequence[str],
    relevance: Tensor | Sequence[float],
    *,
    saliency: Tensor | Sequence[float] | None = None,
    special: Tensor | Sequence[bool] | None = None,
    top: int | None = 10,
) -> Table:
    """A rich table of the most relevant non-special tokens: rank, position, token, relevance, saliency.

    Relevance is printed with 4 decimals, saliency (whose scale depends on the model) with as
    many decimals as give its largest value 3-4 significant digits (at least 4).

    Args:
        tokens: the token strings.
        relevance: `(n,)` one value per token (the rows are sorted by it, largest first).
        saliency: `(n,)` input-gradient saliency per token, or None for no saliency column.
        special: `(n,)` True on special tokens, which are left out.
        top: how many rows at most; None lists every non-special token.

    Returns:
        A `rich.table.Table`.

    Raises:
        ValueError: if the lengths differ or there are no tokens.

    Example:
        >>> table = token_table(["[CLS]", "a", "b"], [0.9, 0.0, 0.1], special=[True, False, False])
        >>> table.row_count, [column.header for column in table.columns]
        (2, ['#', 'pos', 'token', 'relevance'])
    """
    values = _scores(tokens, relevance)
    flags = _specials(tokens, special)
    sal = None if saliency is None else _values(saliency, len(tokens), "saliency")
    digits = 4 if sal is None else _decimals(sal)
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("#", justify="right")
    table.add_column("pos", justify="right")
    table.add_column("token")
    table.add_column("relevance", justify="right")
    if sal is not None:
        table.add_column("saliency", justify="right")
    for rank, index in enumerate(_ranked(values, flags, top), start=1):
        row = [str(rank), str(index), tokens[index].strip() or repr(tokens[index]), f"{values[index]:.4f}"]
        if sal is not None:
            row.append(f"{sal[index]:.{digits}f}")
        table.add_row(*row)
    return table


def token_heatmap_html(
    tokens: Sequence[str],
    relevance: Tensor | Sequence[float],
    *,
    title: str = "attnlens",
    saliency: Tensor | Sequence[float] | None = None,
    special: Tensor | Sequence[bool] | None = None,
    note: str | None = None,
) -> str:
    """A self-contained HTML page: tokens coloured by relevance, and a table of the numbers under them.

    Each token's value is also in its title attribute. Special tokens are grey and uncoloured
    and colours are scaled over the others; the table lists the non-special tokens from the
    most relevant down, then the special ones.

    Args:
        tokens: the token strings, as displayed.
        relevance: `(n,)` one value per token.
        title: page title and heading.
        saliency: `(n,)` input-gradient saliency per token, or None for no saliency column.
        special: `(n,)` True on special tokens; None treats every token as ordinary.
        note: a sentence shown under the heading (for example what the columns mean).

    Returns:
        The page as a string (no external resources).

    Raises:
        ValueError: if the lengths differ or there are no tokens.

    Example:
        >>> page = token_heatmap_html(["a<b"], [1.0])
        >>> 'title="1.0000"' in page and "a&lt;b" in page and "<td>1.0000</td>" in page
        True
    """
    values = _scores(tokens, relevance)
    flags = _specials(tokens, special)
    sal = None if saliency is None else _values(saliency, len(tokens), "saliency")
    digits = 4 if sal is None else _decimals(sal)
    spans = []
    for token, value, shade, is_special in zip(tokens, values, _shades(values, flags), flags):
        if is_special:
            spans.append(f'<span class="tok special" title="{value:.4f} (special token, not coloured)">'
                         f"{html.escape(token)}</span>")
        else:
            colour = f"rgb({shade[0]},{shade[1]},{shade[2]})"
            spans.append(f'<span class="tok" style="background-color:{colour}" title="{value:.4f}">'
                         f"{html.escape(token)}</span>")
    header = "<tr><th>#</th><th>pos</th><th>token</th><th>relevance</th>" + ("<th>saliency</th>" if sal is not None else "")
    rows = [header + "</tr>"]
    order = _ranked(values, flags, None) + [i for i, s in enumerate(flags) if s]
    for rank, index in enumerate(order, start=1):
        cells = [str(rank) if not flags[index] else "", str(index), html.escape(tokens[index]), f"{values[index]:.4f}"]
        if sal is not None:
            cells.append(f"{sal[index]:.{digits}f}")
        row_class = ' class="special"' if flags[index] else ""
        rows.append(f"<tr{row_class}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    safe_title = html.escape(title)
    note_html = f"<p class=\"note\">{html.escape(note)}</p>\n" if note else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{safe_title}</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}"
        ".text{line-height:2.2}"
        ".tok{padding:0.2em 0.1em;margin:0 0.1em;border-radius:0.2em;white-space:pre}"
        f".special{{color:{_SPECIAL_HTML}}}"
        ".note{color:#555;font-size:0.9em}"
        "table{border-collapse:collapse;font-size:0.9em}"
        "td,th{padding:0.15em 0.8em;text-align:right;border-bottom:1px solid #eee}"
        "td:nth-child(3),th:nth-child(3){text-align:left;white-space:pre}</style>\n"
        f"</head>\n<body>\n<h1>{safe_title}</h1>\n{note_html}"
        f"<p class=\"text\">{''.join(spans)}</p>\n"
        f"<table>\n{chr(10).join(rows)}\n</table>\n</body>\n</html>\n"
    )


def write_token_heatmap_html(
    path: str | Path,
    tokens: Sequence[str],
    relevance: Tensor | Sequence[float],
    *,
    title: str = "attnlens",
    saliency: Tensor | Sequence[float] | None = None,
    special: Tensor | Sequence[bool] | None = None,
    note: str | None = None,
) -> Path:
    """Write :func:`token_heatmap_html` to `path` (UTF-8, atomically; parent folders are created)."""
    page = token_heatmap_html(tokens, relevance, title=title, saliency=saliency, special=special, note=note)
    return _write_atomic(path, page)
