"""Pure, batched torch functions turning attention into joint attention or relevance."""

from attnlens.methods._common import fuse_heads
from attnlens.methods.attention_flow import attention_flow, estimate_flow_seconds
from attnlens.methods.hidden_attention import hidden_attention
from attnlens.methods.mamba_attr import mamba_attr
from attnlens.methods.network_diffusion import network_diffusion
from attnlens.methods.raw_attention import raw_attention
from attnlens.methods.relevance import relevance
from attnlens.methods.rollout import rollout
from attnlens.methods.selective_rollout import SelectiveRollout, selective_rollout

__all__ = [
    "SelectiveRollout",
    "attention_flow",
    "estimate_flow_seconds",
    "fuse_heads",
    "hidden_attention",
    "mamba_attr",
    "network_diffusion",
    "raw_attention",
    "relevance",
    "rollout",
    "selective_rollout",
]
