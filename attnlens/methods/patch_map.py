"""Per-token relevance of an image model as a patch map, and that map upsampled to the image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlens._checks import ArgumentError, ArgumentTypeError, _check_floating


def patch_map(scores: Tensor, patch_positions: Tensor, grid: tuple[int, int]) -> Tensor:
    """Arrange per-token scores of an image model on its patch grid, leaving out class tokens.

    The readout row of joint attention (Abnar & Zuidema 2020; Chefer et al., CVPR 2021 read
    the class token's row) becomes an image: patch ``r * columns + c`` sits at token
    ``patch_positions[r * columns + c]`` (``Trace.patch_positions``), wherever the class token is.

    Args:
        scores: `(B, n)` or per-layer `(B, L, n)` relevance per token.
        patch_positions: `(rows * columns,)` integer token positions of the patches, row-major.
        grid: `(rows, columns)` of the patch grid (``Trace.grid``).

    Returns:
        `(B, rows, columns)` or `(B, L, rows, columns)` patch maps, same dtype and device as `scores`.

    Raises:
        ValueError: on a grid that does not match `patch_positions`, or positions outside [0, n).
        TypeError: on non-floating `scores` or non-integer `patch_positions`.

    Example:
        >>> import torch
        >>> patch_map(torch.tensor([[9.0, 1.0, 2.0, 3.0, 4.0]]), torch.tensor([1, 2, 3, 4]), (2, 2))
        tensor([[[1., 2.],
                 [3., 4.]]])
    """
    _check_floating(scores, "scores")
    if scores.ndim not in (2, 3):
        raise ArgumentError(f"Expected `scores` to have shape (B, n) or (B, L, n), but got {tuple(scores.shape)}.",
                            "scores")
    if not isinstance(patch_positions, Tensor) or patch_positions.is_floating_point() or \
            patch_positions.dtype == torch.bool:
        raise ArgumentTypeError(f"Expected `patch_positions` to be an integer tensor, but got "
                                f"{getattr(patch_positions, 'dtype', type(patch_positions).__name__)}.",
                                "patch_positions")
    rows, columns = _check_grid(grid)
    n = scores.shape[-1]
    if tuple(patch_positions.shape) != (rows * columns,):
        raise ArgumentError(f"Expected `patch_positions` to hold rows * columns = {rows * columns} positions for "
                            f"`grid` {(rows, columns)}, but got shape {tuple(patch_positions.shape)}.",
                            "patch_positions")
    if bool(((patch_positions < 0) | (patch_positions >= n)).any()):
        raise ArgumentError(f"Expected `patch_positions` to lie in [0, {n - 1}], but got values from "
                            f"{int(patch_positions.min())} to {int(patch_positions.max())}.", "patch_positions")
    picked = scores.index_select(-1, patch_positions.to(scores.device))
    return picked.reshape(*scores.shape[:-1], rows, columns)


def upsample_patch_map(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of patch maps to the image size (as Chefer et al., CVPR 2021, do before
    evaluating a map against pixels).

    Args:
        maps: `(B, rows, columns)` patch maps.
        size: `(H, W)` of the image.

    Returns:
        `(B, H, W)` maps (``align_corners=False``), same dtype and device.

    Raises:
        ValueError: on a wrong shape or size.

    Example:
        >>> import torch
        >>> upsample_patch_map(torch.ones(1, 2, 2), (4, 4)).shape
        torch.Size([1, 4, 4])
    """
    _check_floating(maps, "maps")
    if maps.ndim != 3:
        raise ArgumentError(f"Expected `maps` to have shape (B, rows, columns), but got {tuple(maps.shape)}.", "maps")
    height, width = _check_grid(size, "size")
    return F.interpolate(maps[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]


def _check_grid(grid: object, name: str = "grid") -> tuple[int, int]:
    valid = isinstance(grid, (tuple, list)) and len(grid) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in grid)
    if not valid:
        raise ArgumentError(f"Expected `{name}` to be two positive integers (rows, columns), but got {grid!r}.", name)
    return int(grid[0]), int(grid[1])
