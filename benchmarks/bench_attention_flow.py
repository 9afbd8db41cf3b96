"""Attention Flow: attnlens against the networkx reference and off-the-shelf per-pair max-flow solvers.

Runs on one CPU thread (``torch.set_num_threads(1)``, numba single-threaded). Prints a markdown report
and writes it to ``--out``.

    python benchmarks/bench_attention_flow.py --out benchmarks/results/attention_flow.md

Part 1, random attention (12 layers, 12 heads, softmax of standard-normal logits, heads averaged as in
Abnar & Zuidema), one sentence per size n:

- reference: networkx ``maximum_flow_value`` with Edmonds-Karp, one call per (output node, input token)
  pair on the whole layered graph, exactly as the public code of Abnar & Zuidema does. Time-capped: it
  runs a random sample of pairs for ``--reference-cap`` seconds and extrapolates (mean time per pair x
  number of pairs), marked with ``≈``.
- per-pair compiled solvers, graph built once per sentence, one call per pair (time-capped the same
  way): igraph ``maxflow_value`` (float, exact), OR-tools ``SimpleMaxFlow`` (int64 capacities x 2**40),
  scipy ``maximum_flow`` Dinic (int32 capacities x 2**30, scipy converts to int32). igraph and OR-tools
  are needed only by this benchmark (``pip install igraph ortools``); a missing one is skipped.
- attnlens ``attention_flow`` (full call: checks, head fusion, float64 copies, normalisation).

Part 2, the SST-2 dev set (872 sentences) through minilm-sst2 (6 layers) and a random-weight
BERT-base-shaped model (``BertConfig()`` defaults, 12 layers, eager attention): wall time of the model
forward, of flow at the last layer, and of flow at every layer.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from attnlens.methods._common import _residual_attention
from attnlens.methods._maxflow import _layered_max_flows
from attnlens.methods.attention_flow import attention_flow

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _capacities(attn: torch.Tensor) -> np.ndarray:
    """`(L, n, n)` float64 Â = norm_rows(mean_heads(A) + I) of one sentence `(1, L, H, n, n)`."""
    fused = attn.double().mean(dim=2)
    mask = torch.ones(1, fused.shape[-1], dtype=torch.bool)
    return _residual_attention(fused, mask)[0].numpy()


def _arcs(cap: np.ndarray):
    """Arcs of the whole layered graph: node (l, a) = l * n + a, arc (l + 1, a) -> (l, b)."""
    layers, n, _ = cap.shape
    tails, heads, values = [], [], []
    for l in range(layers):
        for a in range(n):
            for b in range(n):
                tails.append((l + 1) * n + a)
                heads.append(l * n + b)
                values.append(float(cap[l, a, b]))
    return np.array(tails), np.array(heads), np.array(values)


def _networkx_solver(cap):
    import networkx as nx  # noqa: PLC0415

    layers, n, _ = cap.shape
    size = (layers + 1) * n
    adjacency = np.zeros((size, size))
    tails, heads, values = _arcs(cap)
    adjacency[tails, heads] = values
    graph = nx.from_numpy_array(adjacency, create_using=nx.DiGraph())
    nx.set_edge_attributes(graph, {(u, v): adjacency[u, v] for u, v in graph.edges}, "capacity")
    return lambda s, t: nx.maximum_flow_value(graph, s, t, flow_func=nx.algorithms.flow.edmonds_karp)


def _igraph_solver(cap):
    import igraph  # noqa: PLC0415

    layers, n, _ = cap.shape
    tails, heads, values = _arcs(cap)
    graph = igraph.Graph(n=(layers + 1) * n, edges=list(zip(tails.tolist(), heads.tolist())), directed=True)
    graph.es["capacity"] = values.tolist()
    return lambda s, t: graph.maxflow_value(s, t, capacity="capacity")


def _ortools_solver(cap, scale=2.0**40):
    from ortools.graph.python import max_flow  # noqa: PLC0415

    tails, heads, values = _arcs(cap)
    solver = max_flow.SimpleMaxFlow()
    solver.add_arcs_with_capacity(tails, heads, np.rint(values * scale).astype(np.int64))

    def solve(s, t):
        solver.solve(s, t)
        return solver.optimal_flow() / scale

    return solve


def _scipy_solver(cap, scale=2.0**30):
    from scipy.sparse import csr_array  # noqa: PLC0415
    from scipy.sparse.csgraph import maximum_flow  # noqa: PLC0415

    layers, n, _ = cap.shape
    size = (layers + 1) * n
    tails, heads, values = _arcs(cap)
    keep = values > 0
    graph = csr_array((np.rint(values[keep] * scale).astype(np.int32), (tails[keep], heads[keep])), shape=(size, size))
    return lambda s, t: maximum_flow(graph, s, t, method="dinic").flow_value / scale


SOLVERS = {
    "networkx Edmonds-Karp (reference)": _networkx_solver,
    "igraph (float)": _igraph_solver,
    "OR-tools (int64 x 2^40)": _ortools_solver,
    "scipy Dinic (int32 x 2^30)": _scipy_solver,
}


def _per_pair(solver, cap, exact_all, every_layer, cap_seconds, rng):
    """Seconds per sentence (measured or extrapolated), whether extrapolated, max abs error on pairs run."""
    layers, n, _ = cap.shape
    tops = range(1, layers + 1) if every_layer else [layers]
    pairs = [(top, i, j) for top in tops for i in range(n) for j in range(n)]
    rng.shuffle(pairs)
    error, done = 0.0, 0
    start = time.perf_counter()
    for top, i, j in pairs:
        value = solver(top * n + i, j)
        error = max(error, abs(value - exact_all[top - 1][i, j]))
        done += 1
        if time.perf_counter() - start > cap_seconds:
            break
    elapsed = time.perf_counter() - start
    return elapsed / done * len(pairs), done < len(pairs), error


def _fmt(seconds: float, extrapolated: bool = False) -> str:
    text = f"{seconds:,.0f}" if seconds >= 100 else f"{seconds:.3g}"
    return ("≈" if extrapolated else "") + text


def random_attention_part(sizes, layers, heads, reference_cap, solver_cap, lines):
    rng = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    attention_flow(torch.softmax(torch.randn(1, 4, 1, 5, 5, generator=generator), dim=-1))  # load the JIT cache
    available = {}
    for name, factory in SOLVERS.items():
        try:
            factory(np.ones((1, 1, 1)))
            available[name] = factory
        except ImportError:
            lines.append(f"- {name}: not installed, skipped.")
    rows = {}
    for n in sizes:
        attn = torch.softmax(torch.randn(1, layers, heads, n, n, generator=generator), dim=-1)
        cap = _capacities(attn)
        exact_all = [_layered_max_flows(cap[:top]) for top in range(1, layers + 1)]
        timings = {}
        for every_layer in (False, True):
            start = time.perf_counter()
            attention_flow(attn, layer=None if every_layer else -1)
            timings[("attnlens attention_flow", every_layer)] = (time.perf_counter() - start, False, 0.0)
        for name, factory in available.items():
            solver = factory(cap)
            budget = reference_cap if "reference" in name else solver_cap
            for every_layer in (False, True):
                timings[(name, every_layer)] = _per_pair(solver, cap, exact_all, every_layer, budget / 2, rng)
            print(f"n={n} {name} done", file=sys.stderr, flush=True)
        rows[n] = timings
    for every_layer, title in ((False, "flow at the last layer (n² pairs)"), (True, "flow at every layer (L·n² pairs)")):
        lines += ["", f"### Random attention, L = {layers}, {title}: seconds per sentence", ""]
        names = ["attnlens attention_flow", *available]
        lines.append("| solver | " + " | ".join(f"n = {n}" for n in sizes) + " |")
        lines.append("| --- |" + " --- |" * len(sizes))
        for name in names:
            cells = [_fmt(rows[n][(name, every_layer)][0], rows[n][(name, every_layer)][1]) for n in sizes]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for name in available:
            lines.append(f"| max abs error of {name} vs attnlens (pairs run) | " + " | ".join(
                f"{rows[n][(name, every_layer)][2]:.1e}" for n in sizes) + " |")
        for name in available:
            lines.append(f"| speed-up of attnlens over {name} | " + " | ".join(
                f"{rows[n][(name, every_layer)][0] / rows[n][('attnlens attention_flow', every_layer)][0]:,.0f}x"
                for n in sizes) + " |")
    return rows


def _sst2_model(kind):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig  # noqa: PLC0415
    from transformers import BertForSequenceClassification  # noqa: PLC0415

    path = SHARED / "models" / "minilm-sst2"
    tokenizer = AutoTokenizer.from_pretrained(path)
    if kind == "minilm-sst2":
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32,
                                                                   attn_implementation="eager")
    else:
        torch.manual_seed(0)
        config = BertConfig(attn_implementation="eager")
        model = BertForSequenceClassification(config)
        model.config._attn_implementation = "eager"
    return tokenizer, model.eval()


def sst2_part(kinds, limit, batch_size, lines):
    from attnlens.datasets.sst2 import read_sst2_tsv  # noqa: PLC0415

    sentences = read_sst2_tsv(SHARED / "data" / "sst2" / "dev.tsv").sentences[:limit]
    lines += ["", f"### SST-2 dev, {len(sentences)} sentences: wall seconds for the whole set", "",
              "| model | layers | tokens mean / max | forward | flow, last layer | flow, every layer |",
              "| --- | --- | --- | --- | --- | --- |"]
    for kind in kinds:
        tokenizer, model = _sst2_model(kind)
        order = sorted(range(len(sentences)), key=lambda k: len(sentences[k]))
        forward = last = every = 0.0
        lengths = []
        for start in range(0, len(order), batch_size):
            batch = [sentences[k] for k in order[start:start + batch_size]]
            encoded = tokenizer(batch, return_tensors="pt", padding=True)
            t0 = time.perf_counter()
            with torch.no_grad():
                output = model(**encoded, output_attentions=True)
            attn = torch.stack(output.attentions, dim=1)
            forward += time.perf_counter() - t0
            mask = encoded["attention_mask"].bool()
            lengths += mask.sum(dim=1).tolist()
            t0 = time.perf_counter()
            attention_flow(attn, mask=mask)
            last += time.perf_counter() - t0
            t0 = time.perf_counter()
            attention_flow(attn, mask=mask, layer=None)
            every += time.perf_counter() - t0
            print(f"{kind}: {start + len(batch)}/{len(order)}", file=sys.stderr, flush=True)
        layers = model.config.num_hidden_layers
        lines.append(f"| {kind} | {layers} | {np.mean(lengths):.1f} / {max(lengths)} | {forward:.1f} | {last:.1f} | "
                     f"{every:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 24, 32, 48])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--reference-cap", type=float, default=20.0, help="seconds for networkx per size")
    parser.add_argument("--solver-cap", type=float, default=8.0, help="seconds for each per-pair solver per size")
    parser.add_argument("--sst2", nargs="*", default=["minilm-sst2", "bert-base-random"],
                        help="models for the SST-2 part (none to skip)")
    parser.add_argument("--limit", type=int, default=None, help="first sentences of SST-2 dev only")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    lines = [
        "## Attention Flow",
        "",
        "Command: `python benchmarks/bench_attention_flow.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other "
        "engineers working at the same time (timings are noisy, a few tens of percent); "
        "`torch.set_num_threads(1)`, every solver single-threaded. "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}.",
        "",
        "`≈` marks a time extrapolated from a time-capped random sample of pairs (mean seconds per pair x pairs).",
    ]
    random_attention_part(args.sizes, args.layers, args.heads, args.reference_cap, args.solver_cap, lines)
    if args.sst2:
        sst2_part(args.sst2, args.limit, args.batch_size, lines)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
