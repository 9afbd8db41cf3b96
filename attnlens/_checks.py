"""Input checks shared by every public entry point.

Each helper raises ``ValueError`` for a wrong shape or value and ``TypeError`` for a wrong
dtype, with a one-line message of the form
"Expected `name` to be ..., but got ...". Errors about a named argument are
:class:`ArgumentError` / :class:`ArgumentTypeError` (subclasses of ``ValueError`` / ``TypeError``)
that remember the argument, so the command line can name the option a user typed
(``--batch-size``) instead of the library's name (``batch_size``) without rewriting messages.
Nothing here but those two classes is part of the public API.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor


class ArgumentError(ValueError):
    """A bad value of one named argument; the message names it in backticks.

    Args:
        message: the one-line message, naming the argument as `` `argument` ``.
        argument: the library's name of the argument (a config field or a function parameter).

    Example:
        >>> err = ArgumentError("Expected `batch_size` to be a positive integer, but got 0.", "batch_size")
        >>> err.render("--batch-size")
        'Expected `--batch-size` to be a positive integer, but got 0.'
    """

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.argument = argument

    def render(self, spelled: str) -> str:
        """The message with the argument spelled as `spelled` (for example the command-line option)."""
        return str(self).replace(f"`{self.argument}`", f"`{spelled}`")


class ArgumentTypeError(TypeError):
    """A value of the wrong type for one named argument (see :class:`ArgumentError`)."""

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.argument = argument

    render = ArgumentError.render


def _check_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ArgumentTypeError(f"Expected `{name}` to be a torch.Tensor, but got {type(x).__name__}.", name)
    return x


def _check_floating(x: Tensor, name: str) -> None:
    _check_tensor(x, name)
    if not x.is_floating_point():
        raise ArgumentTypeError(f"Expected `{name}` to have a floating dtype, but got {x.dtype}.", name)


def _check_ndim(x: Tensor, name: str, ndims: Sequence[int], layout: str) -> None:
    if x.ndim not in ndims:
        raise ArgumentError(f"Expected `{name}` to have shape {layout}, but got {tuple(x.shape)}.", name)


def _check_attention(attn: Tensor, name: str = "attn", ndims: Sequence[int] = (4, 5)) -> None:
    """Check a stack of square attention matrices `(B, L, n, n)` or `(B, L, H, n, n)`."""
    _check_floating(attn, name)
    layouts = {3: "(B, n, n)", 4: "(B, L, n, n)", 5: "(B, L, H, n, n)"}
    layout = " or ".join(layouts[d] for d in ndims)
    _check_ndim(attn, name, ndims, layout)
    if attn.shape[-1] != attn.shape[-2]:
        raise ArgumentError(
            f"Expected `{name}` to hold square matrices (last two sizes equal), but got shape {tuple(attn.shape)}.", name
        )
    if attn.shape[-1] == 0:
        raise ArgumentError(f"Expected `{name}` to have at least one token, but got shape {tuple(attn.shape)}.", name)
    if attn.shape[0] == 0:
        raise ArgumentError(f"Expected `{name}` to hold at least one example, but got shape {tuple(attn.shape)}.", name)
    if attn.ndim >= 4 and attn.shape[1] == 0:
        raise ArgumentError(f"Expected `{name}` to hold at least one layer, but got shape {tuple(attn.shape)}.", name)


def _check_finite(x: Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ArgumentError(f"Expected `{name}` to hold only finite values, but it has NaN or infinite entries.", name)


def _check_mask(mask: Tensor | None, name: str, batch: int, n: int, device: torch.device) -> Tensor:
    """Return a boolean `(B, n)` mask; `None` means every token is valid."""
    if mask is None:
        return torch.ones(batch, n, dtype=torch.bool, device=device)
    _check_tensor(mask, name)
    if tuple(mask.shape) != (batch, n):
        raise ArgumentError(f"Expected `{name}` to have shape (B, n) = ({batch}, {n}), but got {tuple(mask.shape)}.", name)
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or mask.is_complex():
            raise ArgumentTypeError(f"Expected `{name}` to be a bool or integer tensor, but got {mask.dtype}.", name)
        mask = mask != 0
    if not bool(mask.any(dim=-1).all()):
        raise ArgumentError(f"Expected `{name}` to mark at least one valid token per example, but some rows are empty.", name)
    return mask.to(device)


def _check_device(device: object, name: str = "device") -> torch.device:
    """Parse a device option and check it exists here ('cpu', 'cuda', 'cuda:N')."""
    try:
        parsed = torch.device(device)  # type: ignore[arg-type]
    except (RuntimeError, TypeError) as err:
        raise ArgumentError(f"Expected `{name}` to be 'cpu', 'cuda' or 'cuda:N', but got {device!r}.", name) from err
    if parsed.type not in ("cpu", "cuda"):
        raise ArgumentError(f"Expected `{name}` to be 'cpu', 'cuda' or 'cuda:N', but got {str(parsed)!r}.", name)
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(f"Expected `{name}` {str(parsed)!r} to be available, but torch finds no CUDA device.", name)
    return parsed


def _check_integer(value: object, name: str, *, low: int | None = None, high: int | None = None,
                   allow_none: bool = False, description: str | None = None) -> int | None:
    """Check an integer option (bool rejected; numpy integers accepted) and its closed range.

    Args:
        value: the value to check.
        name: the argument named in messages.
        low: smallest allowed value, or None.
        high: largest allowed value, or None.
        allow_none: accept None (an unset option) and return it.
        description: how messages describe what was expected (for example "a positive integer");
            default "an integer in [low, high]".

    Example:
        >>> _check_integer(0, "limit", low=1, description="a positive integer")
        Traceback (most recent call last):
        ...
        attnlens._checks.ArgumentError: Expected `limit` to be a positive integer, but got 0.
    """
    import operator  # noqa: PLC0415

    if value is None and allow_none:
        return None
    left = "-inf" if low is None else str(low)
    right = "inf" if high is None else str(high)
    expected = description or f"an integer in [{left}, {right}]"
    if isinstance(value, bool):
        raise ArgumentTypeError(f"Expected `{name}` to be {description or 'an integer'}, but got bool.", name)
    try:
        number = operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"Expected `{name}` to be {description or 'an integer'}, but got "
                                f"{type(value).__name__}.", name) from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise ArgumentError(f"Expected `{name}` to be {expected}, but got {number}.", name)
    return number


def _nearest_existing(path: Path) -> Path:
    """`path` itself when it exists, else its closest existing ancestor."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _is_writable_folder(folder: Path) -> bool:
    """Whether files can be created in `folder`; tried for real, since `os.access` says yes to root everywhere."""
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".attnlens-probe-", dir=folder))
    except OSError:
        return False
    return True


