"""Token heatmaps: relevance as background colour, in the terminal (rich) and as an HTML page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from rich.style import Style
from rich.text import Text
from torch import Tensor

_LOW = (255, 255, 255)
_HIGH = (220, 40, 40)


def _scores(tokens: Sequence[str], relevance: Tensor | Sequence[float]) -> list[float]:
    values = relevance.detach().float().cpu().reshape(-1).tolist() if isinstance(relevance, Tensor) else list(relevance)
    if len(values) != len(tokens):
        raise ValueError(
            f"Expected `relevance` to have one value per token ({len(tokens)}), but got {len(values)} values."
        )
    if not tokens:
        raise ValueError("Expected at least one token, but got none.")
    return [float(v) for v in values]


def _shades(values: list[float]) -> list[tuple[int, int, int]]:
    """White (0 or below) to red (the maximum), linear in the value."""
    peak = max(values)
    shades = []
    for value in values:
        level = min(max(value / peak, 0.0), 1.0) if peak > 0 else 0.0
        shades.append(tuple(round(lo + (hi - lo) * level) for lo, hi in zip(_LOW, _HIGH)))
    return shades


def token_heatmap_text(tokens: Sequence[str], relevance: Tensor | Sequence[float]) -> Text:
    """A rich `Text` with each token on a background whose redness is its relevance.

    Args:
        tokens: the token strings, as displayed.
        relevance: `(n,)` one value per token; colours are scaled to the largest value.

    Returns:
        A `rich.text.Text`; print it with ``rich.console.Console().print(text)``.

    Raises:
        ValueError: if the lengths differ or there are no tokens.

    Example:
        >>> token_heatmap_text(["a", "b"], [0.0, 1.0]).plain
        'a b'
    """
    values = _scores(tokens, relevance)
    text = Text()
    for index, (token, shade) in enumerate(zip(tokens, _shades(values))):
        if index:
            text.append(" ")
        background = f"rgb({shade[0]},{shade[1]},{shade[2]})"
        text.append(token.strip() or token, style=Style(color="black", bgcolor=background))
    return text


def token_heatmap_html(tokens: Sequence[str], relevance: Tensor | Sequence[float], *, title: str = "attnlens") -> str:
    """A self-contained HTML page: tokens coloured by relevance, the value in each title attribute.

    Args:
        tokens: the token strings, as displayed.
        relevance: `(n,)` one value per token; colours are scaled to the largest value.
        title: page title and heading.

    Returns:
        The page as a string (no external resources).

    Raises:
        ValueError: if the lengths differ or there are no tokens.

    Example:
        >>> page = token_heatmap_html(["a<b"], [1.0])
        >>> 'title="1.0000"' in page and "a&lt;b" in page
        True
    """
    values = _scores(tokens, relevance)
    spans = []
    for token, value, shade in zip(tokens, values, _shades(values)):
        colour = f"rgb({shade[0]},{shade[1]},{shade[2]})"
        spans.append(
            f'<span class="tok" style="background-color:{colour}" title="{value:.4f}">{html.escape(token)}</span>'
        )
    safe_title = html.escape(title)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{safe_title}</title>\n"
        "<style>body{font-family:sans-serif;margin:2em;line-height:2.2}"
        ".tok{padding:0.2em 0.1em;margin:0 0.1em;border-radius:0.2em;white-space:pre}</style>\n"
        f"</head>\n<body>\n<h1>{safe_title}</h1>\n<p>{''.join(spans)}</p>\n</body>\n</html>\n"
    )


def write_token_heatmap_html(
    path: str | Path, tokens: Sequence[str], relevance: Tensor | Sequence[float], *, title: str = "attnlens"
) -> Path:
    """Write :func:`token_heatmap_html` to `path` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token_heatmap_html(tokens, relevance, title=title), encoding="utf-8")
    return path

