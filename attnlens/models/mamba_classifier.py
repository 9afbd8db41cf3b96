"""A Mamba sequence classifier: the last valid token's hidden state, a linear head.

Transformers ships Mamba only as a backbone (`MambaModel`) and a language model
(`MambaForCausalLM`). :class:`MambaForSequenceClassification` adds what GPT-2's classifier does
for a causal model (Radford et al. 2018, "Improving Language Understanding by Generative
Pre-Training"): it reads the class from the final state at the last valid token,
``logits = W · norm_f(h_L)[last] + b`` (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", for the backbone).

Padding is exact. Mamba has no attention mask, but it is causal: the output at position t depends
on tokens 0..t only (causal convolution, forward scan). With right padding, the padding after the
last valid token cannot change that token's state, so the pooled state of a padded row equals the
state of the row alone. The attention mask only tells which position is pooled (the last one where
it is 1); it is also handed to the backbone, which zeroes the padded positions' mixer inputs, so a
left-padded row (padding first) starts from the zero state it starts from alone as well.

Saved and loaded like any Hugging Face model (``config.architectures ==
["MambaForSequenceClassification"]``, ``id2label``); importing this module registers it with
``AutoModelForSequenceClassification`` for `MambaConfig`, and
:func:`attnlens.models.load_adapter` picks :class:`~attnlens.models.hf_mamba_classifier.MambaClassifierAdapter`
for such a folder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoModelForSequenceClassification, MambaConfig, MambaModel, MambaPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


def last_valid_positions(attention_mask: Tensor | None, batch: int, n: int, device: torch.device) -> Tensor:
    """`(B,)` long: per row the last position where `attention_mask (B, n)` is nonzero (n - 1 without a mask).

    Example:
        >>> last_valid_positions(torch.tensor([[1, 1, 0], [0, 1, 1]]), 2, 3, torch.device("cpu"))
        tensor([1, 2])
    """
    if attention_mask is None:
        return torch.full((batch,), n - 1, dtype=torch.long, device=device)
    positions = torch.arange(n, device=attention_mask.device)
    return (positions * (attention_mask != 0).long()).argmax(dim=-1).to(device)


class MambaForSequenceClassification(MambaPreTrainedModel):
    """Mamba backbone with a linear classification head on the last valid token's final hidden state.

    Args:
        config: a `MambaConfig`; `num_labels`, `id2label` and `label2id` name the classes.

    Example:
        >>> config = MambaConfig(vocab_size=10, hidden_size=8, state_size=2, num_hidden_layers=1, num_labels=3)
        >>> model = MambaForSequenceClassification(config).eval()
        >>> model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape
        torch.Size([1, 3])
    """

    def __init__(self, config: MambaConfig) -> None:
        super().__init__(config)
        # what save_pretrained writes, set now so an unsaved classifier is routed to its adapter family too
        config.architectures = [type(self).__name__]
        self.num_labels = config.num_labels
        self.backbone = MambaModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, new_embeddings: nn.Module) -> None:
        self.backbone.set_input_embeddings(new_embeddings)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        use_cache: bool | None = None,
        **kwargs: object,
    ) -> SequenceClassifierOutput:
        """Classify `input_ids (B, n)` (or `inputs_embeds (B, n, d)`) at each row's last valid token.

        Args:
            input_ids: `(B, n)` token ids, right-padded (or left-padded) where `attention_mask` is 0.
            attention_mask: `(B, n)` 1 on valid tokens; None: every position is valid.
            inputs_embeds: `(B, n, d)` instead of `input_ids`.
            labels: `(B,)` class indices (cross-entropy loss; mean squared error when `num_labels` is 1).
            output_hidden_states: also return every layer's hidden states `(B, n, d)`.
            return_dict: ignored (always a `SequenceClassifierOutput`).
            use_cache: ignored (a classifier keeps no recurrent cache).
            **kwargs: ignored (e.g. `token_type_ids` from a BERT tokenizer).

        Returns:
            A `SequenceClassifierOutput` with `logits (B, num_labels)` and `loss` when `labels` are given.
        """
        outputs = self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                use_cache=False, output_hidden_states=output_hidden_states, return_dict=True)
        hidden = outputs.last_hidden_state  # (B, n, d)
        batch, n = hidden.shape[:2]
        last = last_valid_positions(attention_mask, batch, n, hidden.device)
        logits = self.score(hidden[torch.arange(batch, device=hidden.device), last])
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


AutoModelForSequenceClassification.register(MambaConfig, MambaForSequenceClassification, exist_ok=True)

__all__ = ["MambaForSequenceClassification", "last_valid_positions"]
