import os
import re
from html.parser import HTMLParser

import pytest
import torch

from attnlens._files import _check_output_file, _write_atomic
from attnlens.viz.token_heatmap import (
    token_heatmap_html,
    token_heatmap_text,
    token_table,
    write_token_heatmap_html,
)


class _Spans(HTMLParser):
    def __init__(self):
        super().__init__()
        self.titles, self.texts, self._in = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "span":
            self.titles.append(dict(attrs)["title"])
            self._in = True

    def handle_data(self, data):
        if self._in:
            self.texts.append(data)
            self._in = False


def test_html_has_one_escaped_span_per_token_with_values():
    page = token_heatmap_html(["<b>", "ok", "&"], torch.tensor([0.0, 0.5, 1.0]), title="t<1>")
    parser = _Spans()
    parser.feed(page)
    assert parser.titles == ["0.0000", "0.5000", "1.0000"]
    assert parser.texts == ["<b>", "ok", "&"]
    assert "<title>t&lt;1&gt;</title>" in page and page.startswith("<!DOCTYPE html>")
    assert "rgb(220,40,40)" in page and "rgb(255,255,255)" in page


def test_terminal_text_colours_tokens(tmp_path):
    text = token_heatmap_text(["a", "b"], [0.0, 2.0])
    assert text.plain == "a b"
    assert tuple(text.spans[-1].style.bgcolor.triplet) == (220, 40, 40)
    path = write_token_heatmap_html(tmp_path / "sub" / "x.html", ["a"], [1.0])
    assert path.read_text(encoding="utf-8").count('class="tok"') == 1


def test_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"Expected `relevance` to have one value per token \(2\), but got 3"):
        token_heatmap_html(["a", "b"], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="Expected at least one token"):
        token_heatmap_text([], [])


def _render(renderable) -> str:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_colours_are_scaled_over_ordinary_tokens_and_specials_are_grey():
    tokens, values, special = ["[CLS]", "dull", "plot", "[SEP]"], [0.7, 0.1, 0.05, 0.15], [True, False, False, True]
    text = token_heatmap_text(tokens, values, special=torch.tensor(special))
    assert text.plain == "[CLS] dull plot [SEP]"
    styles = [span.style for span in text.spans]
    assert styles[0].bgcolor is None and styles[0].color.name == "grey50" and styles[3].bgcolor is None
    assert tuple(styles[1].bgcolor.triplet) == (220, 40, 40)  # the top word is full red, not [CLS]
    assert tuple(styles[2].bgcolor.triplet) == (238, 148, 148)
    # without the flags [CLS] sets the scale and the top word is pale
    pale = token_heatmap_text(tokens, values).spans[1].style.bgcolor.triplet
    assert tuple(pale) == (250, 224, 224)


def test_token_table_ranks_words_with_saliency():
    tokens = ["[CLS]", "the", "dull", "plot", "[SEP]"]
    table = token_table(tokens, [0.6, 0.1, 0.2, 0.05, 0.05], saliency=[0.0, 0.01, 0.03, 0.02, 0.0],
                        special=[True, False, False, False, True], top=2)
    assert [column.header for column in table.columns] == ["#", "pos", "token", "relevance", "saliency"]
    lines = _render(table).splitlines()
    assert lines[1].split() == ["1", "2", "dull", "0.2000", "0.03000"]
    assert lines[2].split() == ["2", "1", "the", "0.1000", "0.01000"]
    assert len(lines) == 3 and "[CLS]" not in _render(table)
    every = token_table(tokens, [0.6, 0.1, 0.2, 0.05, 0.05], top=None)
    assert every.row_count == 5 and len(every.columns) == 4


def test_html_colours_words_and_tabulates_numbers():
    page = token_heatmap_html(["[CLS]", "a", "b"], [0.8, 0.1, 0.2], saliency=[0.0, 0.5, 0.25],
                              special=[True, False, False], note="rollout is class-agnostic")
    assert '<span class="tok special" title="0.8000 (special token, not coloured)">[CLS]</span>' in page
    assert 'style="background-color:rgb(220,40,40)" title="0.2000">b</span>' in page
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page)
    cells = [re.findall(r"<t[dh]>(.*?)</t[dh]>", row) for row in rows]
    assert cells == [["#", "pos", "token", "relevance", "saliency"], ["1", "2", "b", "0.2000", "0.2500"],
                     ["2", "1", "a", "0.1000", "0.5000"], ["", "0", "[CLS]", "0.8000", "0.0000"]]
    assert '<p class="note">rollout is class-agnostic</p>' in page


def test_rejects_mismatched_saliency_and_flags():
    with pytest.raises(ValueError, match=r"Expected `saliency` to have one value per token \(2\), but got 1 values"):
        token_table(["a", "b"], [1.0, 2.0], saliency=[1.0])
    with pytest.raises(ValueError, match=r"Expected `special` to have one flag per token \(2\), but got 3"):
        token_heatmap_html(["a", "b"], [1.0, 2.0], special=[True, False, False])


