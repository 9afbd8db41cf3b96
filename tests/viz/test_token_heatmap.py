from html.parser import HTMLParser

import pytest
import torch

from attnlens.viz.token_heatmap import token_heatmap_html, token_heatmap_text, write_token_heatmap_html


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
