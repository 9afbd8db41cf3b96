"""`attnlens image` and image_maps: maps equal a direct computation, the CLI writes valid files on the
shared photos, and bad input gives one line, exit code 2 and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnlens.cli import main
from attnlens.experiments.image_maps import check_image_methods, default_image_methods, image_maps
from attnlens.methods import gradient_rollout, network_diffusion, rollout
from attnlens.models import create_tiny_adapter
from tests.conftest import SHARED_DATA

PHOTOS = SHARED_DATA / "images"
needs_photos = pytest.mark.skipif(not (PHOTOS / "1.jpg").is_file(), reason=f"sample photos not found in {PHOTOS}")


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-vit")
    create_tiny_adapter("test_vit").model.save_pretrained(folder)
    return folder


def _pixels(adapter, count=3, seed=0):
    height, width = adapter.preprocessing.size
    return torch.randn(count, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_maps_equal_rollout_gae_and_diffusion_read_at_the_class_token():
    adapter = create_tiny_adapter("test_vit")
    variants = check_image_methods(adapter, ["raw", "rollout", "diffused_rollout", "gae"], alpha=0.8)
    pixels = _pixels(adapter)
    result = image_maps(adapter, pixels, variants)
    trace = adapter.trace(pixels, saliency="sum_abs")
    rows, columns = trace.grid
    positions = trace.patch_positions
    fused = trace.attentions.mean(2)
    expected = {
        "raw": fused[:, -1],
        "rollout": rollout(trace.attentions)[:, -1],
        "diffused_rollout@0.8": rollout(network_diffusion(fused, alpha=0.8))[:, -1],
        "gae": gradient_rollout(trace.attentions, trace.extras["attention_grad"])[:, -1],
    }
    assert result.methods == list(expected) and result.maps.shape == (3, 4, rows, columns)
    for index, joint in enumerate(expected.values()):
        for b in range(3):
            row = joint[b, int(trace.readout[b])]
            torch.testing.assert_close(result.maps[b, index].flatten(), row[positions], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result.logits, trace.logits)


def test_default_methods_follow_what_the_model_provides():
    assert default_image_methods(create_tiny_adapter("test_vit")) == ["raw", "rollout", "diffused_rollout", "gae"]
    adapter = create_tiny_adapter("test_vit")
    with pytest.raises(ValueError, match="Expected every entry of `methods` to be a method this model supports "
                                         r"\(.*\), but 'mamba_attr' needs residual_gradients"):
        check_image_methods(adapter, ["mamba_attr"])


def test_text_models_are_refused():
    adapter = create_tiny_adapter("test_bert")
    with pytest.raises(ValueError, match="Expected `model` to be an image model"):
        image_maps(adapter, ["x.png"], check_image_methods(adapter, ["rollout"]))


@needs_photos
def test_cli_writes_rows_maps_and_predictions_on_the_shared_photos(tiny_vit_dir, tmp_path, capsys):
    out = tmp_path / "maps"
    code = main(["--quiet", "image", str(PHOTOS), "--model", str(tiny_vit_dir), "--out", str(out), "--html",
                 "--methods", "rollout,gae", "--top-k", "2"])
    assert code == 0, capsys.readouterr().err
    photos = sorted(PHOTOS.glob("*.jpg"))
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["methods"] == ["rollout", "gae"] and len(predictions["images"]) == len(photos)
    for photo, entry in zip(photos, predictions["images"]):
        with Image.open(out / f"{photo.stem}.png") as figure:
            figure.verify()
        maps = np.load(out / f"{photo.stem}.npy")
        assert maps.shape == (2, 4, 4) and np.isfinite(maps).all()
        assert len(entry["top"]) == 2 and entry["top"][0]["probability"] >= entry["top"][1]["probability"]
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(photos) and "http" not in page


def _bad_inputs(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "whole.png")
    truncated.write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(tiny)
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"text named .jpg": text, "truncated": truncated, "1x1": tiny, "no images": empty,
            "missing": tmp_path / "nope.png"}


def test_bad_images_exit_2_with_one_line_and_write_nothing(tiny_vit_dir, tmp_path, capsys):
    for what, path in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out-{what.replace(' ', '-')}"
        assert main(["image", str(path), "--model", str(tiny_vit_dir), "--out", str(out)]) == 2, what
        err = capsys.readouterr().err.strip()
        assert err.startswith("attnlens: error: Expected") and len(err.splitlines()) == 1, (what, err)
        assert not out.exists(), what


def test_bad_options_exit_2(tiny_vit_dir, tmp_path, capsys):
    image = tmp_path / "ok.png"
    Image.new("RGB", (20, 20), (50, 60, 70)).save(image)
    out = tmp_path / "out"
    assert main(["image", str(image), "--model", str(tiny_vit_dir), "--out", str(out), "--start-layer", "2"]) == 2
    assert "Expected `--start-layer` to be an integer in [-2, 1], but got 2" in capsys.readouterr().err
    assert main(["image", str(image), "--model", str(tiny_vit_dir), "--out", str(out), "--methods",
                 "mamba_attr"]) == 2
    assert "but 'mamba_attr' needs residual_gradients" in capsys.readouterr().err
    assert main(["image", str(image), "--model", str(tiny_vit_dir), "--out", str(out), "--class-names",
                 str(image)]) == 2
    assert "Expected `--class-names` to be a readable JSON file" in capsys.readouterr().err
    assert not out.exists()


# --- attention-map on images ---------------------------------------------------------------------------


def test_image_attention_map_panels_equal_a_direct_computation():
    from attnlens.experiments.image_attention_map import image_attention_map_data
    from attnlens.methods._common import _normalize_rows

    adapter = create_tiny_adapter("test_vit")
    picture = Image.new("RGB", (24, 20), (120, 30, 200))
    amap = image_attention_map_data(adapter, picture, alpha=0.7, layers=["-1"], scale="signed")
    trace = adapter.trace(adapter.preprocessing([picture]), saliency=None)
    fused = trace.attentions[0, -1].mean(0).double()
    (panel,) = amap.panels
    assert panel.title == "layer 1" and amap.image.shape == (16, 16, 3)
    torch.testing.assert_close(panel.before, fused)
    torch.testing.assert_close(panel.after, network_diffusion(_normalize_rows(fused)[None, None], alpha=0.7)[0, 0])
    torch.testing.assert_close(panel.map_before.flatten(), _normalize_rows(fused)[0][trace.patch_positions])


def test_vim_attention_map_has_both_directions_per_layer():
    from attnlens.experiments.image_attention_map import image_attention_map_data

    adapter = create_tiny_adapter("test_vim")
    amap = image_attention_map_data(adapter, Image.new("RGB", (16, 16), (9, 90, 200)), layers=None)
    assert [p.title for p in amap.panels] == ["layer 0, forward", "layer 0, backward", "layer 1, forward",
                                              "layer 1, backward"]
    forward, backward = amap.panels[0].before, amap.panels[1].before
    assert torch.equal(forward, forward.tril()) and torch.equal(backward, backward.triu())
    assert float(forward.min()) == 0.0 and float(forward.max()) == 1.0  # abs, min-max scaled as the authors plot


def test_attention_map_cli_on_an_image(tiny_vit_dir, tmp_path, capsys):
    picture = tmp_path / "p.png"
    Image.new("RGB", (30, 30), (10, 20, 30)).save(picture)
    out = tmp_path / "figure.png"
    assert main(["--quiet", "attention-map", str(picture), "--model", str(tiny_vit_dir), "--out", str(out),
                 "--layers", "0,1"]) == 0
    with Image.open(out) as figure:
        figure.verify()
    for args, message in ((["--layers", "2"], "Expected every entry of `--layers` to lie in [-2, 1], but got 2"),
                          (["--layers", "0,0"], "Expected the entries of `--layers` to be distinct layers"),
                          (["--out", str(tmp_path / "f.html")], "Expected `--out` to end in .png for an image model")):
        argv = ["attention-map", str(picture), "--model", str(tiny_vit_dir), "--out", str(tmp_path / "x.png"), *args]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "f.html").exists()


VIM_FIXTURES = SHARED_DATA / "vim"


@needs_photos
@pytest.mark.skipif(not (VIM_FIXTURES / "vim_reduced.safetensors").is_file(), reason="Vim fixtures not found")
def test_cli_on_the_shared_photos_with_the_reduced_vim(tmp_path, capsys):
    """The reference-checked reduced Vision Mamba (../shared/data/vim) read as a vim=DIR folder (links, no copies)."""
    folder = tmp_path / "vim-reduced"
    folder.mkdir()
    (folder / "config.json").symlink_to(VIM_FIXTURES / "vim_reduced_config.json")
    (folder / "model.safetensors").symlink_to(VIM_FIXTURES / "vim_reduced.safetensors")
    out = tmp_path / "rows"
    methods = "raw,rollout,diffused_rollout,mamba_attr,released_rollout,released_mamba_attr"
    assert main(["--quiet", "image", str(PHOTOS), "--model", f"vim={folder}", "--out", str(out), "--methods",
                 methods, "--alpha", "0.8"]) == 0, capsys.readouterr().err
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["methods"][2] == "diffused_rollout@0.8"
    for photo in sorted(PHOTOS.glob("*.jpg")):
        with Image.open(out / f"{photo.stem}.png") as figure:
            figure.verify()
        maps = np.load(out / f"{photo.stem}.npy")
        assert maps.shape == (6, 4, 4) and np.isfinite(maps).all() and (maps.max(axis=(1, 2)) > 0).all()


@needs_photos
@pytest.mark.skipif(not (VIM_FIXTURES / "vim_reduced.safetensors").is_file(), reason="Vim fixtures not found")
def test_a_checkpoint_of_another_model_exits_2_naming_the_mismatch(tmp_path, capsys):
    out = tmp_path / "rows"
    code = main(["image", str(PHOTOS / "1.jpg"), "--model", f"vim-tiny={VIM_FIXTURES / 'vim_reduced.safetensors'}",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "Expected `--model` to hold the state dict of a Vim with embed_dim 192" in err
    assert "missing key(s)" in err and "shape mismatch(es)" in err
