"""Removing or masking tokens for `Adapter.perturb`, shared by every token-based adapter."""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import _check_choice, _check_tensor
from attnlens.models._targets import ExplainError

PERTURB_MODES = ("remove", "mask")


def check_keep_mask(keep_mask: object, mask: Tensor) -> Tensor:
    """`keep_mask` as a CPU bool tensor of `mask`'s shape, False on padding (which is never kept).

    Args:
        keep_mask: `(B, n)` bool, True on the tokens to keep; its values on padding are ignored.
        mask: `(B, n)` bool valid-token mask of the trace.

    Raises:
        TypeError: when `keep_mask` is not a bool tensor.
        ExplainError: when its shape is not `mask`'s.

    Example:
        >>> check_keep_mask(torch.tensor([[True, False, True]]), torch.tensor([[True, True, False]]))
        tensor([[ True, False, False]])
    """
    _check_tensor(keep_mask, "keep_mask")
    if tuple(keep_mask.shape) != tuple(mask.shape):
        raise ExplainError(f"Expected `keep_mask` to have shape (B, n) = {tuple(mask.shape)}, but got "
                           f"{tuple(keep_mask.shape)}.")
    if keep_mask.dtype != torch.bool:
        raise TypeError(f"Expected `keep_mask` to be a bool tensor, but got {keep_mask.dtype}.")
    return keep_mask.detach().cpu() & mask.cpu()


def replacement_token_id(tokenizer: object) -> int:
    """The token that stands in for a masked token: the tokenizer's mask token, else its unknown token.

    Raises:
        ExplainError: when the tokenizer has neither.
    """
    for attribute in ("mask_token_id", "unk_token_id"):
        token = getattr(tokenizer, attribute, None)
        if token is not None:
            return int(token)
    raise ExplainError("Expected the tokenizer to have a mask or unknown token for `mode` 'mask', but it has "
                       "neither; use mode='remove'.")


def perturbed_ids(input_ids: Tensor, mask: Tensor, keep_mask: object, *, mode: str,
                  tokenizer: object) -> tuple[Tensor, Tensor]:
    """Apply a perturbation to token ids: the new ids and the positions that stay in the input.

    Args:
        input_ids: `(B, n)` long token ids (CPU).
        mask: `(B, n)` bool valid-token mask.
        keep_mask: `(B, n)` bool, False on the tokens to remove or mask.
        mode: ``"remove"`` (drop them) or ``"mask"`` (replace them by the mask/unknown token).
        tokenizer: the model's tokenizer.

    Returns:
        `(B, n)` ids and `(B, n)` bool positions to keep; gather them per row and re-pad.

    Raises:
        ExplainError: on an unknown mode, a badly shaped `keep_mask`, an example left without
            tokens by ``"remove"``, or ``"mask"`` with a tokenizer lacking mask and unknown tokens.
    """
    _check_choice(mode, "mode", PERTURB_MODES)
    mask = mask.cpu()
    keep = check_keep_mask(keep_mask, mask)
    if mode == "mask":
        return torch.where(mask & ~keep, replacement_token_id(tokenizer), input_ids.cpu()), mask
    empty = (~keep.any(dim=-1)).nonzero().flatten().tolist()
    if empty:
        raise ExplainError(f"Expected `keep_mask` to keep at least one token of every example with `mode` 'remove', "
                           f"but example {empty[0]} keeps none.")
    return input_ids.cpu(), keep


def gather_rows(values: Tensor, keep: Tensor) -> list[list[int]]:
    """Per row, the values at the kept positions, as Python lists (for re-padding)."""
    return [row[kept].tolist() for row, kept in zip(values.cpu(), keep)]


def distinct_rows(rows: dict[str, list[list[int]]]) -> tuple[dict[str, list[list[int]]], list[int]]:
    """The distinct model inputs among `rows`, shortest first, and where each original row went.

    Perturbed copies of one batch repeat each other (several explanations rank the same tokens
    first; a bin can keep or remove the same set as another), and identical inputs give identical
    outputs, so each distinct input needs one forward. Sorting by length keeps the padding of the
    later batches small.

    Args:
        rows: per model input name (``input_ids``, ``token_type_ids``, ...) B rows of ints.

    Returns:
        The U distinct rows (same keys, sorted by length, ties in first-seen order) and, for each
        of the B original rows, its index among them.

    Example:
        >>> distinct_rows({"input_ids": [[1, 2, 3], [4], [1, 2, 3]]})
        ({'input_ids': [[4], [1, 2, 3]]}, [1, 0, 1])
    """
    keys = list(rows)
    first: dict[tuple, int] = {}
    slots = []
    for b in range(len(rows[keys[0]])):
        key = tuple(tuple(rows[name][b]) for name in keys)
        slots.append(first.setdefault(key, len(first)))
    uniques = list(first)
    order = sorted(range(len(uniques)), key=lambda u: (len(uniques[u][0]), u))
    position = {u: i for i, u in enumerate(order)}
    distinct = {name: [list(uniques[u][k]) for u in order] for k, name in enumerate(keys)}
    return distinct, [position[slot] for slot in slots]


def chunked_by_length(rows: dict[str, list[list[int]]], max_tokens: int = 8192, max_padding: float = 0.1,
                      ) -> list[slice]:
    """Consecutive slices of length-sorted `rows`, each padded to its longest row within budget.

    A slice ends before the row that would make its padded size (rows × longest row) exceed
    `max_tokens`, or its padding (padded size − tokens) exceed `max_padding` of the padded size.

    Args:
        rows: rows sorted by length (as :func:`distinct_rows` returns them).
        max_tokens: the largest rows × longest-row product of one slice (at least one row each).
        max_padding: the largest share of padding positions in a slice.

    Example:
        >>> chunked_by_length({"input_ids": [[0] * n for n in (2, 2, 3, 8, 8)]})
        [slice(0, 2, None), slice(2, 3, None), slice(3, 5, None)]
    """
    lengths = [len(row) for row in next(iter(rows.values()))]
    slices, start, tokens = [], 0, 0
    for stop, length in enumerate(lengths):
        padded = (stop + 1 - start) * length
        if stop > start and (padded > max_tokens or padded - (tokens + length) > max_padding * padded):
            slices.append(slice(start, stop))
            start, tokens = stop, 0
        tokens += length
    if lengths:
        slices.append(slice(start, len(lengths)))
    return slices
