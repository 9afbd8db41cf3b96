"""Tiny seeded variants of every adapter family, built in code, for the one adapter contract test.

Like timm's ``test_*`` models: 2 layers, 2 heads, hidden 32 (Mamba: 16, expanded to 32
channels), a word-level tokenizer over a few sentiment words ([CLS] ... [SEP] for encoders),
random weights from a fixed seed (the global random state is left untouched). The ``mamba``
family has two: ``test_mamba`` (Mamba-1) and ``test_falcon_mamba`` (Falcon-Mamba). Each factory
returns a fresh adapter; ``create_tiny_adapter("test_bert")`` builds one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnlens.models._registry import register_tiny_variant
from attnlens.models.base import Adapter
from attnlens.models.hf_causal_text import CausalTextClassifierAdapter
from attnlens.models.hf_mamba import MambaAdapter
from attnlens.models.hf_text import TextClassifierAdapter

TINY_WORDS = ("good", "bad", "great", "awful", "movie", "film", "plot", "the", "a", "is", "was", "not", "very", "fun",
              "boring", "acting", "story", "and", "but", ".")
_ENCODER_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                     "mask_token": "[MASK]"}
_CAUSAL_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]"}
_LABELS = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
          "max_position_embeddings": 64, "pad_token_id": 0, "initializer_range": 0.1, **_LABELS}


def _tokenizer(specials: dict[str, str], *, template: bool, padding_side: str = "right",
               token_types: bool = False) -> object:
    """A whitespace word-level fast tokenizer: the special tokens (padding first, id 0), then `TINY_WORDS`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    vocab = {token: index for index, token in enumerate([*specials.values(), *TINY_WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if template:
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    names = ["input_ids", "token_type_ids", "attention_mask"] if token_types else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=48, padding_side=padding_side,
                                   model_input_names=names, **specials)


def _seeded(build: Callable[[], torch.nn.Module], seed: int = 0) -> torch.nn.Module:
    """`build()` under a fixed seed, in eval mode, leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def _encoder(model_class: type, config_class: type, *, token_types: bool = False, **sizes: object) -> Adapter:
    tokenizer = _tokenizer(_ENCODER_SPECIALS, template=True, token_types=token_types)
    config = config_class(**{"vocab_size": len(tokenizer), **_SIZES, **sizes})
    return TextClassifierAdapter(_seeded(lambda: model_class(config)), tokenizer)


def _causal(model_class: type, config_class: type, *, padding_side: str = "right", **sizes: object) -> Adapter:
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False, padding_side=padding_side)
    config = config_class(**{"vocab_size": len(tokenizer), **_SIZES, **sizes})
    return CausalTextClassifierAdapter(_seeded(lambda: model_class(config)), tokenizer)


@register_tiny_variant("test_bert", family="text")
def _test_bert() -> Adapter:
    from transformers import BertConfig, BertForSequenceClassification  # noqa: PLC0415

    return _encoder(BertForSequenceClassification, BertConfig, token_types=True)


@register_tiny_variant("test_distilbert", family="text")
def _test_distilbert() -> Adapter:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification  # noqa: PLC0415

    return _encoder(DistilBertForSequenceClassification, DistilBertConfig, hidden_dim=64)


@register_tiny_variant("test_roberta", family="text")
def _test_roberta() -> Adapter:
    from transformers import RobertaConfig, RobertaForSequenceClassification  # noqa: PLC0415

    return _encoder(RobertaForSequenceClassification, RobertaConfig, type_vocab_size=1)


@register_tiny_variant("test_electra", family="text")
def _test_electra() -> Adapter:
    from transformers import ElectraConfig, ElectraForSequenceClassification  # noqa: PLC0415

    return _encoder(ElectraForSequenceClassification, ElectraConfig, token_types=True, embedding_size=16)


@register_tiny_variant("test_albert", family="text")
def _test_albert() -> Adapter:
    from transformers import AlbertConfig, AlbertForSequenceClassification  # noqa: PLC0415

    return _encoder(AlbertForSequenceClassification, AlbertConfig, token_types=True, embedding_size=16)


@register_tiny_variant("test_deberta_v2", family="text")
def _test_deberta_v2() -> Adapter:
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification  # noqa: PLC0415

    return _encoder(DebertaV2ForSequenceClassification, DebertaV2Config, relative_attention=True,
                    pos_att_type=["p2c", "c2p"], position_buckets=16, max_relative_positions=32, type_vocab_size=0)


@register_tiny_variant("test_mpnet", family="text")
def _test_mpnet() -> Adapter:
    from transformers import MPNetConfig, MPNetForSequenceClassification  # noqa: PLC0415

    return _encoder(MPNetForSequenceClassification, MPNetConfig)


@register_tiny_variant("test_gpt2", family="causal_text")
def _test_gpt2() -> Adapter:
    from transformers import GPT2Config, GPT2ForSequenceClassification  # noqa: PLC0415

    return _causal(GPT2ForSequenceClassification, GPT2Config, n_inner=64, bos_token_id=0, eos_token_id=0)


@register_tiny_variant("test_gpt2_left", family="causal_text")
def _test_gpt2_left() -> Adapter:
    from transformers import GPT2Config, GPT2ForSequenceClassification  # noqa: PLC0415

    return _causal(GPT2ForSequenceClassification, GPT2Config, padding_side="left", n_inner=64, bos_token_id=0,
                   eos_token_id=0)


@register_tiny_variant("test_llama", family="causal_text")
def _test_llama() -> Adapter:
    from transformers import LlamaConfig, LlamaForSequenceClassification  # noqa: PLC0415

    return _causal(LlamaForSequenceClassification, LlamaConfig, padding_side="left", num_key_value_heads=2,
                   bos_token_id=None, eos_token_id=None)


def _tiny_ssm_lm(model_class: type, config: object, seed: int, conv_bias: bool = False) -> torch.nn.Module:
    """`model_class(config)` seeded, with Δ, A and D (and with `conv_bias` the conv bias, zero at init)
    moved off their init."""

    def build() -> torch.nn.Module:
        model = model_class(config)
        with torch.no_grad():
            for mixer in (layer.mixer for layer in model.backbone.layers):
                mixer.dt_proj.bias.add_(torch.randn_like(mixer.dt_proj.bias))
                mixer.A_log.add_(0.5 * torch.randn_like(mixer.A_log))
                mixer.D.add_(0.5 * torch.randn_like(mixer.D))
                if conv_bias and mixer.conv1d.bias is not None:
                    mixer.conv1d.bias.add_(0.5 * torch.randn_like(mixer.conv1d.bias))
        return model

    return _seeded(build, seed)


def tiny_mamba_lm(vocab_size: int, *, seed: int = 0, conv_bias: bool = False, **config: object) -> torch.nn.Module:
    """A seeded 2-layer `MambaForCausalLM` (hidden 16, 4 states) with Δ, A and D moved off their init
    (with `conv_bias` the conv bias too); `config` overrides `MambaConfig` fields (``use_conv_bias=False``)."""
    from transformers import MambaConfig, MambaForCausalLM  # noqa: PLC0415

    sizes = {"hidden_size": 16, "state_size": 4, "num_hidden_layers": 2, "expand": 2, "time_step_rank": 2,
             "pad_token_id": 0, **config}
    return _tiny_ssm_lm(MambaForCausalLM, MambaConfig(vocab_size=vocab_size, **sizes), seed, conv_bias)


def tiny_falcon_mamba_lm(vocab_size: int, *, seed: int = 0, conv_bias: bool = True,
                         **config: object) -> torch.nn.Module:
    """A seeded 2-layer `FalconMambaForCausalLM` (hidden 16, 4 states: Mamba-1 with RMS-normalised B, C
    and Δ) with Δ, A, D and (with `conv_bias`) the conv bias moved off their init; `config` overrides
    `FalconMambaConfig` fields."""
    from transformers import FalconMambaConfig, FalconMambaForCausalLM  # noqa: PLC0415

    sizes = {"hidden_size": 16, "state_size": 4, "num_hidden_layers": 2, "expand": 2, "time_step_rank": 2,
             "pad_token_id": 0, **config}
    return _tiny_ssm_lm(FalconMambaForCausalLM, FalconMambaConfig(vocab_size=vocab_size, **sizes), seed, conv_bias)


@register_tiny_variant("test_mamba", family="mamba")
def _test_mamba() -> Adapter:
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    return MambaAdapter(tiny_mamba_lm(len(tokenizer)), tokenizer)


@register_tiny_variant("test_falcon_mamba", family="mamba")
def _test_falcon_mamba() -> Adapter:
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    return MambaAdapter(tiny_falcon_mamba_lm(len(tokenizer)), tokenizer)
