"""Train tiny image classifiers: a reusable trainer, tiny ViT and Vision Mamba factories, and placed-digit models.

The tests and the README figure explain models trained here on `placed_digits` (a scikit-learn
digit pasted into a random quadrant of a black canvas), a task whose answer has a known location.
`train_image_classifier` works for any ``nn.Module`` mapping `(B, 3, H, W)` images to `(B, C)`
logits (or to an output object with ``.logits``, as Hugging Face models return).

Run ``python -m attnlens.training.vision --out DIR`` to train and save both tiny models.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from attnlens._checks import ArgumentError, ArgumentTypeError, _check_creatable_folder, _check_integer, _check_number
from attnlens._files import _write_folder_atomically
from attnlens.training.finetune import _progress_bar  # one training bar: loss, examples/s, elapsed, ETA

TRAINING_RECORD = "attnlens_training.json"
"""The record written beside every saved placed-digits model: settings, steps, seconds, accuracy."""
VIT_FOLDER = "vit"
VIM_FOLDER = "vim"


@dataclass(frozen=True)
class TrainResult:
    """What `train_image_classifier` did.

    Attributes:
        accuracy: top-1 accuracy on the evaluation images, or None without them.
        steps: optimizer steps taken.
        seconds: wall time of the training loop (evaluation excluded).
        epochs_done: passes over the training images, fractional.
        stopped_by: ``"epochs"``, ``"max_steps"`` or ``"time_budget"``.
        examples_per_second: training throughput.
        final_loss: mean training loss of the last 20 steps.
        losses: training loss of every step, first step first.
    """

    accuracy: float | None
    steps: int
    seconds: float
    epochs_done: float
    stopped_by: str
    examples_per_second: float
    final_loss: float
    losses: tuple[float, ...] = field(default=(), repr=False)


def _logits_of(output: Any) -> Tensor:
    """The `(B, C)` logits of a model output: a tensor, an object with ``.logits``, or a tuple led by them."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ArgumentTypeError(f"Expected `model` to return logits (a tensor or an output with .logits), but got "
                            f"{type(output).__name__}.", "model")


def _train_check(model: object, images: object, labels: object, eval_images: object, eval_labels: object) -> None:
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"Expected `model` to be a torch.nn.Module, but got {type(model).__name__}.", "model")
    for name, x, y, y_name in (("images", images, labels, "labels"), ("eval_images", eval_images, eval_labels,
                                                                       "eval_labels")):
        if name == "eval_images" and x is None and y is None:
            continue
        if (x is None) != (y is None):
            raise ArgumentError(f"Expected `eval_images` and `eval_labels` to be given together, but got only "
                                f"`{name if x is not None else y_name}`.", name)
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ArgumentTypeError(f"Expected `{name}` to be a floating torch.Tensor, but got "
                                    f"{getattr(x, 'dtype', type(x).__name__)}.", name)
        if x.ndim != 4 or x.shape[0] == 0:
            raise ArgumentError(f"Expected `{name}` to have shape (B, 3, H, W) with B > 0, but got {tuple(x.shape)}.",
                                name)
        if not isinstance(y, Tensor) or y.is_floating_point() or y.dtype == torch.bool:
            raise ArgumentTypeError(f"Expected `{y_name}` to be an integer torch.Tensor, but got "
                                    f"{getattr(y, 'dtype', type(y).__name__)}.", y_name)
        if tuple(y.shape) != (x.shape[0],):
            raise ArgumentError(f"Expected `{y_name}` to have shape (B,) = ({x.shape[0]},), but got {tuple(y.shape)}.",
                                y_name)


