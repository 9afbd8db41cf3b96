"""The Vim adapter on the tiny seeded `test_vim`: trace shapes, the two directions and their combinations
against a slow per-entry reference, exact readout rows, Mamba-Attr residual gradients against autograd,
saliency, predict and perturb against the model on hand-made inputs, loading and routing, state restored."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.models import adapter_for_config, create_tiny_adapter, load_adapter
from attnlens.models.vim import save_vim_folder
from attnlens.models.vim_adapter import VimAdapter, combine_directions, parse_vim_spec, tiny_vim

ATOL = 1e-5


@functools.cache
def _adapter() -> VimAdapter:
    return create_tiny_adapter("test_vim")


def _images(batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _reference_alpha(delta, A, B, C):
    """`(B, E, n, n)` hidden attention entry by entry (Ali, Zimerman & Wolf 2025, Eq. 11), float64."""
    delta, A, B, C = (x.double() for x in (delta, A, B, C))
    batch, channels, n = delta.shape
    out = torch.zeros(batch, channels, n, n, dtype=torch.float64)
    for r in range(n):
        for c in range(r + 1):
            gap = delta[:, :, c + 1: r + 1].sum(dim=-1)  # (B, E)
            decay = torch.exp(A[None] * gap[..., None])  # (B, E, N)
            out[:, :, r, c] = (decay * (C[:, None, :, r] * B[:, None, :, c])).sum(dim=-1) * delta[:, :, c]
    return out


def _reference_layers(adapter, images):
    """Per layer: per-channel α_f and α_b (token order) from a fresh recorded forward pass, float64."""
    record = []
    with torch.no_grad():
        adapter.model.forward_hidden(adapter.model.embed(images), record=record)
    out = []
    for layer in record:
        f, b = layer.forward, layer.backward
        out.append((_reference_alpha(f.delta, f.A, f.B, f.C), _reference_alpha(b.delta, b.A, b.B, b.C).flip(-1, -2)))
    return out


# --- shapes and the two directions ------------------------------------------------------------------


def test_trace_shapes_tokens_and_positions():
    adapter = _adapter()
    images = _images()
    trace = adapter.trace(images, labels=[0, 1, 2], saliency="l2")
    batch, n, layers, channels = 3, 17, 2, 64
    assert trace.attentions.shape == (batch, layers, 1, n, n) and trace.mask.all() and trace.mask.shape == (batch, n)
    assert trace.logits.shape == (batch, 3) and trace.target.shape == (batch,) and trace.target.dtype == torch.long
    assert trace.readout.tolist() == [8, 8, 8] and trace.grid == (4, 4)
    assert trace.patch_positions.tolist() == [*range(8), *range(9, 17)]
    assert trace.tokens[0][8] == "[CLS]" and trace.tokens[0][0] == "patch(0,0)" and trace.tokens[0][9] == "patch(2,0)"
    assert [len(t) for t in trace.tokens] == [n] * batch and adapter.count_tokens(images) == [n] * batch
    assert trace.special_mask[:, 8].all() and trace.special_mask.sum() == batch
    shapes = {key: tuple(value.shape) for key, value in trace.extras.items()}
    assert shapes == {"hidden_attention_fwd": (batch, layers, n, n), "hidden_attention_bwd": (batch, layers, n, n),
                      "hidden_attention": (batch, layers, n, n), "readout_rows": (batch, layers, channels, n),
                      "residual_grad": (batch, layers, n)}
    rows = trace.attentions.sum(dim=-1)
    torch.testing.assert_close(rows, torch.ones_like(rows), atol=ATOL, rtol=0)
    assert all(torch.isfinite(t).all() for t in (trace.attentions, trace.saliency, *trace.extras.values()))
    assert trace.labels.tolist() == [0, 1, 2] and trace.saliency.shape == (batch, n) and (trace.saliency > 0).any()
    assert adapter.trace(images, saliency=None).saliency is None


def test_directions_are_triangular_and_equal_the_slow_reference():
    adapter = _adapter()
    images = _images(2)
    trace = adapter.trace(images, saliency=None)
    forward, backward = trace.extras["hidden_attention_fwd"], trace.extras["hidden_attention_bwd"]
    assert forward.triu(1).abs().max() == 0 and backward.tril(-1).abs().max() == 0
    for layer, (alpha_f, alpha_b) in enumerate(_reference_layers(adapter, images)):
        torch.testing.assert_close(forward[:, layer].double(), alpha_f.mean(dim=1), atol=1e-6, rtol=0)
        torch.testing.assert_close(backward[:, layer].double(), alpha_b.mean(dim=1), atol=1e-6, rtol=0)


def test_combine_forms():
    adapter = _adapter()
    images = _images(2)
    total = adapter.trace(images, saliency=None)
    half = adapter.trace(images, saliency=None, combine="mean")
    splice = adapter.trace(images, saliency=None, combine="splice")
    forward, backward = total.extras["hidden_attention_fwd"], total.extras["hidden_attention_bwd"]
    torch.testing.assert_close(total.extras["hidden_attention"], forward + backward, atol=0, rtol=0)
    torch.testing.assert_close(half.extras["hidden_attention"], (forward + backward) / 2, atol=0, rtol=0)
    torch.testing.assert_close(half.attentions, total.attentions, atol=1e-6, rtol=0)  # the same after norm_rows
    columns = torch.arange(17)
    expected = torch.where(columns < 8, forward, torch.where(columns > 8, backward, torch.zeros(())))
    torch.testing.assert_close(splice.extras["hidden_attention"], expected, atol=0, rtol=0)
    assert splice.extras["hidden_attention"][..., 8].abs().max() == 0  # the class token's column, diagonal included
    normed = torch.nn.functional.normalize(total.extras["hidden_attention"].abs(), p=1, dim=-1)
    torch.testing.assert_close(total.attentions[:, :, 0], normed, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="Expected `combine` to be one of 'sum', 'mean', 'splice', but got 'max'"):
        adapter.trace(images, combine="max")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), position=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_splice_keeps_one_direction_per_side_of_the_class_token(n, position, seed):
    position = min(position, n - 1)
    generator = torch.Generator().manual_seed(seed)
    forward = torch.randn(2, n, n, generator=generator, dtype=torch.float64).tril()
    backward = torch.randn(2, n, n, generator=generator, dtype=torch.float64).triu()
    splice = combine_directions(forward, backward, position=position, combine="splice")
    total = combine_directions(forward, backward, position=position, combine="sum")
    for r in range(n):
        for c in range(n):
            expected = forward[:, r, c] if c < position else backward[:, r, c] if c > position else 0 * forward[:, r, c]
            torch.testing.assert_close(splice[:, r, c], expected)
            torch.testing.assert_close(total[:, r, c], forward[:, r, c] + backward[:, r, c])
    # off the diagonal and the class column, "sum" and "splice" agree wherever the query sits on the key's side
    keys = torch.arange(n)
    same_side = ((keys[None] < position) & (keys[:, None] > keys[None])) | (
        (keys[None] > position) & (keys[:, None] < keys[None]))
    torch.testing.assert_close(splice[:, same_side], total[:, same_side])


@pytest.mark.parametrize("combine", ["sum", "mean", "splice"])
def test_readout_rows_are_the_exact_class_rows_of_the_per_channel_combined_alpha(combine):
    adapter = _adapter()
    images = _images(2, seed=1)
    rows = adapter.trace(images, saliency=None, combine=combine).extras["readout_rows"]
    for layer, (alpha_f, alpha_b) in enumerate(_reference_layers(adapter, images)):
        expected = combine_directions(alpha_f, alpha_b, position=8, combine=combine)[:, :, 8]  # (B, E, n)
        torch.testing.assert_close(rows[:, layer].double(), expected, atol=1e-6, rtol=0)


# --- gradients -----------------------------------------------------------------------------------------


def test_residual_grad_and_saliency_equal_autograd_done_here():
    adapter = _adapter()
    images = _images(2, seed=2)
    trace = adapter.trace(images, target=[1, 2], saliency="sum_abs")
    model = adapter.model
    record = []
    with torch.no_grad():
        tokens = model.embed(images)
        model.forward_hidden(tokens, record=record)
    for layer in range(adapter.num_layers):
        start = record[layer].residual.clone().requires_grad_(True)
        hidden, residual = model.layers[layer](start, None)  # block l normalises `start` itself
        for block in model.layers[layer + 1:]:
            hidden, residual = block(hidden, residual)
        logits = model.head(model.norm_f(residual + hidden)[:, 8])
        torch.testing.assert_close(logits, trace.logits, atol=ATOL, rtol=0)
        (grad,) = torch.autograd.grad(logits[0, 1] + logits[1, 2], start)
        torch.testing.assert_close(trace.extras["residual_grad"][:, layer], grad.clamp(min=0).amax(dim=-1),
                                   atol=1e-6, rtol=1e-5)
        if layer == 0:
            torch.testing.assert_close(trace.saliency, grad.sum(dim=-1).abs(), atol=1e-6, rtol=1e-5)
    grad_x = adapter.trace(images, target=[1, 2], saliency="grad_x_input", saliency_at="word_embeddings").saliency
    leaf = tokens.clone().requires_grad_(True)
    out = model.forward_tokens(leaf)
    (grad,) = torch.autograd.grad(out[0, 1] + out[1, 2], leaf)
    torch.testing.assert_close(grad_x, (grad * (tokens - model.pos_embed)).sum(dim=-1).abs().detach(), atol=1e-6,
                               rtol=1e-5)


# --- running the model ---------------------------------------------------------------------------------


def test_predict_equals_trace_the_model_and_each_image_alone():
    adapter = _adapter()
    images = _images()
    trace = adapter.trace(images, saliency="l2")
    predicted = adapter.predict(images)
    assert not predicted.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(predicted, adapter.model(images), atol=ATOL, rtol=0)
    torch.testing.assert_close(trace.logits, predicted, atol=ATOL, rtol=0)
    for b in range(3):
        alone = adapter.trace(images[b: b + 1], saliency="l2", target=trace.target[b: b + 1])
        torch.testing.assert_close(alone.attentions[0], trace.attentions[b], atol=ATOL, rtol=0)
        torch.testing.assert_close(alone.saliency[0], trace.saliency[b], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(alone.extras["readout_rows"][0], trace.extras["readout_rows"][b], atol=1e-6, rtol=0)


def test_perturb_mask_equals_the_model_on_hand_masked_pixels():
    adapter = _adapter()
    images = _images(2)
    keep = torch.ones(2, 17, dtype=torch.bool)
    keep[0, 0] = False  # patch (0, 0)
    keep[1, 10] = False  # patch (2, 1): token 10 is patch 9
    keep[1, 8] = False  # the class token: ignored
    masked = images.clone()
    masked[0, :, 0:4, 0:4] = 0
    masked[1, :, 8:12, 4:8] = 0
    with torch.no_grad():
        expected = adapter.model(masked)
    torch.testing.assert_close(adapter.perturb(images, keep, mode="mask"), expected, atol=ATOL, rtol=0)
    everything = adapter.perturb(images, torch.ones(2, 17, dtype=torch.bool), mode="mask")
    torch.testing.assert_close(everything, adapter.predict(images), atol=ATOL, rtol=0)


def test_perturb_mask_covers_overlapping_windows():
    model = VimAdapter(tiny_vim(config=tiny_vim().config.__class__(img_size=16, patch_size=4, stride=2, depth=1,
                                                                      embed_dim=16, num_classes=3)))
    assert model.grid == (7, 7) and model.num_tokens == 50
    keep = torch.ones(1, 50, dtype=torch.bool)
    keep[0, int(model.patch_positions()[3 * 7 + 2])] = False  # patch (3, 2): rows 6..9, columns 4..7
    pixels = model._pixel_keep(keep)[0]
    assert pixels[6:10, 4:8].eq(0).all() and pixels.eq(0).sum() == 16


def test_perturb_remove_equals_the_model_on_hand_built_sequences():
    adapter = _adapter()
    images = _images(3)
    keep = torch.ones(3, 17, dtype=torch.bool)
    keep[0, [0, 5, 12]] = False
    keep[1, [9, 16]] = False
    keep[2, :] = False  # only the class token stays
    got = adapter.perturb(images, keep, mode="remove")
    with torch.no_grad():
        embedded = adapter.model.embed(images)
        for b in range(3):
            kept = [i for i in range(17) if keep[b, i] or i == 8]
            readout = kept.index(8)
            expected = adapter.model.forward_tokens(embedded[b: b + 1, kept], readout=readout)
            torch.testing.assert_close(got[b: b + 1], expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(adapter.perturb(images, torch.ones(3, 17, dtype=torch.bool)), adapter.predict(images),
                               atol=ATOL, rtol=0)


def test_perturb_rejects_bad_input():
    adapter = _adapter()
    images = _images(2)
    with pytest.raises(ValueError, match=r"Expected `keep_mask` to have shape \(B, n\) = \(2, 17\), but got \(2, 16\)"):
        adapter.perturb(images, torch.ones(2, 16, dtype=torch.bool))
    with pytest.raises(TypeError, match="Expected `keep_mask` to be a bool tensor, but got torch.float32"):
        adapter.perturb(images, torch.ones(2, 17))
    with pytest.raises(ValueError, match="Expected `mode` to be one of 'remove', 'mask', but got 'zero'"):
        adapter.perturb(images, torch.ones(2, 17, dtype=torch.bool), mode="zero")


def test_images_as_paths_and_pil(tmp_path):
    from PIL import Image

    adapter = _adapter()
    pictures = [Image.new("RGB", (20, 24), color) for color in ((255, 0, 0), (10, 200, 30))]
    paths = []
    for index, picture in enumerate(pictures):
        paths.append(tmp_path / f"{index}.png")
        picture.save(paths[-1])
    pixels = adapter.preprocessing(pictures)
    assert pixels.shape == (2, 3, 16, 16)
    torch.testing.assert_close(adapter.predict([str(p) for p in paths]), adapter.predict(pixels), atol=ATOL, rtol=0)
    torch.testing.assert_close(adapter.trace(pictures, saliency=None).logits, adapter.predict(pixels), atol=ATOL,
                               rtol=0)
    with pytest.raises(ValueError, match=r"Expected `images` to have shape"):
        adapter.predict(torch.zeros(1, 3, 8, 8))


# --- what the model is, loading, routing ---------------------------------------------------------------


def test_labels_targets_and_layers():
    adapter = _adapter()
    assert adapter.num_layers == len(adapter.layers()) == 2 and adapter.num_classes == 3
    assert [adapter.label(i) for i in range(3)] == ["circle", "square", "triangle"]
    assert adapter.class_index("Square") == 1 and adapter.class_index("2") == 2
    with pytest.raises(ValueError, match="Expected `class_index` to be an integer in"):
        adapter.label(3)
    with pytest.raises(ValueError, match="Expected `target` to be 'pred', 'gold', a class index or one of the class"):
        adapter.class_index("hexagon")
    images = _images(2)
    assert adapter.trace(images, target="triangle", saliency=None).target.tolist() == [2, 2]
    assert adapter.trace(images, target="gold", labels=[0, 1], saliency=None).target.tolist() == [0, 1]
    with pytest.raises(ValueError, match="Expected `target` to hold 2 class indices in"):
        adapter.trace(images, target=3, saliency=None)
    default = VimAdapter(tiny_vim())
    assert default.label(2) == "2" and default.provides == {"attention", "residual_gradients", "readout_rows"}
    assert default.modality == "image" and default.task == "classification"


def test_accepts_no_hugging_face_config_and_text_routing_is_unchanged(tmp_path):
    from transformers import BertConfig, MambaConfig

    assert not VimAdapter.accepts(BertConfig()) and not VimAdapter.accepts(MambaConfig())
    assert adapter_for_config(BertConfig()).family == "text" and adapter_for_config(MambaConfig()).family == "mamba"
    assert parse_vim_spec("vim=some/dir")[0] is None and parse_vim_spec("bert-base-uncased") is None
    assert parse_vim_spec("vit=dir") is None
    folder = save_vim_folder(tiny_vim(), tmp_path / "tiny")
    adapter = load_adapter(f"vim={folder}")
    assert isinstance(adapter, VimAdapter) and adapter.family == "vim"
    assert isinstance(VimAdapter.from_pretrained(str(folder)), VimAdapter)


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_state_restored_after_success_and_failure():
    adapter = create_tiny_adapter("test_vim")
    model = adapter.model.train()
    model.layers[0].mixer.D.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    hooks = _hooks(model)
    images = _images(2)
    adapter.trace(images)
    adapter.predict(images)
    adapter.perturb(images, torch.ones(2, 17, dtype=torch.bool))
    assert model.training and [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == hooks

    def explode(module, args, output):
        raise RuntimeError("forced failure")

    handle = model.head.register_forward_hook(explode)
    try:
        for call in (lambda: adapter.trace(images), lambda: adapter.predict(images),
                     lambda: adapter.perturb(images, torch.ones(2, 17, dtype=torch.bool))):
            with pytest.raises(RuntimeError, match="forced failure"):
                call()
    finally:
        handle.remove()
    assert model.training and [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == hooks
    assert all(p.grad is None for p in model.parameters())


def test_reduced_reference_vim_as_a_folder_explains_the_shared_photos(tmp_path):
    from tests.conftest import SHARED_DATA

    source = SHARED_DATA / "vim"
    photos = sorted((SHARED_DATA / "images").glob("*.jpg"))[:2]
    if not (source / "vim_reduced.safetensors").is_file() or not photos:
        pytest.skip(f"Vim reference fixtures or photos not found under {SHARED_DATA}")
    folder = tmp_path / "reduced"
    folder.mkdir()
    (folder / "config.json").write_text((source / "vim_reduced_config.json").read_text())  # nested constructor args
    (folder / "model.safetensors").symlink_to(source / "vim_reduced.safetensors")
    adapter = load_adapter(f"vim={folder}")
    assert adapter.num_layers == 4 and adapter.num_tokens == 17 and adapter.preprocessing.size == (64, 64)
    trace = adapter.trace([str(p) for p in photos])
    assert trace.attentions.shape == (2, 4, 1, 17, 17) and torch.isfinite(trace.attentions).all()
    torch.testing.assert_close(trace.logits, adapter.predict([str(p) for p in photos]), atol=ATOL, rtol=0)


def test_forward_only_trace_equals_the_full_one_without_residual_gradients():
    from attnlens.models import create_tiny_adapter

    adapter = create_tiny_adapter("test_vim")
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    full = adapter.trace(pixels, saliency=None)
    forward_only = adapter.trace(pixels, saliency=None, gradients=False)
    assert "residual_grad" in full.extras and "residual_grad" not in forward_only.extras
    for key in ("hidden_attention_fwd", "hidden_attention_bwd", "hidden_attention", "readout_rows"):
        torch.testing.assert_close(forward_only.extras[key], full.extras[key])
    torch.testing.assert_close(forward_only.attentions, full.attentions)
    torch.testing.assert_close(forward_only.logits, full.logits)
    assert adapter.trace(pixels, saliency="l2", gradients=False).saliency is not None  # saliency runs the backward
