"""Attention Flow: the max flow through the layered attention graph."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout

import numpy as np
import torch
from torch import Tensor

from attnlens._checks import _check_finite, _check_mask
from attnlens.methods._common import _apply_mask, _fuse_if_per_head, _normalize_rows, _residual_attention
from attnlens.methods._maxflow import _layered_max_flows


def _attention_flow_check(attn: Tensor, layer: int | None, progress: object, workers: object) -> tuple[int, list[int]]:
    """Validate the options; return the number of layers and the 0-based layers to compute."""
    layers = attn.shape[1]
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"Expected `workers` to be None or a positive integer, but got {workers!r}.")
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or not -layers <= layer < layers):
        raise ValueError(f"Expected `layer` to be None or an integer in [{-layers}, {layers - 1}], but got {layer!r}.")
    if progress is not None and not callable(progress):
        raise TypeError(f"Expected `progress` to be None or a callable, but got {type(progress).__name__}.")
    if bool((attn < 0).any()):
        raise ValueError(f"Expected `attn` to be non-negative, but got a minimum of {attn.min().item():.3g}.")
    wanted = list(range(layers)) if layer is None else [layer % layers]
    return layers, wanted


# seconds per (example, top layer) solve ≈ _SECONDS_PER_N4 · n⁴ · (layers below it), measured with one
# thread on the development VM (1.1–2.0e-8 for n = 32…128, L = 6); a rough guide, not a promise
_SECONDS_PER_N4 = 1.5e-8


def estimate_flow_seconds(lengths: list[int], layers: int, *, every_layer: bool = True) -> float:
    """Rough single-thread time of :func:`attention_flow` for examples of `lengths` valid tokens.

    The exact max flows cost about ``c · n⁴`` per layer below the source layer (c ≈ 1.5e-8 s on
    the development VM); with every layer as a source the layers sum to ``L (L + 1) / 2``.

    Args:
        lengths: valid tokens per example.
        layers: L.
        every_layer: sources at every layer (the study) or at the last one only.

    Returns:
        Estimated seconds.

    Example:
        >>> round(estimate_flow_seconds([100], 12, every_layer=False))
        18
    """
    depth = layers * (layers + 1) / 2 if every_layer else layers
    return float(sum(_SECONDS_PER_N4 * depth * n ** 4 for n in lengths))


def _result_interruptibly(future, poll: float = 0.2):
    """The future's result, waiting in short slices so a KeyboardInterrupt is seen promptly."""
    while True:
        try:
            return future.result(timeout=poll)
        except FuturesTimeout:
            continue


def attention_flow(
    attn: Tensor,
    *,
    mask: Tensor | None = None,
    layer: int | None = -1,
    residual: bool = True,
    head_fusion: str = "mean",
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> Tensor:
    """Max flow from each output position of a layer to each input token, rows normalised to sum to 1.

    Attention Flow (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", Sec. 3).
    Node ``(l, j)`` has an arc to ``(l - 1, k)`` of capacity ``Â_l[j, k]``, ``Â = norm_rows(A + I)``
    on valid tokens; entry ``[i, j]`` is the max flow from ``(layer, i)`` to input ``(0, j)``,
    divided by the row's sum over input tokens. The flows are exact (float64 push-relabel, no
    integer scaling) and computed on the CPU: the result is moved back to the input's device and
    dtype and carries no gradient.

    Args:
        attn: `(B, L, H, n, n)` or head-fused `(B, L, n, n)` non-negative attention.
        mask: `(B, n)` valid-token mask; None means every token is valid.
        layer: the layer (0-based, negative counts from the end) whose outputs are the sources;
            None computes the flow at the output of every layer.
        residual: add the identity for the residual connection before normalising rows.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        progress: called as ``progress(done, total)`` after each (example, layer) is finished,
            ``total = B * (L if layer is None else 1)``; for progress bars and time estimates.
        workers: threads solving (example, layer) problems in parallel (the compiled solver
            releases the GIL); None uses ``torch.get_num_threads()``.

    Returns:
        `(B, n, n)` flow for one layer, or `(B, L, n, n)` for ``layer=None`` (first layer first).
        Rows of valid tokens sum to 1; rows and columns of padding are zero.

    Raises:
        ValueError: on a wrong shape, mask, `layer`, negative or non-finite attention.
        TypeError: on a non-floating `attn`, a float `mask` or a `progress` that is not callable.

    Example:
        >>> import torch
        >>> attn = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]])
        >>> attention_flow(attn)[0]
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])
    """
    fused = _fuse_if_per_head(attn, how=head_fusion)
    mask = _check_mask(mask, "mask", fused.shape[0], fused.shape[-1], fused.device)
    fused = _apply_mask(fused, mask)  # padding may hold anything
    _check_finite(fused, "attn")
    layers, wanted = _attention_flow_check(fused, layer, progress, workers)
    capacity = _residual_attention(fused, mask, residual=residual)
    batch, n = capacity.shape[0], capacity.shape[-1]
    # The search is sequential: it runs on float64 numpy copies; each example on its valid tokens only,
    # so padding cannot change a single operation (padding invariance is exact, not approximate).
    capacity_np = capacity.detach().to(device="cpu", dtype=torch.float64).numpy()
    mask_np = mask.detach().to("cpu").numpy()
    flows = np.zeros((batch, len(wanted), n, n), dtype=np.float64)
    compact = []
    for b in range(batch):
        valid = np.flatnonzero(mask_np[b])
        compact.append((valid, np.ascontiguousarray(capacity_np[b][:, valid][:, :, valid])))
    # arcs of layer l + 1 run from node layer l + 1 down to node layer l: cap[l] = Â_{l+1}
    tasks = [(b, slot, top) for b in range(batch) for slot, top in enumerate(wanted)]

    def solve(task: tuple[int, int, int]) -> np.ndarray:
        b, _, top = task
        return _layered_max_flows(compact[b][1][: top + 1])

    threads = min(len(tasks), workers if workers is not None else torch.get_num_threads())
    # A pool costs more than tiny inputs; above that, solves run off the main thread so that Ctrl-C
    # (delivered to the main thread only) interrupts the wait within a fraction of a second.
    long_running = estimate_flow_seconds([len(v) for v, _ in compact], layers, every_layer=layer is None) > 1.0
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 or long_running else None
    finished = False
    try:
        if pool is None:
            results = map(solve, tasks)
        else:
            futures = [pool.submit(solve, task) for task in tasks]
            results = (_result_interruptibly(future) for future in futures)
        for done, ((b, slot, _), solved) in enumerate(zip(tasks, results), start=1):
            valid = compact[b][0]
            flows[b, slot][np.ix_(valid, valid)] = solved
            if progress is not None:
                progress(done, len(tasks))
        finished = True
    finally:
        if pool is not None:  # on an interrupt, do not wait for the compiled solves still running
            pool.shutdown(wait=finished, cancel_futures=True)
    result = _normalize_rows(torch.from_numpy(flows)).to(device=attn.device, dtype=attn.dtype)
    return result if layer is None else result[:, 0]