def train_image_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int | None = None,
    time_budget: float | None = None,
    max_steps: int | None = None,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    weight_decay: float = 0.05,
    warmup_ratio: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    eval_images: Tensor | None = None,
    eval_labels: Tensor | None = None,
) -> TrainResult:
    """Train `model` in place on `images` with cross-entropy, AdamW and a warm-up + cosine learning rate.

    Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW); Loshchilov & Hutter
    2017, "SGDR" (cosine decay) after a linear warm-up over `warmup_ratio` of training.

    Stops at the first of: `max_steps` optimizer steps, `epochs` passes over the data, `time_budget`
    seconds (checked after each step). The schedule follows the larger of ``steps / planned`` and
    ``elapsed / time_budget``, so a run cut by its budget still warms up and decays. With neither
    `epochs` nor `max_steps` nor `time_budget` it trains one epoch. Batches are drawn by a permutation
    per epoch seeded with `seed`, and the global RNG is forked and seeded with `seed` during training
    (dropout), so a run limited by `epochs` or `max_steps` is reproducible on the same machine; one
    cut by `time_budget` stops where the clock says. Gradients are clipped to norm 1. Training runs
    on the device of the model's parameters; the model is left in eval mode.

    Args:
        model: any module mapping `(B, 3, H, W)` to `(B, C)` logits, or to an output with ``.logits``.
        images: `(N, 3, H, W)` float training images.
        labels: `(N,)` integer classes.
        epochs: passes over the training images.
        time_budget: seconds of training after which to stop.
        max_steps: optimizer steps after which to stop.
        batch_size: images per step.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay of the weights of 2 or more dimensions (not biases, norms,
            embeddings' 1-D parameters).
        warmup_ratio: fraction of training spent warming the learning rate up from 0, in [0, 1).
        seed: seed of the batch order and of the forked global RNG.
        progress: show a rich progress bar on stderr with loss and examples per second.
        eval_images: `(M, 3, H, W)` held-out images for the final accuracy.
        eval_labels: `(M,)` their classes.

    Returns:
        A `TrainResult` (``accuracy`` None without evaluation images).

    Raises:
        ValueError: on mismatched shapes, a non-positive count or budget, or eval images without labels.
        TypeError: on a model that is not a module, non-floating images, non-integer labels.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
        >>> images = torch.rand(32, 3, 4, 4)
        >>> labels = (images[:, 0, 0, 0] > 0.5).long()
        >>> result = train_image_classifier(model, images, labels, epochs=2, batch_size=8, progress=False)
        >>> result.steps, result.stopped_by
        (8, 'epochs')
    """
    _train_check(model, images, labels, eval_images, eval_labels)
    epochs = _check_integer(epochs, "epochs", low=1, allow_none=True, description="a positive integer")
    max_steps = _check_integer(max_steps, "max_steps", low=1, allow_none=True, description="a positive integer")
    batch_size = _check_integer(batch_size, "batch_size", low=1, description="a positive integer")
    seed = _check_integer(seed, "seed", low=0, description="a non-negative integer")
    if time_budget is not None:
        time_budget = _check_number(time_budget, "time_budget", low=0, low_inclusive=False)
    _check_number(learning_rate, "learning_rate", low=0, low_inclusive=False)
    _check_number(weight_decay, "weight_decay", low=0)
    _check_number(warmup_ratio, "warmup_ratio", low=0, high=1, high_inclusive=False)
    if epochs is None and max_steps is None and time_budget is None:
        epochs = 1

    steps_per_epoch = math.ceil(images.shape[0] / batch_size)
    by_epochs = epochs * steps_per_epoch if epochs is not None else None
    limits = [v for v in (max_steps, by_epochs) if v is not None]
    planned = min(limits) if limits else None
    stop_reason = ("max_steps" if max_steps is not None and (by_epochs is None or max_steps <= by_epochs)
                   else "epochs" if by_epochs is not None else "time_budget")
    device = next((p.device for p in model.parameters()), images.device)

    with torch.random.fork_rng(devices=[]), _progress_bar(progress) as bar:
        torch.manual_seed(seed)
        steps, seconds, losses, stopped_by = _train_loop(
            model, images, labels, planned=planned, stop_reason=stop_reason, time_budget=time_budget,
            batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
            warmup_ratio=warmup_ratio, seed=seed, device=device, bar=bar)
        accuracy = None
        if eval_images is not None:
            accuracy = evaluate_image_classifier(model, eval_images, eval_labels, batch_size=max(256, batch_size))
    model.eval()
    tail = losses[-20:]
    return TrainResult(accuracy=accuracy, steps=steps, seconds=seconds, epochs_done=steps / steps_per_epoch,
                       stopped_by=stopped_by, examples_per_second=steps * batch_size / max(seconds, 1e-9),
                       final_loss=sum(tail) / max(len(tail), 1), losses=tuple(losses))


