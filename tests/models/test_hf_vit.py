"""The Hugging Face ViT/DeiT adapter against direct computations: attention gradients and saliency by autograd,
both perturbation modes against hand-built inputs, DeiT's distillation token and averaged heads, loading."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnlens.datasets.images import ImagePreprocessing
from attnlens.models import ViTAdapter, create_tiny_adapter, load_adapter
from attnlens.models._tiny_vision import tiny_vision_model

ATOL = 1e-5


@functools.cache
def _adapter(name: str) -> ViTAdapter:
    return create_tiny_adapter(name)


def _pixels(batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _plain_deit() -> ViTAdapter:
    from transformers import DeiTConfig, DeiTForImageClassification

    return ViTAdapter(tiny_vision_model(DeiTForImageClassification, DeiTConfig, seed=1))


@pytest.mark.parametrize("name", ["test_vit", "test_deit"])
def test_attention_grad_and_saliency_are_the_autograd_gradients(name):
    adapter = _adapter(name)
    pixels = _pixels()
    target = torch.tensor([0, 2, 1])
    trace = adapter.trace(pixels, target=target, saliency="l2")
    seen = []
    handle = adapter.layers()[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        out = adapter.model(pixel_values=pixels, output_attentions=True)
        picked = out.logits.gather(1, target[:, None]).sum()
        first_input, *attention_grads = torch.autograd.grad(picked, [seen[0], *out.attentions])
    finally:
        handle.remove()
    expected = torch.stack(attention_grads, dim=1)
    assert trace.extras["attention_grad"].shape == trace.attentions.shape == expected.shape
    torch.testing.assert_close(trace.extras["attention_grad"], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(trace.saliency, first_input.norm(dim=-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(trace.attentions, torch.stack(out.attentions, dim=1).detach(), atol=0, rtol=0)
    assert all(p.grad is None for p in adapter.model.parameters())
    assert "attention_grad" not in adapter.trace(pixels, saliency=None).extras


def test_attention_grad_matches_a_finite_difference():
    """∂ logit / ∂ A for one attention entry: perturb that probability inside the model and re-run (float64)."""
    adapter = create_tiny_adapter("test_vit")
    model = adapter.model.double()
    pixels = _pixels(1).double()
    trace = adapter.trace(pixels, target=1, saliency="l2")
    layer, head, row, column, eps = 1, 0, 0, 5, 1e-6
    attention = adapter.layers()[layer].attention

    def shifted(delta: float) -> float:
        def hook(module, args, output):
            weights = output[1].clone()
            weights[0, head, row, column] += delta
            values = module.v_proj(args[0]).view(1, -1, 2, 16).transpose(1, 2)
            mixed = (weights @ values).transpose(1, 2).reshape(1, -1, 32)
            return module.o_proj(mixed), weights

        handle = attention.register_forward_hook(hook)
        try:
            with torch.no_grad():
                return float(model(pixel_values=pixels).logits[0, 1])
        finally:
            handle.remove()

    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    assert abs(float(trace.extras["attention_grad"][0, layer, head, row, column]) - numeric) < 1e-6


@pytest.mark.parametrize("name", ["test_vit", "test_deit"])
def test_mask_mode_equals_the_model_on_hand_zeroed_pixels(name):
    adapter = _adapter(name)
    pixels = _pixels()
    first = adapter.num_special
    keep = torch.ones(3, adapter.num_tokens, dtype=torch.bool)
    keep[0, first + 0] = False  # patch (0, 0)
    keep[1, first + 6] = False  # patch (1, 2)
    keep[1, first + 15] = False  # patch (3, 3)
    keep[2, 0] = False  # the class token: ignored
    zeroed = pixels.clone()
    zeroed[0, :, 0:4, 0:4] = 0
    zeroed[1, :, 4:8, 8:12] = 0
    zeroed[1, :, 12:16, 12:16] = 0
    with torch.no_grad():
        expected = adapter.model(pixel_values=zeroed).logits
    torch.testing.assert_close(adapter.perturb(pixels, keep, mode="mask"), expected, atol=ATOL, rtol=0)


def _removed_by_hand(adapter: ViTAdapter, pixels: torch.Tensor, kept: list[int]) -> torch.Tensor:
    """One image alone: its embedded tokens at `kept`, through the layers, the final norm and the head(s)."""
    base = adapter.model.base_model
    with torch.no_grad():
        hidden = base.embeddings(pixels[None])[:, kept]
        for layer in base.layers:
            hidden = layer(hidden)
        hidden = base.layernorm(hidden)
        if hasattr(adapter.model, "distillation_classifier"):
            return ((adapter.model.cls_classifier(hidden[:, 0]) + adapter.model.distillation_classifier(hidden[:, 1]))
                    / 2)[0]
        return adapter.model.classifier(hidden[:, 0])[0]


@pytest.mark.parametrize("name", ["test_vit", "test_deit"])
def test_remove_mode_equals_the_reduced_sequence_by_hand(name):
    adapter = _adapter(name)
    pixels = _pixels()
    n, first = adapter.num_tokens, adapter.num_special
    keep = torch.ones(3, n, dtype=torch.bool)
    keep[0, first + 3 : first + 9] = False  # six patches gone
    keep[1, first + 1] = False  # one patch gone: a longer sequence, so example 0 is padded
    keep[2, first:] = False  # no patch left: the special tokens alone
    keep[2, 0] = False  # ignored: the class token always stays
    got = adapter.perturb(pixels, keep, mode="remove")
    for b in range(3):
        kept = list(range(first)) + [p for p in range(first, n) if keep[b, p]]
        torch.testing.assert_close(got[b], _removed_by_hand(adapter, pixels[b], kept), atol=ATOL, rtol=0)
    everything = adapter.perturb(pixels, torch.ones(3, n, dtype=torch.bool), mode="remove")
    with torch.no_grad():
        assert torch.equal(everything, adapter.model(pixel_values=pixels).logits)  # exactly the model


def test_remove_mode_equals_masking_the_keys_in_the_model():
    """An independent reference: the model's own key mask blocks the dropped patches everywhere."""
    adapter = _adapter("test_vit")
    pixels = _pixels()
    keep = torch.rand(3, adapter.num_tokens, generator=torch.Generator().manual_seed(3)) > 0.4
    keep[:, 0] = True
    with torch.no_grad():
        expected = adapter.model(pixel_values=pixels, attention_mask=keep.long()).logits
    torch.testing.assert_close(adapter.perturb(pixels, keep, mode="remove"), expected, atol=ATOL, rtol=0)


