"""Shared fixtures: tiny seeded models built in code, and paths to the offline shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # 2-core machines: one thread is faster and steadier when other work runs

def _find_shared() -> Path:
    """The project's offline folder: $ATTNLENS_SHARED, else `shared/` beside the checkout (tests that need it
    are skipped where neither exists)."""
    beside = Path(__file__).resolve().parents[2] / "shared"
    env = os.environ.get("ATTNLENS_SHARED")
    return Path(env) if env and Path(env).is_dir() else beside


SHARED = _find_shared()
SHARED_MODEL = SHARED / "models" / "minilm-sst2"
SHARED_DATA = SHARED / "data"
needs_shared_model = pytest.mark.skipif(not (SHARED_MODEL / "config.json").is_file(),
                                        reason=f"offline SST-2 classifier not found at {SHARED_MODEL}")
needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "sst2" / "dev.tsv").is_file(),
                                       reason=f"SST-2 TSVs not found under {SHARED_DATA}")

WORDS = ["good", "bad", "great", "awful", "movie", "film", "plot", "the", "a", "is", "was", "not", "very", "fun",
         "boring", "acting", "story", "and", "but", "."]


def random_attention(generator: torch.Generator, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Row-stochastic random attention of `shape` (..., n, n), with some near-zero entries."""
    logits = torch.randn(*shape, generator=generator, dtype=dtype) * 2
    return torch.softmax(logits, dim=-1)


def padded_attention(attn: torch.Tensor, lengths: list[int], generator: torch.Generator) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
    """Turn `(B, ..., n, n)` attention into a padded batch: example b keeps its first lengths[b]
    tokens (rows renormalised over them), padding gets garbage that must not matter."""
    batch, n = attn.shape[0], attn.shape[-1]
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    key = mask.view(batch, *([1] * (attn.ndim - 2)), n).to(attn.dtype)
    valid = attn * key
    valid = valid / valid.sum(dim=-1, keepdim=True)
    garbage = torch.rand(attn.shape, generator=generator, dtype=attn.dtype)
    pair = (mask[:, :, None] & mask[:, None, :]).view(batch, *([1] * (attn.ndim - 3)), n, n)
    return torch.where(pair, valid, garbage), mask


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tiny_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded 2-layer, 2-head BertForSequenceClassification (hidden 32) saved with its tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2,
                        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification(config).eval()
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_tokenizer_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sst2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with sst2/{dev,train}.tsv of 40 sentences made of the tiny vocabulary."""
    generator = torch.Generator().manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-data")
    (folder / "sst2").mkdir()
    lines = ["label\tsentence"]
    for index in range(40):
        size = int(torch.randint(3, 12, (1,), generator=generator))
        picks = torch.randint(0, len(WORDS), (size,), generator=generator).tolist()
        lines.append(f"{index % 2}\t{' '.join(WORDS[p] for p in picks)}")
    for split in ("dev", "train"):
        (folder / "sst2" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(42)


def word_level_tokenizer(words: list[str]):
    """A whitespace word-level fast tokenizer over `words` ([UNK] = 0, [PAD] = 1), built in code."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")


def tiny_mamba_lm(vocab_size: int, seed: int = 0):
    """A seeded 2-layer MambaForCausalLM (hidden 16, 4 states) with Δ, A and D moved off their init."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(seed)
    config = MambaConfig(vocab_size=vocab_size, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2,
                         time_step_rank=2)
    model = MambaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.dt_proj.bias.add_(torch.randn_like(layer.mixer.dt_proj.bias))
            layer.mixer.A_log.add_(0.5 * torch.randn_like(layer.mixer.A_log))
            layer.mixer.D.add_(0.5 * torch.randn_like(layer.mixer.D))
    return model


@pytest.fixture(scope="session")
def trained_vision_models(tmp_path_factory: pytest.TempPathFactory):
    """The tiny ViT and Vision Mamba trained once per test run on placed digits (16 px canvas, 4 px patches;
    `attnlens.training.vision.train_placed_digits_models`, about 20 s + 30 s at one thread), and held-out
    placed digits (digits of split "test", never seen in training).

    Returns a namespace: ``vit`` and ``vim`` (model folders: ``load_adapter(str(vit))``,
    ``load_adapter(f"vim={vim}")``), ``vit_result`` and ``vim_result`` (`TrainResult`), ``held_out`` (400
    `PlacedDigits`), ``size`` (16).
    """
    from types import SimpleNamespace

    from attnlens.datasets import placed_digits
    from attnlens.training.vision import PlacedDigitsRecipe, train_placed_digits_models

    recipe = PlacedDigitsRecipe()
    trained = train_placed_digits_models(tmp_path_factory.mktemp("placed-digit-models"), seed=0, recipe=recipe,
                                         progress=False)
    held_out = placed_digits(400, recipe.size, seed=2, split="test")
    return SimpleNamespace(vit=trained.vit, vim=trained.vim, vit_result=trained.vit_result,
                           vim_result=trained.vim_result, held_out=held_out, size=recipe.size)
