"""Context managers that set model flags and restore them, whatever happens inside."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Turn off `requires_grad` on every parameter (input gradients only), restoring it on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put `model` in eval mode (no dropout), restoring its training flag on exit."""
    was_training = model.training
    try:
        model.eval()
        yield
    finally:
        model.train(was_training)
