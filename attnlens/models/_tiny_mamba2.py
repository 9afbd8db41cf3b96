"""The tiny seeded Mamba-2 variant ``test_mamba2`` for the adapter contract test.

2 layers, hidden 16 expanded to 32 channels in 4 heads of 8, 4 states, a convolution of 4 taps,
chunks of 4 tokens (so transformers' chunked scan crosses chunks), and Δ's bias, A, D, the
convolution bias, the gated RMSNorm's weight and the B, C convolution taps moved off their initial
values so that the hidden attention, the skip and the bias term are not trivial. The global random
state is left untouched.
"""

from __future__ import annotations

import torch

from attnlens.models._registry import register_tiny_variant
from attnlens.models._tiny import _CAUSAL_SPECIALS, _seeded, _tokenizer
from attnlens.models.base import Adapter
from attnlens.models.hf_mamba2 import Mamba2Adapter


def tiny_mamba2_lm(vocab_size: int, *, n_groups: int = 1, use_conv_bias: bool = True, seed: int = 0
                   ) -> torch.nn.Module:
    """A seeded 2-layer `Mamba2ForCausalLM` (hidden 16, 4 heads of 8 channels, 4 states, `n_groups` groups)."""
    from transformers import Mamba2Config, Mamba2ForCausalLM  # noqa: PLC0415

    config = Mamba2Config(vocab_size=vocab_size, hidden_size=16, expand=2, num_heads=4, head_dim=8, state_size=4,
                          n_groups=n_groups, num_hidden_layers=2, conv_kernel=4, chunk_size=4,
                          use_conv_bias=use_conv_bias, pad_token_id=0, bos_token_id=None, eos_token_id=None)

    def build() -> torch.nn.Module:
        model = Mamba2ForCausalLM(config)
        with torch.no_grad():
            for mixer in (layer.mixer for layer in model.backbone.layers):
                mixer.dt_bias.add_(3.5 + torch.randn_like(mixer.dt_bias))  # Δ ≈ 0.05..1 instead of ≈ 0.01
                mixer.A_log.add_(0.5 * torch.randn_like(mixer.A_log))
                mixer.D.add_(0.5 * torch.randn_like(mixer.D))
                mixer.norm.weight.add_(0.3 * torch.randn_like(mixer.norm.weight))
                mixer.conv1d.weight[mixer.intermediate_size :].mul_(3.0)  # larger B and C: α well away from 0
                if mixer.conv1d.bias is not None:
                    mixer.conv1d.bias.add_(0.3 * torch.randn_like(mixer.conv1d.bias))
        return model

    return _seeded(build, seed)


@register_tiny_variant("test_mamba2", family="mamba2")
def _test_mamba2() -> Adapter:
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    return Mamba2Adapter(tiny_mamba2_lm(len(tokenizer)), tokenizer)