def _schedule(fraction: float, warmup_ratio: float) -> float:
    """Linear warm-up to 1 over `warmup_ratio` of training, then cosine decay to 0 at the end."""
    if fraction < warmup_ratio:
        return fraction / warmup_ratio
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (fraction - warmup_ratio) / (1.0 - warmup_ratio))))


def _train_loop(model: nn.Module, images: Tensor, labels: Tensor, *, planned: int | None, stop_reason: str,
                time_budget: float | None, batch_size: int, learning_rate: float, weight_decay: float,
                warmup_ratio: float, seed: int, device: torch.device, bar: Any) -> tuple[int, float, list[float], str]:
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in parameters if p.ndim >= 2], "weight_decay": weight_decay},
         {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0}],
        lr=learning_rate,
    )
    labels = labels.long()
    generator = torch.Generator().manual_seed(seed)
    total = planned if planned is not None else None
    task = bar.add_task("train", total=total, info="") if bar is not None else None
    losses: list[float] = []
    smoothed = None
    model.train()
    start = time.perf_counter()
    step, stopped_by = 0, None
    while stopped_by is None:
        order = torch.randperm(images.shape[0], generator=generator)
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            elapsed = time.perf_counter() - start
            fractions = [step / planned] if planned is not None else []
            if time_budget is not None:
                fractions.append(elapsed / time_budget)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * _schedule(min(max(fractions), 1.0), warmup_ratio)
            batch = images[rows].to(device)
            loss = nn.functional.cross_entropy(_logits_of(model(batch)), labels[rows].to(device))
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            value = float(loss.detach())
            losses.append(value)
            smoothed = value if smoothed is None else 0.95 * smoothed + 0.05 * value
            elapsed = time.perf_counter() - start
            if task is not None:
                info = f"loss {smoothed:.4f}  {step * batch_size / max(elapsed, 1e-9):,.0f} examples/s"
                if time_budget is not None:
                    info += f"  budget left {max(0.0, time_budget - elapsed):.0f} s"
                bar.update(task, completed=step, info=info)
            if planned is not None and step >= planned:
                stopped_by = stop_reason
                break
            if time_budget is not None and elapsed >= time_budget:
                stopped_by = "time_budget"
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return step, time.perf_counter() - start, losses, stopped_by


