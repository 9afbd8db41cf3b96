"""Pure, batched torch functions turning attention into joint attention or relevance."""

from attnlens.methods._common import fuse_heads
from attnlens.methods.attention_flow import attention_flow, estimate_flow_seconds
from attnlens.methods.hidden_attention import hidden_attention
from attnlens.methods.layer_distances import LayerDistances, layer_distances
from attnlens.methods.gradient_rollout import gradient_rollout
from attnlens.methods.mamba_attr import mamba_attr, mamba_attr_alpha_grad
from attnlens.methods.patch_map import patch_map, upsample_patch_map
from attnlens.methods.released_vim import released_mamba_attr, released_raw_attention, released_rollout
from attnlens.methods.network_diffusion import network_diffusion
from attnlens.methods.raw_attention import raw_attention
from attnlens.methods.relevance import relevance
from attnlens.methods.rollout import rollout
from attnlens.methods.selective_rollout import SelectiveRollout, selective_rollout
from attnlens.methods.ssd_attention import ssd_hidden_attention, ssd_unified_attention, ssd_unified_attention_bias
from attnlens.methods.unified_attention import unified_attention_bias

__all__ = [
    "LayerDistances",
    "SelectiveRollout",
    "attention_flow",
    "estimate_flow_seconds",
    "fuse_heads",
    "hidden_attention",
    "layer_distances",
    "gradient_rollout",
    "mamba_attr",
    "mamba_attr_alpha_grad",
    "patch_map",
    "released_mamba_attr",
    "released_raw_attention",
    "released_rollout",
    "upsample_patch_map",
    "network_diffusion",
    "raw_attention",
    "relevance",
    "rollout",
    "selective_rollout",
    "ssd_hidden_attention",
    "ssd_unified_attention",
    "ssd_unified_attention_bias",
    "unified_attention_bias",
]