def _check_creatable_folder(path: object, name: str) -> None:
    """Check that folder `path` exists or can be made: its nearest existing ancestor is a writable folder."""
    if path is None or str(path).strip() == "":
        raise ArgumentError(f"Expected `{name}` to be a folder path, but got an empty string.", name)
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise ArgumentError(f"Expected `{name}` to be a folder, but {target} is a file.", name)
    ancestor = _nearest_existing(target)
    if not _is_writable_folder(ancestor):
        raise ArgumentError(f"Expected `{name}` to be a folder that can be created, but {ancestor} is not a "
                            f"writable folder.", name)


def _check_same_shape(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"Expected `{names[0]}` and `{names[1]}` to have the same shape, but got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )


def _check_choice(value: object, name: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ArgumentError(f"Expected `{name}` to be one of {options}, but got {value!r}.", name)


def _check_number(value: object, name: str, *, low: float | None = None, high: float | None = None,
                  low_inclusive: bool = True, high_inclusive: bool = True, allow_inf: bool = False) -> float:
    """Check a real scalar option and the interval it must lie in; return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"Expected `{name}` to be a number, but got {type(value).__name__}.", name)
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ArgumentError(f"Expected `{name}` to be a finite number, but got {value}.", name)
    lo_ok = low is None or (value >= low if low_inclusive else value > low)
    hi_ok = high is None or (value <= high if high_inclusive else value < high)
    if not (lo_ok and hi_ok):
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        bracket = ("[" if low_inclusive else "(") + f"{left}, {right}" + ("]" if high_inclusive else ")")
        raise ArgumentError(f"Expected `{name}` to lie in {bracket}, but got {value:g}.", name)
    return value


def _check_row_stochastic(attn: Tensor, mask: Tensor, name: str = "attn", atol: float = 1e-3) -> None:
    """Check non-negative entries and rows summing to 1 over valid keys, for valid query rows.

    Args:
        attn: `(B, ..., n, n)` attention.
        mask: `(B, n)` boolean valid-token mask.
    """
    pair = (mask[:, :, None] & mask[:, None, :]).view(mask.shape[0], *([1] * (attn.ndim - 3)), *mask.shape[1:],
                                                      mask.shape[1])
    attn = torch.where(pair, attn, torch.zeros((), dtype=attn.dtype, device=attn.device))  # padding may hold anything
    _check_finite(attn, name)
    if bool((attn < -atol).any()):
        raise ArgumentError(f"Expected `{name}` to be non-negative, but got a minimum of {attn.min().item():.3g}.", name)
    extra = attn.ndim - 3
    key_mask = mask.view(mask.shape[0], *([1] * extra), 1, mask.shape[1])
    row_valid = mask.view(mask.shape[0], *([1] * extra), mask.shape[1])
    sums = (attn * key_mask).sum(dim=-1)
    err = ((sums - 1).abs() * row_valid).amax()
    if bool(err > atol):
        raise ValueError(
            f"Expected the rows of `{name}` to sum to 1 over valid keys, but a row is off by {err.item():.3g}."
        )
