"""Structural memory check of hidden attention: the channel mean never holds a (D, n, n) tensor.

Issue 12 ("Long inputs"): ``channels="mean"`` and ``"abs_mean"`` keep memory at O(n² + chunk).
Every tensor an aten operation returns is seen by a TorchDispatchMode, and the largest storage
behind any of them (a view counts as its whole storage, so scratch buffers reused through views
are seen at full size) must not grow with the number of channels D (a (D, n, n) tensor doubles
when D does), and with every channel in one block it grows like n, not n². No timing: the sizes
are fixed, the checks are structural. ``channels="none"`` returns (B, D, n, n) and is the negative
control: the same detector sees it.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from attnlens.methods.hidden_attention import hidden_attention

torch.set_num_threads(1)


class _LargestStorage(TorchDispatchMode):
    """Records the largest storage (in elements) behind any tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.op = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_leaves(out):
            if isinstance(value, torch.Tensor):
                elements = value.untyped_storage().nbytes() // value.element_size()
                if elements > self.largest:
                    self.largest, self.op = elements, func
        return out


def _inputs(channels: int, states: int, tokens: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    delta = torch.nn.functional.softplus(torch.randn(1, channels, tokens, generator=g) - 3.0)
    A = -torch.arange(1, states + 1, dtype=torch.float32).repeat(channels, 1)
    B = torch.randn(1, states, tokens, generator=g)
    C = torch.randn(1, states, tokens, generator=g)
    mixer = {
        "gate": torch.randn(1, channels, tokens, generator=g),
        "conv_preactivation": torch.randn(1, channels, tokens, generator=g),
        "skip": torch.ones(channels),
        "conv_weight": torch.rand(channels, 4, generator=g) - 0.5,
    }
    return (delta, A, B, C), mixer


def _largest(mode: str, form: str, *, channels: int, states: int, tokens: int, channel_block=None) -> int:
    """Largest storage (elements) behind any tensor while computing one hidden attention."""
    args, mixer = _inputs(channels, states, tokens)
    extra = mixer if form == "unified" else {}
    with torch.no_grad(), _LargestStorage() as recorder:
        out = hidden_attention(*args, channels=mode, form=form, channel_block=channel_block, **extra)
    assert out.shape == ((1, tokens, tokens) if mode != "none" else (1, channels, tokens, tokens))
    return recorder.largest


# Mamba's N = 16 states, n = 256: the default channel block is 32 channels per channel (abs_mean)
# and 64 for the mean (one query chunk's keys at a time, at most 64), so D = 2 and 4 blocks are compared;
# a (D, n, n) tensor (D·n² = 2 M / 4 M elements for abs_mean) would double from one to the other.
_SHAPE = {"states": 16, "tokens": 256}
_CHANNELS = {"mean": (128, 256), "abs_mean": (64, 128)}


@pytest.mark.parametrize("form", ["scan", "unified"])
@pytest.mark.parametrize("mode", ["mean", "abs_mean"])
@pytest.mark.parametrize("channel_block", [None, 8])
def test_largest_tensor_does_not_grow_with_channels(mode, form, channel_block):
    few, many = _CHANNELS[mode] if channel_block is None else (32, 64)  # (D, n) input copies stay below n²
    one = _largest(mode, form, channels=few, channel_block=channel_block, **_SHAPE)
    two = _largest(mode, form, channels=many, channel_block=channel_block, **_SHAPE)
    assert two < 1.5 * one, f"largest tensor {one} elements at D = {few}, {two} at D = {many}"


@pytest.mark.parametrize("form", ["scan", "unified"])
def test_detector_sees_per_channel_matrices(form):
    one = _largest("none", form, channels=32, **_SHAPE)
    two = _largest("none", form, channels=64, **_SHAPE)
    assert one >= 32 * 256 * 256 and two >= 1.9 * one


# Every channel in one block (D = 64, N = 4): the blocks' scratch is O(D·N·n) (linear in n, and larger
# than the n² result here), so doubling n about doubles the largest tensor; a (D, n, n) one would
# make it 4x.
@pytest.mark.parametrize("form", ["scan", "unified"])
@pytest.mark.parametrize("mode", ["mean", "none"])
def test_one_block_of_all_channels_grows_like_n_in_mean_mode(mode, form):
    short = _largest(mode, form, channels=64, states=4, tokens=128, channel_block=64)
    long = _largest(mode, form, channels=64, states=4, tokens=256, channel_block=64)
    if mode == "mean":
        assert long < 3 * short, f"largest tensor {short} elements at n = 128, {long} at n = 256"
    else:  # the detector's negative control: (D, n, n) is returned
        assert long >= 3.9 * short