@torch.inference_mode()
def evaluate_image_classifier(model: nn.Module, images: Tensor, labels: Tensor, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` on `images` (eval mode, batched, on the model's device).

    Args:
        model: a module mapping `(B, 3, H, W)` to `(B, C)` logits or an output with ``.logits``.
        images: `(N, 3, H, W)` float images.
        labels: `(N,)` integer classes.
        batch_size: images per forward pass.

    Returns:
        The fraction of images whose arg-max logit is the label.

    Raises:
        ValueError: on mismatched shapes.
        TypeError: on a model that is not a module, non-floating images or non-integer labels.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
        ...     _ = model[1].bias.zero_()
        >>> images = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1)  # class 0, then class 1
        >>> evaluate_image_classifier(model, images, torch.tensor([0, 0]))
        0.5
    """
    _train_check(model, images, labels, None, None)
    batch_size = _check_integer(batch_size, "batch_size", low=1, description="a positive integer")
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), images.device)
    correct = 0
    for first in range(0, images.shape[0], batch_size):
        logits = _logits_of(model(images[first:first + batch_size].to(device)))
        correct += int((logits.argmax(dim=-1).cpu() == labels[first:first + batch_size].cpu()).sum())
    model.train(was_training)
    return correct / images.shape[0]


# ----------------------------------------------------------------------------------------------- tiny models


def tiny_vit_classifier(size: int = 32, patch: int = 4, classes: int = 10, *, layers: int = 4, hidden: int = 64,
                        heads: int = 4, mlp: int | None = None, seed: int = 0) -> nn.Module:
    """A tiny Hugging Face ``ViTForImageClassification`` with eager attention, seeded.

    Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" (ICLR): patch embedding, [CLS] token,
    learned positions, pre-norm Transformer encoder, linear head on [CLS].

    Args:
        size: image side in pixels.
        patch: patch side in pixels (a divisor of `size`).
        classes: output classes (labelled ``"0"``, ``"1"``, ...).
        layers: encoder layers.
        hidden: hidden size (a multiple of `heads`).
        heads: attention heads.
        mlp: MLP width; default ``2 * hidden``.
        seed: seed of the initial weights (the global RNG is forked, not changed).

    Returns:
        The model in eval mode, no dropout, ``config._attn_implementation == "eager"`` (attention
        weights available with ``output_attentions=True``).

    Raises:
        ValueError: on a `patch` that does not divide `size`, or a `hidden` not divisible by `heads`.

    Example:
        >>> model = tiny_vit_classifier(16, 4, 3, layers=1, hidden=8, heads=2)
        >>> model(torch.rand(2, 3, 16, 16)).logits.shape
        torch.Size([2, 3])
    """
    from transformers import ViTConfig, ViTForImageClassification  # noqa: PLC0415 - heavy import

    for name, value in (("size", size), ("patch", patch), ("classes", classes), ("layers", layers),
                        ("hidden", hidden), ("heads", heads)):
        _check_integer(value, name, low=1, description="a positive integer")
    if size % patch:
        raise ArgumentError(f"Expected `patch` to divide `size` = {size}, but got {patch}.", "patch")
    if hidden % heads:
        raise ArgumentError(f"Expected `hidden` to be a multiple of `heads` = {heads}, but got {hidden}.", "hidden")
    config = ViTConfig(image_size=size, patch_size=patch, num_channels=3, hidden_size=hidden,
                       num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=mlp or 2 * hidden,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=classes,
                       id2label={i: str(i) for i in range(classes)}, label2id={str(i): i for i in range(classes)},
                       attn_implementation="eager")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTForImageClassification(config)
    return model.eval()


def tiny_vim_classifier(size: int = 32, patch: int = 4, classes: int = 10, *, layers: int = 4, hidden: int = 64,
                        state: int = 8, conv: int = 4, seed: int = 0) -> nn.Module:
    """A tiny Vision Mamba (`attnlens.models.vim.VisionMamba`) with its class token in the middle, seeded.

    Zhu et al. 2024, "Vision Mamba: Efficient Visual Representation Learning with Bidirectional
    State Space Model" (ICML): patch embedding, middle class token, bidirectional Mamba blocks.

    Args:
        size: image side in pixels.
        patch: patch side in pixels (a divisor of `size`).
        classes: output classes.
        layers: Mamba blocks.
        hidden: model width.
        state: SSM state size per channel.
        conv: kernel of the causal depthwise convolution before each scan (``d_conv``; 4 in the official
            models). It mixes that many neighbouring tokens outside the hidden attention, so a map from
            hidden attention cannot see what it moves; 1 makes the scan the only token mixer.
        seed: seed of the initial weights (the global RNG is forked, not changed).

    Returns:
        The model in eval mode.

    Raises:
        ValueError: on a `patch` that does not divide `size`.

    Example:
        >>> model = tiny_vim_classifier(16, 4, 3, layers=1, hidden=8, state=2)
        >>> model(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3])
    """
    from attnlens.models.vim import VimConfig, VisionMamba  # noqa: PLC0415

    for name, value in (("size", size), ("patch", patch), ("classes", classes), ("layers", layers),
                        ("hidden", hidden), ("state", state), ("conv", conv)):
        _check_integer(value, name, low=1, description="a positive integer")
    if size % patch:
        raise ArgumentError(f"Expected `patch` to divide `size` = {size}, but got {patch}.", "patch")
    config = _vim_config(VimConfig, size=size, patch=patch, classes=classes, layers=layers, hidden=hidden,
                         state=state, conv=conv)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VisionMamba(config)
    return model.eval()


def _vim_config(config_class: Any, *, size: int, patch: int, classes: int, layers: int, hidden: int,
                state: int, conv: int) -> Any:
    """The `VimConfig` of a tiny middle-class-token Vim (names as the official constructor's)."""
    return config_class(img_size=size, patch_size=patch, stride=patch, channels=3, embed_dim=hidden, depth=layers,
                        d_state=state, d_conv=conv, num_classes=classes, use_middle_cls_token=True)


# ----------------------------------------------------------------------------------------------- placed digits


class PlacedDigitsModels(NamedTuple):
    """Folders of the tiny models trained by `train_placed_digits_models`, and how their training went."""

    vit: Path | None
    vim: Path | None
    vit_result: TrainResult | None
    vim_result: TrainResult | None


@dataclass(frozen=True)
class PlacedDigitsRecipe:
    """Data and training settings of the placed-digits models (see `train_placed_digits_models`).

    Measured on one CPU thread (2-core machine shared with other work): the ViT reaches about 0.97
    held-out accuracy in 600 steps (16–20 s), the Vim about 0.93–0.97 in 400 steps (35–60 s).

    The Vim has ``conv = 1`` (``d_conv``; official models: 4): with a kernel of 4, the causal convolution
    before each scan carries a digit's pixels into the next three tokens, which on a 4×4 grid are the
    neighbouring quadrant's patches, and the tiny model reads the digit there; hidden attention, which
    starts after the convolution, then points next to the digit (its rollout's top patch lands in the
    digit's quadrant for 2–25 % of held-out images, below the 25 % of chance, against 100 % with ``conv = 1``).
    """

    size: int = 16
    patch: int = 4
    train_examples: int = 12000
    eval_examples: int = 1000
    train_seed: int = 0
    eval_seed: int = 1
    batch_size: int = 64
    vit: dict = field(default_factory=lambda: {"layers": 2, "hidden": 64, "heads": 4, "learning_rate": 3e-3,
                                               "max_steps": 600})
    vim: dict = field(default_factory=lambda: {"layers": 2, "hidden": 64, "state": 8, "conv": 1,
                                               "learning_rate": 3e-3, "max_steps": 400})


def train_placed_digits_models(folder: str | os.PathLike, *, seed: int = 0, time_budget: float | None = None,
                               models: tuple[str, ...] = ("vit", "vim"), recipe: PlacedDigitsRecipe | None = None,
                               progress: bool = True) -> PlacedDigitsModels:
    """Train a tiny ViT and a tiny Vision Mamba on placed digits and save them as attnlens model folders.

    Task of the attnlens vision tests: a scikit-learn digit pasted into a random quadrant
    (`attnlens.datasets.placed_digits`), training digits from ``split="train"``, evaluation digits
    from ``split="test"``; localisation scores as Zhang et al. (ECCV 2016) and Chefer et al. (CVPR 2021).

    Writes ``folder/vit`` (``save_pretrained`` plus a ``preprocessor_config.json``: exact resize to
    the canvas, which is a no-op, rescale by 1/255, mean 0, std 1, so the model sees the pixels of
    `placed_digits`) and ``folder/vim`` (`attnlens.models.vim.save_vim_folder`), each with an
    ``attnlens_training.json`` record (settings, steps, seconds, held-out accuracy). Load them with
    ``load_adapter(str(folder / "vit"))`` and ``load_adapter(f"vim={folder / 'vim'}")``. Each model
    folder is written atomically.

    Args:
        folder: the parent folder of the model folders (created if missing).
        seed: seed of the initial weights and the batch order (the data seeds are in the recipe).
        time_budget: seconds of training per model at most (on top of the recipe's `max_steps`).
        models: which to train, of ``"vit"`` and ``"vim"``.
        recipe: data and training settings; default `PlacedDigitsRecipe()`.
        progress: show progress bars and a line per model on stderr.

    Returns:
        `PlacedDigitsModels`: the two folders and `TrainResult` of each (None for one not trained).

    Raises:
        ValueError: on an unknown model name, a folder that cannot be created or a bad budget.

    Example:
        About a minute on one CPU thread:

        >>> result = train_placed_digits_models("/tmp/placed-digit-models", progress=False)  # doctest: +SKIP
        >>> round(result.vit_result.accuracy, 3), round(result.vim_result.accuracy, 3)  # doctest: +SKIP
        (0.972, 0.928)
    """
    from attnlens.datasets.placed_digits import placed_digits  # noqa: PLC0415

    recipe = recipe or PlacedDigitsRecipe()
    unknown = [m for m in models if m not in ("vit", "vim")]
    if unknown or not models:
        raise ArgumentError(f"Expected `models` to name some of 'vit', 'vim', but got {tuple(models)!r}.", "models")
    _check_creatable_folder(folder, "folder")
    if time_budget is not None:
        time_budget = _check_number(time_budget, "time_budget", low=0, low_inclusive=False)
    root = Path(folder).expanduser()
    train = placed_digits(recipe.train_examples, recipe.size, recipe.train_seed, split="train")
    held_out = placed_digits(recipe.eval_examples, recipe.size, recipe.eval_seed, split="test")
    folders: dict[str, Path | None] = {"vit": None, "vim": None}
    results: dict[str, TrainResult | None] = {"vit": None, "vim": None}
    for name in models:
        settings = dict(getattr(recipe, name))
        learning_rate, max_steps = settings.pop("learning_rate"), settings.pop("max_steps")
        factory = tiny_vit_classifier if name == "vit" else tiny_vim_classifier
        model = factory(recipe.size, recipe.patch, 10, seed=seed, **settings)
        result = train_image_classifier(model, train.images, train.labels, max_steps=max_steps,
                                        time_budget=time_budget, batch_size=recipe.batch_size,
                                        learning_rate=learning_rate, seed=seed, progress=progress,
                                        eval_images=held_out.images, eval_labels=held_out.labels)
        record = {"model": name, **{k: v for k, v in asdict(result).items() if k != "losses"},
                  "recipe": asdict(recipe), "seed": seed, "time_budget": time_budget,
                  "task": "placed_digits (quadrant), eval on split='test'",
                  "versions": {"torch": torch.__version__}}
        saver = _save_vit if name == "vit" else _save_vim
        target = root / (VIT_FOLDER if name == "vit" else VIM_FOLDER)
        _write_folder_atomically(target, lambda staging, m=model, r=record, s=saver: _save_with_record(s, m, r,
                                                                                                       staging),
                                 replace=True, name="folder")
        if progress:
            print(f"{name}: held-out accuracy {result.accuracy:.3f} after {result.steps} steps in "
                  f"{result.seconds:.1f} s; saved to {target}", file=sys.stderr)
        folders[name], results[name] = target, result
    return PlacedDigitsModels(vit=folders["vit"], vim=folders["vim"], vit_result=results["vit"],
                              vim_result=results["vim"])


def _save_with_record(saver: Any, model: nn.Module, record: dict, folder: Path) -> None:
    saver(model, folder)
    (folder / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _save_vit(model: nn.Module, folder: Path) -> None:
    """``save_pretrained`` plus a ``preprocessor_config.json`` (a ``ViTImageProcessor``'s keys) that gives the
    model the pixels of `placed_digits`: exact resize to its size (a no-op on the canvas), 1/255, mean 0, std 1."""
    from attnlens.models._loading import quiet_transformers  # noqa: PLC0415

    size = model.config.image_size
    processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": size, "width": size},
                 "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                 "image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0]}
    with quiet_transformers():
        model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n", encoding="utf-8")


def _save_vim(model: nn.Module, folder: Path) -> None:
    """`save_vim_folder` with digit labels and the identity preprocessing (exact resize to the canvas, mean 0,
    std 1) that `VimAdapter` reads back (its default would be ImageNet's mean and std)."""
    from attnlens.datasets.images import ImagePreprocessing  # noqa: PLC0415
    from attnlens.models.vim import save_vim_folder  # noqa: PLC0415

    side = model.config.img_size
    preprocessing = ImagePreprocessing(size=(side, side), resize_to=(side, side), mean=(0.0, 0.0, 0.0),
                                       std=(1.0, 1.0, 1.0), resample="bilinear")
    save_vim_folder(model, folder, labels=[str(i) for i in range(model.config.num_classes)],
                    preprocessing=preprocessing)


def main(argv: list[str] | None = None) -> int:
    """``python -m attnlens.training.vision --out DIR``: train and save the placed-digits ViT and Vim."""
    parser = argparse.ArgumentParser(prog="python -m attnlens.training.vision",
                                     description="Train the tiny ViT and Vision Mamba on placed digits and save them.")
    parser.add_argument("--out", required=True, metavar="DIR", help="parent folder of the vit/ and vim/ model folders")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="stop each model's training after this many seconds")
    parser.add_argument("--models", default="vit,vim", help="comma-separated: vit, vim")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        train_placed_digits_models(args.out, seed=args.seed, time_budget=args.time_budget,
                                   models=tuple(m.strip() for m in args.models.split(",") if m.strip()))
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
