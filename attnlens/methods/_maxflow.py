"""Exact float max-flow on the layered attention graph, for every (output node, input token) pair.

The network of Abnar & Zuidema (2020) for source layer ``T``: node ``(l, a)`` (layer ``l`` in
``0..T``, token ``a``) has an arc to ``(l - 1, b)`` of capacity ``cap[l - 1, a, b]``. Capacities are
dense ``(T, n, n)`` blocks, so arcs are never stored: node ``(l, a)`` has ``n`` arcs down (residual
``cap - flow``) and ``n`` arcs up (residual ``flow`` of the arc below it), read from two arrays.

Algorithm (why it is fast):

- ``T = 1``: the only path is the arc itself, flow = capacity. ``T = 2``: the paths
  ``s -> (1, k) -> t`` share no arc, flow = ``sum_k min(cap[1, i, k], cap[0, k, j])``. Both are
  vectorised, no search.
- ``T >= 3``: push-relabel (Goldberg & Tarjan 1988) with highest-label selection, exact global
  relabelling (a reverse BFS from the sink) and the gap heuristic, phase 1 only: the excess that
  reaches the sink when no node below label ``N`` is active is the max-flow value (the min cut), so
  the flow itself is never finished.
- Residual graphs are reused across sinks: for a fixed source, after the sink ``(0, j)`` is done the
  current preflow is still a valid preflow (all source arcs saturated) for the next sink; the old
  sink just becomes a node with excess. One global relabel towards the new sink and a resumed phase 1
  give its max flow, usually after a few pushes that re-route what reached the old sink.
- Pushes that fill an arc set its flow to the capacity (or to 0) exactly, so float round-off never
  leaves ``1e-17`` residues that would cause endless tiny pushes. Values are exact up to float64
  round-off of the sums (about ``1e-15``).

The loops compile with numba when it is installed (``@njit``, cached on disk); without numba the
same code runs as plain Python, correct but slow (fine for tests on tiny graphs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

try:  # pragma: no cover - which branch runs depends on the environment
    from numba import njit as _numba_njit

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    _numba_njit = None
    _HAVE_NUMBA = False


def _jit(function: Callable) -> Callable:
    """Compile with numba (cached on disk when the package folder is writable), else leave as Python."""
    if not _HAVE_NUMBA:
        return function
    try:
        return _numba_njit(cache=True, nogil=True)(function)
    except (RuntimeError, OSError):  # pragma: no cover - no writable cache location
        return _numba_njit(nogil=True)(function)


@_jit
def _global_relabel(cap, flow, excess, label, bucket_head, bucket_next, count, current, T, n, sink, source):
    """Exact distances to `sink` in the residual graph; rebuild the active buckets. Returns max active label."""
    num_nodes = (T + 1) * n
    unreachable = num_nodes
    for v in range(num_nodes):
        label[v] = unreachable
        current[v] = 0
    for d in range(num_nodes + 1):
        bucket_head[d] = -1
        count[d] = 0
    queue = np.empty(num_nodes, dtype=np.int64)
    label[sink] = 0
    queue[0] = sink
    head = 0
    tail = 1
    while head < tail:
        v = queue[head]
        head += 1
        dv = label[v]
        lv = v // n
        b = v - lv * n
        # arcs (lv + 1, a) -> (lv, b) with room left; layer T holds only the source, which keeps its label
        if lv + 1 <= T - 1:
            for a in range(n):
                u = (lv + 1) * n + a
                if label[u] == unreachable and cap[lv, a, b] - flow[lv, a, b] > 0.0:
                    label[u] = dv + 1
                    queue[tail] = u
                    tail += 1
        # reverse arcs (lv - 1, c) -> (lv, b) exist where the arc (lv, b) -> (lv - 1, c) carries flow
        if lv >= 1:
            for c in range(n):
                u = (lv - 1) * n + c
                if label[u] == unreachable and flow[lv - 1, b, c] > 0.0:
                    label[u] = dv + 1
                    queue[tail] = u
                    tail += 1
    label[source] = unreachable
    highest = -1
    for v in range(num_nodes):
        d = label[v]
        if d < unreachable:
            count[d] += 1
            if excess[v] > 0.0 and v != sink:
                bucket_next[v] = bucket_head[d]
                bucket_head[d] = v
                if d > highest:
                    highest = d
    return highest


@_jit
def _max_preflow(cap, flow, excess, label, bucket_head, bucket_next, count, current, T, n, sink, source):
    """Phase 1 of highest-label push-relabel towards `sink`, from the current preflow. Returns excess at sink."""
    num_nodes = (T + 1) * n
    unreachable = num_nodes
    highest = _global_relabel(cap, flow, excess, label, bucket_head, bucket_next, count, current, T, n, sink,
                              source)
    relabels = 0
    while highest >= 0:
        u = bucket_head[highest]
        if u < 0:
            highest -= 1
            continue
        bucket_head[highest] = bucket_next[u]
        lu = u // n
        a = u - lu * n
        du = label[u]
        # discharge u
        while excess[u] > 0.0:
            k = current[u]
            if k >= 2 * n:
                # relabel: one more than the lowest neighbour reachable through a residual arc
                new_label = unreachable
                if lu >= 1:
                    for b in range(n):
                        if cap[lu - 1, a, b] - flow[lu - 1, a, b] > 0.0:
                            w = (lu - 1) * n + b
                            if label[w] + 1 < new_label:
                                new_label = label[w] + 1
                if lu + 1 <= T:
                    for c in range(n):
                        if flow[lu, c, a] > 0.0:
                            w = (lu + 1) * n + c
                            if label[w] + 1 < new_label:
                                new_label = label[w] + 1
                count[du] -= 1
                if count[du] == 0:
                    # gap: nothing above du can reach the sink any more
                    for w in range(num_nodes):
                        if du < label[w] < unreachable:
                            count[label[w]] -= 1
                            label[w] = unreachable
                    new_label = unreachable
                if new_label >= unreachable:
                    label[u] = unreachable
                    break
                label[u] = new_label
                count[new_label] += 1
                du = new_label
                current[u] = 0
                relabels += 1
                continue
            if k < n:
                # arc down to (lu - 1, k)
                if lu >= 1:
                    w = (lu - 1) * n + k
                    if label[w] + 1 == du:
                        room = cap[lu - 1, a, k] - flow[lu - 1, a, k]
                        if room > 0.0:
                            was_idle = excess[w] <= 0.0
                            if excess[u] >= room:
                                flow[lu - 1, a, k] = cap[lu - 1, a, k]
                                excess[u] -= room
                                excess[w] += room
                            else:
                                flow[lu - 1, a, k] += excess[u]
                                excess[w] += excess[u]
                                excess[u] = 0.0
                            if was_idle and w != sink and w != source:
                                bucket_next[w] = bucket_head[du - 1]
                                bucket_head[du - 1] = w
                                if du - 1 > highest:
                                    highest = du - 1
                            if excess[u] > 0.0:
                                current[u] = k + 1
                            continue
            else:
                # reverse arc up to (lu + 1, c): undo flow on (lu + 1, c) -> (lu, a)
                c = k - n
                if lu + 1 <= T:
                    w = (lu + 1) * n + c
                    if label[w] + 1 == du:
                        room = flow[lu, c, a]
                        if room > 0.0:
                            was_idle = excess[w] <= 0.0
                            if excess[u] >= room:
                                flow[lu, c, a] = 0.0
                                excess[u] -= room
                                excess[w] += room
                            else:
                                flow[lu, c, a] -= excess[u]
                                excess[w] += excess[u]
                                excess[u] = 0.0
                            if was_idle and w != sink and w != source:
                                bucket_next[w] = bucket_head[du - 1]
                                bucket_head[du - 1] = w
                                if du - 1 > highest:
                                    highest = du - 1
                            if excess[u] > 0.0:
                                current[u] = k + 1
                            continue
            current[u] = k + 1
        if relabels > num_nodes // 4:  # frequent exact relabels pay off on peaked attention
            highest = _global_relabel(cap, flow, excess, label, bucket_head, bucket_next, count, current, T, n,
                                      sink, source)
            relabels = 0
    return excess[sink]


@_jit
def _flows_from_top(cap, out):
    """Max flow from every node (T, i) to every input token (0, j) of a ``(T, n, n)`` layered graph, T >= 3."""
    T = cap.shape[0]
    n = cap.shape[1]
    num_nodes = (T + 1) * n
    flow = np.zeros_like(cap)
    excess = np.zeros(num_nodes, dtype=np.float64)
    label = np.zeros(num_nodes, dtype=np.int64)
    bucket_head = np.empty(num_nodes + 1, dtype=np.int64)
    bucket_next = np.empty(num_nodes, dtype=np.int64)
    count = np.zeros(num_nodes + 1, dtype=np.int64)
    current = np.zeros(num_nodes, dtype=np.int64)
    for i in range(n):
        flow[:] = 0.0
        excess[:] = 0.0
        source = T * n + i
        for b in range(n):
            # saturate every arc out of the source
            flow[T - 1, i, b] = cap[T - 1, i, b]
            excess[(T - 1) * n + b] += cap[T - 1, i, b]
        for j in range(n):
            # the previous sink keeps its excess and becomes an ordinary node
            out[i, j] = _max_preflow(cap, flow, excess, label, bucket_head, bucket_next, count, current, T, n, j,
                                     source)


def _layered_max_flows(cap: np.ndarray) -> np.ndarray:
    """Max flow from each top node ``(T, i)`` to each input node ``(0, j)``; `cap` is ``(T, n, n)`` float64.

    ``cap[l, a, b]`` is the capacity of the arc ``(l + 1, a) -> (l, b)``. Returns ``(n, n)`` float64 flows.
    """
    T, n, _ = cap.shape
    if T == 1:
        return cap[0].copy()
    if T == 2:
        return np.minimum(cap[1][:, :, None], cap[0][None, :, :]).sum(axis=1)
    out = np.zeros((n, n), dtype=np.float64)
    _flows_from_top(np.ascontiguousarray(cap, dtype=np.float64), out)
    return out
