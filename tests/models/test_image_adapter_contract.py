"""One contract for every tiny registered image adapter (``modality == "image"``), in the spirit of the text
contract (timm's `test_models` over `list_models()`): Trace shapes and dtypes, finite values, row-stochastic
attention, a valid readout, a patch grid consistent with `patch_positions`, gradients, predict and perturb
against the model called directly, layers, labels, and hooks, `requires_grad` and the training flag restored
after success and after a forced failure.

Written against the base-class API only, plus what every image adapter carries: ``preprocessing`` (an
:class:`~attnlens.datasets.images.ImagePreprocessing`, how paths and PIL images become pixels)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from attnlens.datasets.images import ImagePreprocessing
from attnlens.models import Adapter, adapter_for_config, create_tiny_adapter, get_adapter_class, list_adapters
from attnlens.models import list_tiny_variants

VARIANTS = sorted(name for family in list_adapters() if get_adapter_class(family).modality == "image"
                  for name in list_tiny_variants(family))
ATOL = 1e-5


def _images() -> list[Image.Image]:
    """Three PIL images of different sizes and modes (each adapter resizes them to its own input size)."""
    rng = np.random.RandomState(0)
    return [Image.fromarray(rng.randint(0, 256, (20, 24, 3), dtype=np.uint8)),
            Image.fromarray(rng.randint(0, 256, (32, 32), dtype=np.uint8)),  # grayscale
            Image.fromarray(rng.randint(0, 256, (17, 17, 4), dtype=np.uint8), mode="RGBA")]


IMAGES = _images()


@functools.cache
def _adapter(name: str) -> Adapter:
    return create_tiny_adapter(name)


def _pixels(adapter: Adapter) -> torch.Tensor:
    return adapter.preprocessing(IMAGES)


def _direct(adapter: Adapter, pixels: torch.Tensor) -> torch.Tensor:
    """The model itself on the pixels: `(B, C)` logits."""
    with torch.no_grad():
        out = adapter.model(pixels.to(adapter.device))
    return out.logits if hasattr(out, "logits") else out


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_there_are_image_variants():
    assert {"test_vit", "test_deit"} <= set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_family_and_routing(name):
    adapter = _adapter(name)
    assert isinstance(adapter, Adapter) and name in list_tiny_variants(adapter.family)
    assert adapter.modality == "image" and adapter.device == torch.device("cpu")
    assert isinstance(adapter.preprocessing, ImagePreprocessing)
    config = getattr(adapter.model, "config", None)
    if config is not None and hasattr(config, "model_type"):  # Hugging Face families route by config
        assert adapter_for_config(config) is type(adapter)


@pytest.mark.parametrize("name", VARIANTS)
def test_trace_contract(name):
    adapter = _adapter(name)
    trace = adapter.trace(IMAGES, labels=[1, 0, 2], saliency="l2")
    batch, n = trace.mask.shape
    assert batch == len(IMAGES) and trace.mask.dtype == torch.bool
    assert trace.attentions.ndim == 5 and trace.attentions.shape[:2] == (batch, adapter.num_layers)
    assert trace.attentions.shape[-2:] == (n, n) and trace.attentions.is_floating_point()
    assert trace.logits.shape == (batch, adapter.num_classes)
    for tensor in (trace.attentions, trace.logits, trace.saliency, *trace.extras.values()):
        assert torch.isfinite(tensor).all()
    rows = trace.attentions.sum(dim=-1)[trace.mask[:, None, None, :].expand_as(trace.attentions[..., 0])]
    torch.testing.assert_close(rows, torch.ones_like(rows), atol=ATOL, rtol=0)
    assert (trace.attentions * ~trace.mask[:, None, None, None, :]).abs().sum() == 0
    assert trace.target.dtype == torch.long and trace.target.shape == (batch,)
    assert trace.readout.dtype == torch.long and trace.readout.shape == (batch,)
    assert trace.mask.gather(1, trace.readout[:, None]).all()  # the readout is a valid token
    assert trace.labels.tolist() == [1, 0, 2]
    assert trace.saliency.shape == (batch, n) and (trace.saliency[~trace.mask] == 0).all()
    assert (trace.saliency[trace.mask] > 0).any()  # gradients flowed
    assert [len(tokens) for tokens in trace.tokens] == trace.mask.sum(dim=-1).tolist()
    assert adapter.count_tokens(IMAGES) == trace.mask.sum(dim=-1).tolist()
    assert adapter.trace(IMAGES, saliency=None).saliency is None


@pytest.mark.parametrize("name", VARIANTS)
def test_grid_and_patch_positions(name):
    adapter = _adapter(name)
    trace = adapter.trace(IMAGES[:2], saliency=None)
    rows, columns = trace.grid
    positions = trace.patch_positions
    assert rows > 0 and columns > 0 and positions.dtype == torch.long and positions.shape == (rows * columns,)
    assert len(set(positions.tolist())) == rows * columns  # distinct
    n = trace.mask.shape[1]
    assert int(positions.min()) >= 0 and int(positions.max()) < n
    assert not (positions[:, None] == trace.readout[None, :]).any()  # the readout is no patch
    for b in range(2):
        assert trace.mask[b, positions].all()


@pytest.mark.parametrize("name", VARIANTS)
def test_tensor_and_image_inputs_agree(name):
    adapter = _adapter(name)
    pixels = _pixels(adapter)
    assert pixels.ndim == 4 and pixels.shape[:2] == (3, 3) and pixels.dtype == torch.float32
    from_images = adapter.trace(IMAGES, saliency=None)
    from_pixels = adapter.trace(pixels, saliency=None)
    torch.testing.assert_close(from_images.logits, from_pixels.logits, atol=0, rtol=0)
    torch.testing.assert_close(from_images.attentions, from_pixels.attentions, atol=0, rtol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_batched_equals_each_image_alone(name):
    adapter = _adapter(name)
    batched = adapter.trace(IMAGES, saliency="l2")
    for b, image in enumerate(IMAGES):
        alone = adapter.trace([image], saliency="l2", target=batched.target[b : b + 1])
        torch.testing.assert_close(batched.attentions[b], alone.attentions[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(batched.logits[b], alone.logits[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(batched.saliency[b], alone.saliency[0], atol=ATOL, rtol=1e-4)
        assert int(batched.readout[b]) == int(alone.readout[0])


@pytest.mark.parametrize("name", VARIANTS)
def test_predict_equals_trace_and_the_model_itself(name):
    adapter = _adapter(name)
    trace = adapter.trace(IMAGES, saliency=None)
    predicted = adapter.predict(IMAGES)
    assert predicted.shape == trace.logits.shape and not predicted.requires_grad
    torch.testing.assert_close(predicted, trace.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(predicted, _direct(adapter, _pixels(adapter)), atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ["remove", "mask"])
@pytest.mark.parametrize("name", VARIANTS)
def test_perturb_keep_all_equals_predict(name, mode):
    adapter = _adapter(name)
    trace = adapter.trace(IMAGES, saliency=None)
    everything = adapter.perturb(IMAGES, torch.ones_like(trace.mask), mode=mode)
    torch.testing.assert_close(everything, adapter.predict(IMAGES), atol=ATOL, rtol=0)
    keep = torch.ones_like(trace.mask)
    keep[:, trace.patch_positions[: len(trace.patch_positions) // 2]] = False  # drop the top half of the grid
    dropped = adapter.perturb(IMAGES, keep, mode=mode)
    assert dropped.shape == everything.shape and torch.isfinite(dropped).all()
    assert not torch.allclose(dropped, everything)  # the patches mattered


@pytest.mark.parametrize("name", VARIANTS)
def test_perturb_rejects_bad_input(name):
    adapter = _adapter(name)
    mask = adapter.trace(IMAGES, saliency=None).mask
    batch, n = mask.shape
    with pytest.raises(ValueError, match=rf"Expected `keep_mask` to have shape \(B, n\) = \({batch}, {n}\), but got "
                                         rf"\({batch}, {n - 1}\)"):
        adapter.perturb(IMAGES, mask[:, 1:])
    with pytest.raises(TypeError, match="Expected `keep_mask` to be a bool tensor, but got torch.float32"):
        adapter.perturb(IMAGES, mask.float())
    with pytest.raises(ValueError, match="Expected `mode` to be one of 'remove', 'mask', but got 'zero'"):
        adapter.perturb(IMAGES, mask, mode="zero")


@pytest.mark.parametrize("name", VARIANTS)
def test_bad_images_are_refused(name, tmp_path):
    adapter = _adapter(name)
    size = adapter.preprocessing.size
    with pytest.raises(ValueError, match=rf"Expected `images` to have shape \(B, 3, H, W\) = \(B, 3, {size[0]}, "
                                         rf"{size[1]}\), but got \(2, 3, {size[0] + 1}, {size[1]}\)"):
        adapter.trace(torch.zeros(2, 3, size[0] + 1, size[1]))
    with pytest.raises(TypeError, match="Expected `images` to be a floating tensor of pixel values"):
        adapter.predict(torch.zeros(1, 3, *size, dtype=torch.uint8))
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="is not an image"):
        adapter.trace([text])
    with pytest.raises(ValueError, match="Expected `images` to be a .* non-empty list of image paths or PIL images, "
                                         "but got an empty list"):
        adapter.predict([])


@pytest.mark.parametrize("name", VARIANTS)
def test_layers_labels_and_class_names(name):
    adapter = _adapter(name)
    layers = adapter.layers()
    assert len(layers) == adapter.num_layers == 2 and all(isinstance(m, torch.nn.Module) for m in layers)
    for index in range(min(adapter.num_classes, 5)):
        assert adapter.class_index(adapter.label(index)) == index
    assert adapter.class_index("1") == 1
    with pytest.raises(ValueError, match="Expected `class_index` to be an integer in"):
        adapter.label(adapter.num_classes)
    with pytest.raises(ValueError, match="Expected `target` to be"):
        adapter.class_index("not a class at all")
    assert adapter.trace(IMAGES[:2], target=adapter.label(1), saliency=None).target.tolist() == [1, 1]


@pytest.mark.parametrize("name", VARIANTS)
def test_target_forms(name):
    adapter = _adapter(name)
    pred = adapter.trace(IMAGES[:2], saliency=None).target
    forms = {"pred": pred.tolist(), None: pred.tolist(), 1: [1, 1], (0, 1): [0, 1], torch.tensor([1, 0]): [1, 0]}
    for target, expected in forms.items():
        assert adapter.trace(IMAGES[:2], target=target, saliency=None).target.tolist() == expected
    assert adapter.trace(IMAGES[:2], target="gold", labels=[0, 1], saliency=None).target.tolist() == [0, 1]
    with pytest.raises(TypeError, match="Expected `target` to be"):
        adapter.trace(IMAGES[:2], target=0.5, saliency=None)
    with pytest.raises(ValueError, match="Expected `target` to hold"):
        adapter.trace(IMAGES[:2], target=adapter.num_classes, saliency=None)


_EXTRAS = {"attention_gradients": "attention_grad", "hidden_attention_gradients": "hidden_attention_grad",
           "residual_gradients": "residual_grad", "readout_rows": "readout_rows"}


@pytest.mark.parametrize("name", VARIANTS)
def test_what_traces_provide(name):
    adapter = _adapter(name)
    trace = adapter.trace(IMAGES[:2], saliency="sum_abs")
    batch, n = trace.mask.shape
    assert adapter.task == "classification" and "attention" in adapter.provides
    for need in adapter.provides - {"attention"}:
        assert _EXTRAS[need] in trace.extras, f"{name} provides {need!r} but its trace lacks {_EXTRAS[need]!r}"
    if "attention_gradients" in adapter.provides:
        grad = trace.extras["attention_grad"]
        assert grad.shape == trace.attentions.shape and grad.abs().sum() > 0


@pytest.mark.parametrize("name", VARIANTS)
def test_state_restored_after_success_and_failure(name):
    adapter = create_tiny_adapter(name)  # a fresh one: this test changes the training flag
    model = adapter.model
    adapter.trace(IMAGES[:1])  # transformers 5 installs its own output-recording hooks on first use
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    hooks = _hooks(model)
    adapter.trace(IMAGES[:2])
    adapter.predict(IMAGES[:2])
    mask = adapter.trace(IMAGES[:2], saliency=None).mask
    for mode in ("remove", "mask"):
        adapter.perturb(IMAGES[:2], mask, mode=mode)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == hooks

    def explode(module, args, output):
        raise RuntimeError("forced failure")

    last = [m for m in model.modules() if list(m.parameters(recurse=False))][-1]
    handle = last.register_forward_hook(explode)
    try:
        for call in (lambda: adapter.trace(IMAGES[:2]), lambda: adapter.predict(IMAGES[:2]),
                     lambda: adapter.perturb(IMAGES[:2], mask, mode="remove")):
            with pytest.raises(RuntimeError, match="forced failure"):
                call()
    finally:
        handle.remove()
    assert model.training and [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == hooks
    assert all(p.grad is None for p in model.parameters())