def test_check_output_file(tmp_path):
    assert _check_output_file(tmp_path / "new" / "deeper" / "x.html", "html") == tmp_path / "new" / "deeper" / "x.html"
    assert not (tmp_path / "new").exists()  # nothing is created by the check
    with pytest.raises(ValueError, match="Expected `--out` to be a file path, but .* is an existing folder"):
        _check_output_file(tmp_path, "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="Expected `html` to be in a folder, but .*file' is a file"):
        _check_output_file(tmp_path / "file" / "sub" / "x.html", "html")
    with pytest.raises(ValueError, match=r"Expected `out` to end in \.png or \.html, but got 'x\.jpg'"):
        _check_output_file("x.jpg", "out", suffixes=(".png", ".html"))
    with pytest.raises(ValueError, match="Expected `html` to be a file path, but got an empty string"):
        _check_output_file(" ", "html")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_check_output_file_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(ValueError, match="Expected `html` to be in a writable folder, but .* is not writable"):
            _check_output_file(locked / "x.html", "html")
    finally:
        locked.chmod(0o700)


def test_write_atomic_leaves_nothing_half_written(tmp_path, monkeypatch):
    path = _write_atomic(tmp_path / "a" / "b" / "page.html", "new")
    assert path.read_text() == "new" and os.listdir(path.parent) == ["page.html"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        _write_atomic(path, b"partial")
    assert path.read_text() == "new" and os.listdir(path.parent) == ["page.html"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_saliency_decimals_follow_its_scale():
    lines = _render(token_table(["a", "b"], [0.5, 0.25], saliency=[1.6e-5, 2.5e-6])).splitlines()
    assert lines[1].split()[-1] == "0.00001600" and lines[2].split()[-1] == "0.00000250"
    lines = _render(token_table(["a"], [1.0], saliency=[123.456])).splitlines()
    assert lines[1].split()[-1] == "123.4560"


def _token_styles(text, color_system: str) -> list[str]:
    """The SGR codes a terminal of `color_system` receives for each token ("" for an unstyled one).

    Each test renders its styles in one colour system only: rich caches a style's codes per style.
    """
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=True, color_system=color_system, width=300)
    console.print(text, end="")
    return [m.group(1) or "" for m in re.finditer(r"(?:\x1b\[([\d;]*)m)?([^\x1b\s]+)(?:\x1b\[0m)?",
                                                    console.file.getvalue())]


@pytest.mark.parametrize(("color_system", "at_least"), [("truecolor", 8), ("256", 6), ("standard", 4),
                                                         ("windows", 4)])
def test_terminal_heatmap_stays_graded_in_few_colours(color_system, at_least):
    tokens, ramp = [f"t{i}" for i in range(8)], [i / 7 for i in range(8)]
    styles = _token_styles(token_heatmap_text(tokens, ramp, color_system=color_system), color_system)
    assert len(styles) == 8 and len(set(styles)) >= at_least
    assert styles == sorted(set(styles), key=styles.index) or len(set(styles)) < 8  # equal values never split
    if color_system == "standard":  # what this replaces: the truecolor shades collapse in 16 colours
        from rich.color import ColorSystem

        shades = [span.style.bgcolor for span in token_heatmap_text(tokens, ramp).spans]
        assert len({shade.downgrade(ColorSystem.STANDARD).number for shade in shades}) <= 3


def test_terminal_heatmap_palettes_and_unknown_colour_system():
    ramp = [i / 7 for i in range(8)]
    styles = _token_styles(token_heatmap_text([f"t{i}" for i in range(8)], ramp, color_system="256"), "256")
    assert styles[0] == "30;48;5;231" and styles[-1] == "30;48;5;160"  # white up to red in the 256-colour cube
    standard = _token_styles(token_heatmap_text(["[CLS]", "a", "b"], [5.0, 0.0, 1.0], special=[True, False, False],
                                                color_system="standard"), "standard")
    assert standard == ["90", "2", "1;97;41"]  # special bright black, lowest dim, highest bold white on red
    with pytest.raises(ValueError, match="Expected `color_system` to be None or one of truecolor, 256, standard, "
                       "windows, but got '8bit'."):
        token_heatmap_text(["a"], [1.0], color_system="8bit")


def test_html_table_honours_top_and_fragment_has_no_page():
    from attnlens.viz.token_heatmap import token_heatmap_fragment, token_heatmap_page

    tokens, values, special = ["[CLS]", "a", "b", "c"], [0.9, 0.1, 0.3, 0.2], [True, False, False, False]
    page = token_heatmap_html(tokens, values, special=special, top=2)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page)
    assert [re.findall(r"<td>(.*?)</td>", row)[:3] for row in rows[1:]] == [["1", "2", "b"], ["2", "3", "c"]]
    fragment = token_heatmap_fragment(tokens, values, special=special, top=2, title="t & u")
    assert fragment.startswith('<div class="attnlens-heatmap"><style>') and "<html" not in fragment
    assert "<h2>t &amp; u</h2>" in fragment and fragment.count("<tr") == 3
    assert token_heatmap_fragment(tokens, values, special=special).count("<tr") == 5  # None: every token
    both = token_heatmap_page([fragment, fragment], title="two")
    assert both.count('class="attnlens-heatmap"') == 2 and both.count("<h1>two</h1>") == 1
    with pytest.raises(ValueError, match=r"Expected `top` to be an integer in \[1, inf\], but got 0."):
        token_heatmap_html(tokens, values, top=0)
