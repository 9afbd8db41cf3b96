"""The one converter of `target` and `labels` options into `(B,)` long tensors, for every adapter.

A target is ``"pred"`` or None (the model's prediction), ``"gold"`` (the labels), a class index
(int or numpy integer), a list or tuple of indices, an integer tensor or array, or a class name
(a label such as ``"positive"``; a single-token string for a language model, whose vocabulary is
its class set), converted by the adapter's ``class_index``. Classifiers speak of "class indices",
language models of "token ids"; the messages say which.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

UNITS = ("class", "token")


class ExplainError(ValueError):
    """A model or input that attnlens cannot explain (one-line message)."""


def class_from_name(name: object, names: list[str]) -> int:
    """The index of a class given by name: an exact label, else a label matching without case (when only one
    does), else a string of digits below the class count.

    Raises:
        TypeError: on a `name` that is not a string.
        ExplainError: on an unknown name, listing the valid ones (the first 20 of a large label set).

    Example:
        >>> class_from_name("Positive", ["negative", "positive"]), class_from_name("0", ["negative", "positive"])
        (1, 0)
    """
    if not isinstance(name, str):
        raise TypeError(f"Expected `name` to be a class name (str), but got {type(name).__name__}.")
    folded = [label.casefold() for label in names]
    if name in names:
        return names.index(name)
    if folded.count(name.casefold()) == 1:
        return folded.index(name.casefold())
    if name.strip().isdigit() and int(name) < len(names):
        return int(name)
    shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
    raise ExplainError(f"Expected `target` to be 'pred', 'gold', a class index or one of the class names {shown}, "
                       f"but got {name!r}.")


def _expected(unit: str) -> str:
    if unit == "class":
        return "class indices (int or list of ints)"
    return "a token id (int), a list or tuple of ids, or an integer tensor"


def _type_error(value: object, name: str, unit: str, item: object = None) -> TypeError:
    if unit == "class":
        return TypeError(f"Expected `{name}` to be {_expected(unit)}, but got {value!r}.")
    if item is not None:
        return TypeError(f"Expected `{name}` to be {_expected(unit)}, but got {value!r} (holding a "
                         f"{type(item).__name__}).")
    return TypeError(f"Expected `{name}` to be {_expected(unit)}, but got {type(value).__name__} {value!r}.")


def as_indices(value: object, name: str, *, unit: str = "class") -> Tensor:
    """Integer indices as a flat CPU long tensor; floats, bools and strings are refused.

    Args:
        value: an int (numpy integers too), a list or tuple of ints, an integer tensor or array.
        name: the argument named in messages (``"target"``, ``"labels"``).
        unit: ``"class"`` or ``"token"``, the wording of the messages.

    Returns:
        `(k,)` long tensor on the CPU.

    Raises:
        TypeError: for anything that is not integer indices.

    Example:
        >>> as_indices([1, 0], "labels")
        tensor([1, 0])
    """
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            if unit == "class":
                raise TypeError(f"Expected `{name}` to be an integer tensor of class indices, but got {value.dtype}.")
            raise TypeError(f"Expected `{name}` to be {_expected(unit)}, but got a tensor of dtype {value.dtype}.")
        return value.detach().to("cpu", torch.long).reshape(-1)
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise _type_error(value, name, unit, item)
        return torch.tensor([int(item) for item in value], dtype=torch.long)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return torch.tensor([int(value)], dtype=torch.long)
    raise _type_error(value, name, unit)


def label_indices(labels: object, batch: int, *, unit: str = "class") -> Tensor | None:
    """Gold labels as a `(batch,)` CPU long tensor, or None when not given.

    Raises:
        TypeError: for labels that are not integer indices.
        ExplainError: when their number is not `batch`.
    """
    if labels is None:
        return None
    gold = as_indices(labels, "labels", unit=unit)
    if gold.shape[0] != batch:
        raise ExplainError(f"Expected `labels` to have {batch} entries, but got {gold.shape[0]}.")
    return gold


def target_indices(target: object, *, batch: int, classes: int, labels: Tensor | None = None,
                   lookup: Callable[[str], int] | None = None, unit: str = "class") -> Tensor | None:
    """Explicit target indices `(batch,)` on the CPU, checked against `classes`; None for the prediction.

    Args:
        target: see the module docstring.
        batch: the number of examples B.
        classes: the number of classes C (vocabulary size for a language model).
        labels: `(B,)` gold labels (from :func:`label_indices`), needed for ``"gold"``.
        lookup: converts a class name to its index (the adapter's ``class_index``).
        unit: ``"class"`` or ``"token"``, the wording of the messages.

    Returns:
        `(B,)` long CPU tensor, or None when the target is the prediction (``"pred"`` or None).

    Raises:
        TypeError: on floats, bools or other non-integer targets.
        ExplainError: on ``"gold"`` without labels, a wrong number of targets, an index out of
            range or an unknown class name.

    Example:
        >>> target_indices(1, batch=2, classes=3)
        tensor([1, 1])
        >>> target_indices("pred", batch=2, classes=3) is None
        True
    """
    if target is None or (isinstance(target, str) and target == "pred"):
        return None
    if isinstance(target, str) and target == "gold":
        if labels is None:
            raise ExplainError("Expected `labels` when `target` is 'gold', but got none.")
        chosen = labels
    elif isinstance(target, str):
        if lookup is None:
            raise ExplainError(f"Expected `target` to be 'pred', 'gold' or {_expected(unit)}, but got {target!r}.")
        chosen = torch.tensor([lookup(target)], dtype=torch.long)
    else:
        chosen = as_indices(target, "target", unit=unit)
    if chosen.numel() == 1:
        chosen = chosen.expand(batch)
    out_of_range = (chosen < 0) | (chosen >= classes)
    if unit == "class":
        if chosen.shape[0] != batch or bool(out_of_range.any()):
            raise ExplainError(f"Expected `target` to hold {batch} class indices in [0, {classes - 1}], but got "
                               f"{chosen.tolist()}.")
    elif chosen.shape != (batch,):
        raise ExplainError(f"Expected `target` to hold one token id per text ({batch}), but got "
                           f"{tuple(chosen.shape)}.")
    elif bool(out_of_range.any()):
        raise ExplainError(f"Expected `target` to hold token ids in [0, {classes}), but got "
                           f"{int(chosen[out_of_range][0])}.")
    return chosen.contiguous()


def resolve_target(target: object, *, logits: Tensor, labels: Tensor | None = None,
                   lookup: Callable[[str], int] | None = None, unit: str = "class") -> Tensor:
    """The explained class per example: the argmax of `logits`, or the checked explicit target.

    Args:
        target: see the module docstring.
        logits: `(B, C)` model outputs.
        labels: `(B,)` gold labels, needed for ``"gold"``.
        lookup: converts a class name to its index.
        unit: ``"class"`` or ``"token"``.

    Returns:
        `(B,)` long tensor on `logits`' device.

    Raises:
        TypeError: see :func:`target_indices`.
        ExplainError: see :func:`target_indices`.

    Example:
        >>> resolve_target("pred", logits=torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
        tensor([1, 0])
    """
    batch, classes = logits.shape
    chosen = target_indices(target, batch=batch, classes=classes, labels=labels, lookup=lookup, unit=unit)
    if chosen is None:
        return logits.argmax(dim=-1)
    return chosen.to(logits.device, non_blocking=True)
