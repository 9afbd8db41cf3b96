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


@contextmanager
def input_embedding_leaf(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Make the output of the model's input-embedding module a leaf that requires gradients.

    A forward hook replaces the embedding output by a detached copy with `requires_grad`, so the
    model still gets `input_ids` (and pools and positions by them) while the gradient of any
    output with respect to the word embeddings can be taken. The hook is removed on exit.

    Yields:
        The list the leaves are appended to, one per forward pass.
    """
    leaves: list[torch.Tensor] = []

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf

    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        yield leaves
    finally:
        handle.remove()