def test_deit_distillation_token_and_averaged_heads():
    adapter = _adapter("test_deit")
    pixels = _pixels()
    trace = adapter.trace(pixels, saliency="l2")
    assert adapter.num_special == 2 and trace.tokens[0][:3] == ["[CLS]", "[DIST]", "patch(0,0)"]
    assert trace.tokens[0][-1] == "patch(3,3)" and len(trace.tokens[0]) == 18
    assert trace.patch_positions.tolist() == list(range(2, 18)) and trace.grid == (4, 4)
    assert trace.special_mask[:, :2].all() and not trace.special_mask[:, 2:].any()
    assert trace.readout.tolist() == [0, 0, 0]  # the class token, not the distillation token
    with torch.no_grad():
        out = adapter.model(pixel_values=pixels)
    torch.testing.assert_close(trace.logits, (out.cls_logits + out.distillation_logits) / 2, atol=ATOL, rtol=0)
    assert not torch.allclose(out.cls_logits, out.distillation_logits)
    assert trace.saliency[:, 1].gt(0).all()  # the distillation token is in the gradient path
    plain = _plain_deit()
    plain_trace = plain.trace(pixels, saliency=None)
    assert plain.num_special == 2 and plain_trace.attentions.shape == (3, 2, 2, 18, 18)
    with torch.no_grad():
        torch.testing.assert_close(plain_trace.logits, plain.model(pixel_values=pixels).logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(plain.perturb(pixels, plain_trace.mask), plain_trace.logits, atol=ATOL, rtol=0)


def test_vit_tokens_and_saliency_positions():
    adapter = _adapter("test_vit")
    pixels = _pixels(2)
    trace = adapter.trace(pixels, saliency="grad_x_input")
    assert trace.tokens[0][:2] == ["[CLS]", "patch(0,0)"] and trace.patch_positions.tolist() == list(range(1, 17))
    assert trace.mask.all() and trace.input_ids is None and adapter.count_tokens(pixels) == [17, 17]
    words = adapter.trace(pixels, saliency="grad_x_input", saliency_at="word_embeddings").saliency
    assert not torch.allclose(words, trace.saliency)  # the position embeddings left out of the input
    same = adapter.trace(pixels, saliency="l2", saliency_at="word_embeddings").saliency
    torch.testing.assert_close(same, adapter.trace(pixels, saliency="l2").saliency, atol=0, rtol=0)


def test_paths_and_pil_images_are_preprocessed(tmp_path):
    adapter = _adapter("test_vit")
    rng = np.random.RandomState(1)
    image = Image.fromarray(rng.randint(0, 256, (40, 30, 3), dtype=np.uint8))
    image.save(tmp_path / "a.png")
    pixels = adapter.preprocessing([image])
    torch.testing.assert_close(adapter.predict([tmp_path / "a.png"]), adapter.predict(pixels), atol=0, rtol=0)
    torch.testing.assert_close(adapter.predict([str(tmp_path / "a.png"), image]),
                               adapter.predict(pixels.repeat(2, 1, 1, 1)), atol=ATOL, rtol=0)
    with pytest.raises(TypeError, match="Expected every image to be a path or a PIL image, but image 0 is a int"):
        adapter.predict([3])
    with pytest.raises(ValueError, match=r"Expected `preprocessing` to make images of the model's size \(16, 16\), "
                                         r"but it makes \(8, 8\)"):
        ViTAdapter(adapter.model, preprocessing=ImagePreprocessing(size=(8, 8), resize_to=(8, 8)))


def test_accepts_only_vit_and_deit_classifiers():
    from transformers import BertConfig, DeiTConfig, ViTConfig

    assert ViTAdapter.accepts(ViTConfig())
    assert ViTAdapter.accepts(DeiTConfig(architectures=["DeiTForImageClassificationWithTeacher"]))
    assert not ViTAdapter.accepts(ViTConfig(architectures=["ViTModel"]))
    assert not ViTAdapter.accepts(BertConfig())


def test_load_adapter_reads_the_folder_and_its_preprocessing(tmp_path):
    adapter = _adapter("test_deit")
    adapter.model.save_pretrained(tmp_path)
    processor = {"image_processor_type": "DeiTImageProcessor", "do_resize": True, "size": {"height": 20, "width": 20},
                 "resample": 3, "do_center_crop": True, "crop_size": {"height": 16, "width": 16},
                 "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))
    loaded = load_adapter(str(tmp_path))
    assert isinstance(loaded, ViTAdapter) and type(loaded.model).__name__ == "DeiTForImageClassificationWithTeacher"
    assert loaded.preprocessing == ImagePreprocessing.from_hf(processor)
    assert loaded.model.config._attn_implementation == "eager"
    pixels = _pixels(2)
    torch.testing.assert_close(loaded.predict(pixels), adapter.predict(pixels), atol=ATOL, rtol=0)
    assert loaded.label(2) == "triangle" and loaded.class_index("Square") == 1
