"""Tests of attnlens.viz.attention_map: the data, the PNG and the HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from attnlens.experiments.attention_map import compute_attention_map
from attnlens.methods import relevance, rollout
from attnlens.methods.network_diffusion import network_diffusion
from attnlens.viz.attention_map import attention_map_html, plot_attention_map

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _example(generator: torch.Generator, layers: int = 2, heads: int = 2, n: int = 5) -> torch.Tensor:
    return torch.softmax(torch.randn(layers, heads, n, n, generator=generator, dtype=torch.float64) * 2, dim=-1)


def test_compute_matches_methods(generator: torch.Generator) -> None:
    attn = _example(generator)
    tokens = ["[CLS]", "a", "good", "film", "[SEP]"]
    amap = compute_attention_map(attn, tokens, alpha=0.8, reduce="max")
    fused = attn.mean(dim=1)
    torch.testing.assert_close(amap.before, fused)
    torch.testing.assert_close(amap.after, network_diffusion(fused[None], alpha=0.8)[0])
    expected = relevance(rollout(amap.after[None])[:, -1], reduce="max")[0]
    torch.testing.assert_close(amap.relevance_after, expected)
    assert amap.tokens == tokens and amap.alpha == 0.8 and amap.reduce == "max"


def test_png_is_written(generator: torch.Generator, tmp_path: Path) -> None:
    amap = compute_attention_map(_example(generator), ["[CLS]", "a", "good", "film", "[SEP]"])
    path = plot_attention_map(amap, tmp_path / "figs" / "map.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_html_holds_tokens_and_rows(generator: torch.Generator, tmp_path: Path) -> None:
    tokens = ["[CLS]", "<b>", "good", "</script>", "[SEP]"]
    amap = compute_attention_map(_example(generator), tokens, alpha=0.5)
    page = attention_map_html(amap, tmp_path / "map.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("</script>") == 2  # the token "</script>" is escaped inside the JSON
    payload = re.search(r'<script type="application/json" id="attnlens-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(payload)
    assert data["tokens"] == tokens
    assert len(data["layers"]) == 2 and len(data["layers"][1]["after"]) == 5
    for layer in range(2):
        for key, matrix in (("before", amap.before), ("after", amap.after)):
            torch.testing.assert_close(torch.tensor(data["layers"][layer][key], dtype=torch.float64), matrix[layer],
                                       atol=1e-6, rtol=0)
    assert "mouseenter" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_errors(generator: torch.Generator) -> None:
    attn = _example(generator)
    with pytest.raises(ValueError, match="Expected `tokens` to have one string per token \\(5\\), but got 2"):
        compute_attention_map(attn, ["a", "b"])
    with pytest.raises(ValueError, match="Expected `reduce` to be one of 'cls', 'max', 'mean', but got 'sum'"):
        compute_attention_map(attn, ["a"] * 5, reduce="sum")
    with pytest.raises(ValueError, match="Expected `attentions` to have shape \\(L, n, n\\) or \\(L, H, n, n\\), but got \\(1, 2, 2, 5, 5\\)"):
        compute_attention_map(attn[None], ["a"] * 5)
    with pytest.raises(ValueError, match="Expected `alpha` to lie in \\[0, 1\\)"):
        compute_attention_map(attn, ["a"] * 5, alpha=1.5)


def test_layers_are_numbered_from_one(generator: torch.Generator, tmp_path: Path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    titles: list[str] = []
    original = Figure.savefig

    def recording(self, *args, **kwargs):
        titles.extend(axes.get_title() for axes in self.axes)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    amap = compute_attention_map(_example(generator), ["[CLS]", "a", "good", "film", "[SEP]"])
    plot_attention_map(amap, tmp_path / "map.png")
    layer_titles = [title for title in titles if title.startswith("layer")]
    assert layer_titles == ["layer 1: before", "layer 1: after (α = 0.9)", "layer 2: before", "layer 2: after (α = 0.9)"]
    page = attention_map_html(amap, tmp_path / "map.html").read_text(encoding="utf-8")
    assert '"layer " + (layer + 1)' in page and '"layer " + layer +' not in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.html", "map.png"]  # written atomically, no leftovers


def test_png_stays_bounded_and_html_shares_one_scale(tmp_path):
    import struct

    import torch

    from attnlens.experiments.attention_map import compute_attention_map
    from attnlens.viz.attention_map import attention_map_html, plot_attention_map

    generator = torch.Generator().manual_seed(0)
    attn = torch.softmax(torch.randn(6, 2, 18, 18, generator=generator, dtype=torch.float64), dim=-1)
    amap = compute_attention_map(attn, [f"t{i}" for i in range(18)], alpha=0.9)._replace(caption='"a text" — m')
    png = plot_attention_map(amap, tmp_path / "map.png")
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    assert max(width, height) <= 18 * 120 and width > 0  # was 1704 × 5088 for 18 tokens and 6 layers
    plot_attention_map(amap, tmp_path / "own.png", shared_scale=False)
    page = attention_map_html(amap, tmp_path / "map.html").read_text()
    assert 'id="legend"' in page and "const max = highest" in page and "rgb(" in page
