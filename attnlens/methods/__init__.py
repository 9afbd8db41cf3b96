"""Pure, batched torch functions turning attention into joint attention or relevance."""

from attnlens.methods._common import fuse_heads
from attnlens.methods.raw_attention import raw_attention
from attnlens.methods.relevance import relevance
from attnlens.methods.rollout import SelectiveRollout, rollout, selective_rollout

__all__ = ["SelectiveRollout", "fuse_heads", "raw_attention", "relevance", "rollout", "selective_rollout"]
