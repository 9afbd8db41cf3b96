"""Token heatmaps: relevance as background colour, in the terminal (rich) and as an HTML page.

Colours are scaled over the ordinary tokens only: special tokens ([CLS], [SEP], ...) often hold
most of the relevance and would otherwise wash every word out to white, so they are shown
greyed and uncoloured. Numbers come with the colours: :func:`token_table` lists the top tokens
with their relevance and saliency, and the HTML page has the same table under the text.

Terminal colours follow the terminal's colour system (rich's ``Console.color_system``): a linear
white-to-red background in truecolor, 7 steps of the xterm 256-colour cube (white, pinks, reds)
in 256 colours, and in 16 colours 5 levels that stay apart on any theme: dim, plain, a light-grey
background, a bright-red one, and bold white on red.
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

from attnlens._checks import _check_integer
from attnlens._files import _write_atomic

_LOW = (255, 255, 255)
_HIGH = (220, 40, 40)
_SPECIAL_GREY = "grey50"
_SPECIAL_HTML = "#999"
_RAMP_256 = (231, 224, 217, 210, 203, 196, 160)  # xterm cube: white, pinks, reds (255/215/175/135/95/0 green-blue)
_RAMP_16 = (Style(dim=True), Style(), Style(color="black", bgcolor="white"), Style(color="black", bgcolor="bright_red"),
            Style(color="bright_white", bgcolor="red", bold=True))
_COLOR_SYSTEMS = ("truecolor", "256", "standard", "windows")



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


def _levels(values: list[float], special: list[bool]) -> list[float]:
    """Each value over the largest non-special value, clipped to [0, 1]."""
    ordinary = [v for v, s in zip(values, special) if not s] or values
    peak = max(ordinary)
    return [min(max(value / peak, 0.0), 1.0) if peak > 0 else 0.0 for value in values]


def _shades(values: list[float], special: list[bool]) -> list[tuple[int, int, int]]:
    """White (0 or below) to red (the largest non-special value), linear in the value."""
    return [tuple(round(lo + (hi - lo) * level) for lo, hi in zip(_LOW, _HIGH)) for level in _levels(values, special)]


def _terminal_styles(values: list[float], special: list[bool], color_system: str | None) -> list[Style]:
    """One style per token for `color_system`: truecolor shades, or steps that the palette keeps apart."""
    if color_system in (None, "truecolor"):
        return [Style(color="black", bgcolor=f"rgb({r},{g},{b})") for r, g, b in _shades(values, special)]
    if color_system == "256":
        steps = [_RAMP_256[round(level * (len(_RAMP_256) - 1))] for level in _levels(values, special)]
        return [Style(color="black", bgcolor=f"color({step})") for step in steps]
    return [_RAMP_16[round(level * (len(_RAMP_16) - 1))] for level in _levels(values, special)]


def token_heatmap_text(
    tokens: Sequence[str],
    relevance: Tensor | Sequence[float],
    *,
    special: Tensor | Sequence[bool] | None = None,
    color_system: str | None = "truecolor",
) -> Text:
    """A rich `Text` with each token on a background whose redness is its relevance.

    Args:
        tokens: the token strings, as displayed.
        relevance: `(n,)` one value per token; colours are scaled to the largest value of a
            non-special token.
        special: `(n,)` True on special tokens ([CLS], [SEP], ...), shown grey and uncoloured;
            None treats every token as ordinary.
        color_system: the terminal's colours, as rich's ``Console.color_system`` names them:
            ``"truecolor"`` (or None, where nothing is coloured) for a linear white-to-red shade,
            ``"256"`` for 7 steps of the 256-colour cube, ``"standard"`` or ``"windows"`` (16
            colours) for 5 levels of dim / plain / grey / bright red / bold on red.

    Returns:
        A `rich.text.Text`; print it with ``console.print(text)`` after building it with
        ``color_system=console.color_system``.

    Raises:
        ValueError: if the lengths differ, there are no tokens, or `color_system` is unknown.

    Example:
        >>> token_heatmap_text(["[CLS]", "a", "b"], [0.9, 0.0, 0.1], special=[True, False, False]).plain
        '[CLS] a b'
    """
    if color_system is not None and color_system not in _COLOR_SYSTEMS:
        raise ValueError(f"Expected `color_system` to be None or one of {', '.join(_COLOR_SYSTEMS)}, but got "
                         f"{color_system!r}.")
    values = _scores(tokens, relevance)
    flags = _specials(tokens, special)
    text = Text()
    for index, (token, style, is_special) in enumerate(zip(tokens, _terminal_styles(values, flags, color_system),
                                                           flags)):
        if index:
            text.append(" ")
        grey = "bright_black" if color_system in ("standard", "windows") else _SPECIAL_GREY  # grey50 is white in 16
        text.append(token.strip() or token, style=Style(color=grey) if is_special else style)
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


_FRAGMENT_STYLE = (
    "<style>.attnlens-heatmap{font-family:sans-serif}"
    ".attnlens-heatmap .text{line-height:2.2}"
    ".attnlens-heatmap .tok{padding:0.2em 0.1em;margin:0 0.1em;border-radius:0.2em;white-space:pre;color:#000}"
    f".attnlens-heatmap .special{{color:{_SPECIAL_HTML}}}"
    ".attnlens-heatmap .note{color:#555;font-size:0.9em}"
    ".attnlens-heatmap table{border-collapse:collapse;font-size:0.9em}"
    ".attnlens-heatmap td,.attnlens-heatmap th{padding:0.15em 0.8em;text-align:right;border-bottom:1px solid #eee}"
    ".attnlens-heatmap td:nth-child(3),.attnlens-heatmap th:nth-child(3){text-align:left;white-space:pre}</style>"
)


def token_heatmap_fragment(
    tokens: Sequence[str],
    relevance: Tensor | Sequence[float],
    *,
    title: str | None = None,
    saliency: Tensor | Sequence[float] | None = None,
    special: Tensor | Sequence[bool] | None = None,
    note: str | None = None,
    top: int | None = None,
) -> str:
    """An HTML fragment (a ``<div>`` with its own scoped style): tokens coloured by relevance and a table.

    What a notebook shows inline (``_repr_html_``) and what :func:`token_heatmap_html` wraps in a
    page. Each token's value is also in its title attribute. Special tokens are grey and
    uncoloured and colours are scaled over the others.

    Args:
        tokens: the token strings, as displayed.
        relevance: `(n,)` one value per token.
        title: a heading (``<h2>``) above the text, or None for none.
        saliency: `(n,)` input-gradient saliency per token, or None for no saliency column.
        special: `(n,)` True on special tokens; None treats every token as ordinary.
        note: a sentence shown under the heading (for example what the columns mean).
        top: the table's rows: None lists the non-special tokens from the most relevant down,
            then the special ones; an integer lists only that many most relevant non-special
            tokens (as the terminal table does).

    Returns:
        The fragment as a string (no external resources).

    Raises:
        ValueError: if the lengths differ, there are no tokens, or `top` is not a positive integer.

    Example:
        >>> part = token_heatmap_fragment(["a", "b", "c"], [0.1, 0.3, 0.2], top=2)
        >>> part.startswith('<div class="attnlens-heatmap">'), part.count("<tr>")
        (True, 3)
    """
    if top is not None:
        _check_integer(top, "top", low=1)
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
    header = "<tr><th>#</th><th>pos</th><th>token</th><th>relevance</th>" + (
        "<th>saliency</th>" if sal is not None else "")
    rows = [header + "</tr>"]
    order = _ranked(values, flags, top) + ([i for i, s in enumerate(flags) if s] if top is None else [])
    for rank, index in enumerate(order, start=1):
        cells = [str(rank) if not flags[index] else "", str(index), html.escape(tokens[index]), f"{values[index]:.4f}"]
        if sal is not None:
            cells.append(f"{sal[index]:.{digits}f}")
        row_class = ' class="special"' if flags[index] else ""
        rows.append(f"<tr{row_class}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    heading = f"<h2>{html.escape(title)}</h2>\n" if title else ""
    note_html = f"<p class=\"note\">{html.escape(note)}</p>\n" if note else ""
    return (f'<div class="attnlens-heatmap">{_FRAGMENT_STYLE}\n{heading}{note_html}'
            f"<p class=\"text\">{''.join(spans)}</p>\n<table>\n{chr(10).join(rows)}\n</table>\n</div>\n")


def token_heatmap_page(fragments: Sequence[str], *, title: str = "attnlens") -> str:
    """A self-contained HTML page holding one or more :func:`token_heatmap_fragment` outputs under a heading.

    Args:
        fragments: the fragments, shown one after another.
        title: page title and ``<h1>`` heading.

    Returns:
        The page as a string.

    Example:
        >>> token_heatmap_page([token_heatmap_fragment(["a"], [1.0])], title="x").count('class="tok"')
        1
    """
    safe_title = html.escape(title)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{safe_title}</title>\n<style>body{{font-family:sans-serif;margin:2em}}</style>\n"
            f"</head>\n<body>\n<h1>{safe_title}</h1>\n{''.join(fragments)}</body>\n</html>\n")


def token_heatmap_html(
    tokens: Sequence[str],
    relevance: Tensor | Sequence[float],
    *,
    title: str = "attnlens",
    saliency: Tensor | Sequence[float] | None = None,
    special: Tensor | Sequence[bool] | None = None,
    note: str | None = None,
    top: int | None = None,
) -> str:
    """A self-contained HTML page: tokens coloured by relevance, and a table of the numbers under them.

    The page around one :func:`token_heatmap_fragment` (see there for the colours and the table).

    Args:
        tokens: the token strings, as displayed.
        relevance: `(n,)` one value per token.
        title: page title and heading.
        saliency: `(n,)` input-gradient saliency per token, or None for no saliency column.
        special: `(n,)` True on special tokens; None treats every token as ordinary.
        note: a sentence shown under the heading (for example what the columns mean).
        top: rows of the table: None for every token (specials last), else that many most
            relevant non-special tokens.

    Returns:
        The page as a string (no external resources).

    Raises:
        ValueError: if the lengths differ, there are no tokens, or `top` is not a positive integer.

    Example:
        >>> page = token_heatmap_html(["a<b"], [1.0])
        >>> 'title="1.0000"' in page and "a&lt;b" in page and "<td>1.0000</td>" in page
        True
    """
    fragment = token_heatmap_fragment(tokens, relevance, saliency=saliency, special=special, note=note, top=top)
    return token_heatmap_page([fragment], title=title)


def write_token_heatmap_html(
    path: str | Path,
    tokens: Sequence[str],
    relevance: Tensor | Sequence[float],
    *,
    title: str = "attnlens",
    saliency: Tensor | Sequence[float] | None = None,
    special: Tensor | Sequence[bool] | None = None,
    note: str | None = None,
    top: int | None = None,
) -> Path:
    """Write :func:`token_heatmap_html` to `path` (UTF-8, atomically; parent folders are created)."""
    page = token_heatmap_html(tokens, relevance, title=title, saliency=saliency, special=special, note=note, top=top)
    return _write_atomic(path, page)
