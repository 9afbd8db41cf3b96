"""The tiny seeded Jamba variant (attention and Mamba layers in one model) for the adapter contract test.

``test_jamba`` has 2 layers, a Mamba layer then an attention layer (2 query heads sharing 1
key/value head) with a 2-expert mixture of experts, hidden 16 (32 Mamba channels, 4 states),
the word-level tokenizer of :mod:`attnlens.models._tiny`, and random weights from a fixed seed
(the global random state is left untouched). :func:`tiny_jamba_lm` builds other layouts for tests.
"""

from __future__ import annotations

import torch

from attnlens.models._registry import register_tiny_variant
from attnlens.models._tiny import _CAUSAL_SPECIALS, _seeded, _tokenizer
from attnlens.models.base import Adapter
from attnlens.models.hf_hybrid import JambaAdapter


def tiny_jamba_lm(vocab_size: int, *, seed: int = 0, layers: int = 2, attn_layer_period: int = 2,
                  attn_layer_offset: int = 1) -> torch.nn.Module:
    """A seeded `JambaForCausalLM` (eager attention) with Δ, A, D and the Mamba RMS-norm weights moved off their init.

    Layer i is an attention layer when ``i % attn_layer_period == attn_layer_offset``, else a Mamba
    layer; every second layer's MLP is a mixture of 2 experts (top-1 routing).
    """
    from transformers import JambaConfig, JambaForCausalLM  # noqa: PLC0415

    config = JambaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, num_experts=2, num_experts_per_tok=1,
                         expert_layer_period=2, expert_layer_offset=1, attn_layer_period=attn_layer_period,
                         attn_layer_offset=attn_layer_offset, mamba_d_state=4, mamba_d_conv=4, mamba_expand=2,
                         mamba_dt_rank=2, max_position_embeddings=64, initializer_range=0.2, pad_token_id=0,
                         bos_token_id=None, eos_token_id=None)
    config._attn_implementation = "eager"

    def build() -> torch.nn.Module:
        model = JambaForCausalLM(config)
        with torch.no_grad():
            for mixer in (layer.mamba for layer in model.model.layers if hasattr(layer, "mamba")):
                mixer.dt_proj.bias.add_(torch.randn_like(mixer.dt_proj.bias))
                mixer.A_log.add_(0.5 * torch.randn_like(mixer.A_log))
                mixer.D.add_(0.5 * torch.randn_like(mixer.D))
                for norm in (mixer.dt_layernorm, mixer.b_layernorm, mixer.c_layernorm):
                    norm.weight.add_(0.3 * torch.randn_like(norm.weight))
        return model

    return _seeded(build, seed)


@register_tiny_variant("test_jamba", family="jamba")
def _test_jamba() -> Adapter:
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    return JambaAdapter(tiny_jamba_lm(len(tokenizer)), tokenizer)
