"""The tiny seeded Mamba classifier (``test_mamba_classifier``) for the one adapter contract test.

Like the other ``test_*`` variants (:mod:`attnlens.models._tiny`): 2 layers, hidden 16 expanded to
32 channels, 4 states, the encoder word-level tokenizer (``[CLS] ... [SEP]``, so the class is read
at ``[SEP]`` as with the bundled MiniLM tokenizer), Δ, A and D moved off their init, random weights
from a fixed seed (the global random state is left untouched).
"""

from __future__ import annotations

import torch

from attnlens.models._registry import register_tiny_variant
from attnlens.models._tiny import _ENCODER_SPECIALS, _LABELS, _seeded, _tokenizer
from attnlens.models.base import Adapter
from attnlens.models.hf_mamba_classifier import MambaClassifierAdapter


def tiny_mamba_classifier(vocab_size: int, *, seed: int = 0) -> torch.nn.Module:
    """A seeded 2-layer `MambaForSequenceClassification` (hidden 16, 4 states, 2 classes)."""
    from transformers import MambaConfig  # noqa: PLC0415

    from attnlens.models.mamba_classifier import MambaForSequenceClassification  # noqa: PLC0415

    config = MambaConfig(vocab_size=vocab_size, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2,
                         time_step_rank=2, pad_token_id=0, use_cache=False, **_LABELS)

    def build() -> torch.nn.Module:
        model = MambaForSequenceClassification(config)
        with torch.no_grad():
            for mixer in (layer.mixer for layer in model.backbone.layers):
                mixer.dt_proj.bias.add_(torch.randn_like(mixer.dt_proj.bias))
                mixer.A_log.add_(0.5 * torch.randn_like(mixer.A_log))
                mixer.D.add_(0.5 * torch.randn_like(mixer.D))
            model.score.weight.normal_(0.0, 1.0)  # large enough that the two classes' logits differ clearly
        return model

    return _seeded(build, seed)


@register_tiny_variant("test_mamba_classifier", family="mamba_classifier")
def _test_mamba_classifier() -> Adapter:
    tokenizer = _tokenizer(_ENCODER_SPECIALS, template=True)
    return MambaClassifierAdapter(tiny_mamba_classifier(len(tokenizer)), tokenizer)
