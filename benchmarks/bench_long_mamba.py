"""CPU benchmark: Mamba hidden attention on long inputs, mamba-130m shape, against the authors' loop structure.

One layer of mamba-130m shape (d_inner D = 1536 scan channels, N = 16 states; 24 layers), batch 1,
float32, random inputs with the value ranges of an initialised Mamba: Δ = softplus(b_d + ε), the
bias b_d = softplus⁻¹(Δ₀) with Δ₀ log-uniform in [0.01, 0.1] per channel (Mamba's dt init) and
ε ~ N(0, 1) per token; A = -exp(A_log) with A_log = log(1..16) per channel (Mamba's S4D-real init);
B, C ~ N(0, 1). The unified form (``form="unified"``) also gets the gate input z ~ N(0, 1), the conv
pre-activation v ~ N(0, 1), the skip D = 1 and conv taps w ~ U(-1/2, 1/2) (K = 4: nn.Conv1d's init).

Rows (each in a fresh ``spawn`` subprocess, ``torch.set_num_threads(--threads)``, no autograd):

- attnlens ``hidden_attention(..., channels=mode)`` for mode "mean" and "abs_mean", ``form="scan"``
  and ``form="unified"``, plus "mean" with ``channel_block=64`` (the default block against a larger
  one). Warm-up: one call at n = 64 in the subprocess; then at n < ``--long-from`` the median of
  ``--repeats`` calls after one full-size warm-up, at n ≥ ``--long-from`` one timed call. At
  n ≥ ``--subset-from`` only the first D / ``--subset-divisor`` channels are computed and the time is
  multiplied by the divisor: the channel loop runs the same blocks per channel (the default
  channel block does not depend on D), so time is linear in D; ``--validate-subset`` checks that at
  a size where the full run is also done.
- Peak memory: the rise of the subprocess's peak resident set size over its resident size once the
  inputs exist (Linux VmHWM, reset through /proc/self/clear_refs right before the first full-size
  call), so torch's allocations are seen (tracemalloc does not see them) and the inputs are not
  counted; the result (n, n) itself is counted. Reported in MiB and in units of one (n, n) float32
  matrix. Subset rows measure memory with the subset of channels (in "mean" mode the working set
  does not grow with D beyond a few (D, n) copies of the inputs: 4 × D·n·4 bytes ≈ 96 MiB at
  n = 4,096).
- authors' structure (Ali et al., HiddenMambaAttn ``compute_attn_matrix_fn``): a Python loop over
  (query r, key c ≤ r) that builds each pair's decay as a running product of the per-token
  exp(Δ·A) factors, one tensor multiply per token in between, vectorised over channels and states
  only, writing one (D,) entry per pair into a preallocated (D, n, n) matrix (their code allocates
  (B, D, n, n), float16 by default; float32 here, and the channel mean after). O(n³/6) tensor
  operations. Where the (D, n, n) buffer exceeds ``--authors-buffer-gib`` it is not allocated:
  each row is written into a (D, n) row buffer and dropped (the same writes), and its size is
  given, not measured. Run row by row from r = 0 until ``--cap`` seconds; the per-row times are
  fitted by least squares to t_r = a · (multiplies in row r) + b · (pairs in row r), and the full
  time extrapolated as a · Σ multiplies + b · Σ pairs ("fit"). At ``--authors-full`` it runs to the
  end, and the same fit from its first quarter of rows is printed next to the measured total.

24-layer totals are 24 × one layer (all layers have the same shape). The machine is shared: the
load average is printed at the start and the end.

    python benchmarks/bench_long_mamba.py --threads 1 [--sizes 256,1024,4096] [--cap 30] \
        [--out benchmarks/results/long_mamba_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

CHANNELS = 1536  # mamba-130m d_inner
STATES = 16
LAYERS = 24
CONV_TAPS = 4


def layer_inputs(n: int, channels: int = CHANNELS, seed: int = 0) -> dict[str, torch.Tensor]:
    """One layer's scan (and mixer) inputs at mamba-130m value ranges; batch 1."""
    g = torch.Generator().manual_seed(seed)
    low, high = math.log(0.01), math.log(0.1)
    dt_init = torch.exp(low + (high - low) * torch.rand(channels, generator=g))
    bias = dt_init + torch.log(-torch.expm1(-dt_init))  # softplus⁻¹(Δ₀)
    delta = torch.nn.functional.softplus(bias[None, :, None] + torch.randn(1, channels, n, generator=g))
    A = -torch.exp(torch.log(torch.arange(1, STATES + 1, dtype=torch.float32))).repeat(channels, 1)
    return {
        "delta": delta, "A": A,
        "B": torch.randn(1, STATES, n, generator=g), "C": torch.randn(1, STATES, n, generator=g),
        "gate": torch.randn(1, channels, n, generator=g),
        "conv_preactivation": torch.randn(1, channels, n, generator=g),
        "skip": torch.ones(channels), "conv_weight": torch.rand(channels, CONV_TAPS, generator=g) - 0.5,
    }


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise OSError(f"{key} not in /proc/self/status")


def _reset_peak() -> float:
    """Reset the peak resident set size (VmHWM) and return the resident size now, MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mib("VmRSS")


def _call(inputs: dict, mode: str, form: str, channel_block: int | None):
    from attnlens.methods.hidden_attention import hidden_attention

    extra = {} if form == "scan" else {k: inputs[k] for k in ("gate", "skip", "conv_weight", "conv_preactivation")}
    return hidden_attention(inputs["delta"], inputs["A"], inputs["B"], inputs["C"], channels=mode, form=form,
                            channel_block=channel_block, **extra)


def _attnlens_worker(config: dict, queue) -> None:
    torch.set_num_threads(config["threads"])
    with torch.no_grad():
        _call(layer_inputs(64, config["channels"]), config["mode"], config["form"], config["channel_block"])
        inputs = layer_inputs(config["n"], config["channels"])
        base = _reset_peak()
        start = time.perf_counter()
        out = _call(inputs, config["mode"], config["form"], config["channel_block"])
        first = time.perf_counter() - start
        peak = _status_mib("VmHWM") - base
        del out
        times = []
        for _ in range(config["repeats"]):
            start = time.perf_counter()
            _call(inputs, config["mode"], config["form"], config["channel_block"])
            times.append(time.perf_counter() - start)
    queue.put({"first_s": first, "times_s": times, "peak_mib": peak})


def _authors_worker(config: dict, queue) -> None:
    torch.set_num_threads(config["threads"])
    inputs = layer_inputs(config["n"])
    base = _reset_peak()
    result = authors_structure(inputs["delta"], inputs["A"], inputs["B"], inputs["C"], cap=config["cap"],
                               full_buffer=config["full_buffer"])
    result["peak_mib"] = _status_mib("VmHWM") - base
    queue.put(result)


def _in_subprocess(target, config: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(config, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def authors_structure(delta, A, B, C, *, cap: float, full_buffer: bool) -> dict:
    """The authors' per-(r, c) loop with running-product decays, row by row until `cap` seconds.

    Returns the per-row seconds, rows done and, when it ran to the end with the full buffer, the
    channel mean (so the work of the whole computation is done).
    """
    _, channels, n = delta.shape
    step = torch.exp(torch.einsum("dl,ds->lds", delta[0], A))  # exp(Δ_k A): (n, D, N)
    keys = torch.einsum("dl,sl->lds", delta[0], B[0])  # Δ_c B_c: (n, D, N)
    queries = C[0].T  # (n, N)
    matrix = torch.zeros(channels, n, n) if full_buffer else None
    row_seconds = []
    start = time.perf_counter()
    for r in range(n):
        row_start = time.perf_counter()
        row = matrix[:, r] if matrix is not None else torch.zeros(channels, n)
        for c in range(r + 1):
            decay = torch.ones(channels, A.shape[1])
            for k in range(r, c, -1):  # the tokens after c up to r
                decay = decay * step[k]
            row[:, c] = (queries[r] * decay * keys[c]).sum(-1)
        row_seconds.append(time.perf_counter() - row_start)
        if time.perf_counter() - start > cap:
            break
    mean = matrix.mean(dim=0) if matrix is not None and len(row_seconds) == n else None
    return {"row_seconds": row_seconds, "rows_done": len(row_seconds), "n": n,
            "seconds": time.perf_counter() - start, "finished": mean is not None}


def _row_counts(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(rows, dtype=torch.float64)
    return r * (r + 1) / 2, r + 1  # multiplies (Σ_c (r - c)) and pairs in row r


def fit_rows(row_seconds: list[float]) -> tuple[float, float]:
    """Least-squares (a, b) of t_r = a · multiplies_r + b · pairs_r (both clamped at ≥ 0)."""
    multiplies, pairs = _row_counts(len(row_seconds))
    design = torch.stack([multiplies, pairs], dim=1)
    solution = torch.linalg.lstsq(design, torch.tensor(row_seconds, dtype=torch.float64)[:, None]).solution
    a, b = (max(float(v), 0.0) for v in solution[:, 0])
    return a, b


def extrapolate(a: float, b: float, n: int) -> float:
    multiplies, pairs = _row_counts(n)
    return a * float(multiplies.sum()) + b * float(pairs.sum())


def _fmt_s(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.3g} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="256,1024,4096")
    parser.add_argument("--forms", default="scan,unified")
    parser.add_argument("--modes", default="mean,abs_mean")
    parser.add_argument("--extra-block", type=int, default=64, help="also channels='mean' with this channel_block (0: off)")
    parser.add_argument("--authors-sizes", default=None, help="n for the authors' structure (default: --sizes; '' for none)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after a warm-up at n < --long-from")
    parser.add_argument("--long-from", type=int, default=1024, help="from this n: one timed call")
    parser.add_argument("--subset-from", type=int, default=4096, help="from this n: a subset of channels")
    parser.add_argument("--subset-divisor", type=int, default=16)
    parser.add_argument("--validate-subset", type=int, default=1024, help="n at which the subset is checked (0: off)")
    parser.add_argument("--cap", type=float, default=30.0, help="seconds per authors' loop run before extrapolating")
    parser.add_argument("--authors-full", type=int, default=128, help="n at which the authors' loop runs to the end")
    parser.add_argument("--authors-buffer-gib", type=float, default=1.0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "long_mamba_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    forms = args.forms.split(",")
    wall = time.perf_counter()
    load_start = os.getloadavg()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
               f"torch.set_num_threads({torch.get_num_threads()}), attnlens at commit {commit}")
    print(f"machine: {machine}\nload average at start: {load_start}\nGPU: none used (CPU benchmark)\n", flush=True)

    configs = [(form, mode, None) for form in forms for mode in args.modes.split(",")]
    if args.extra_block:
        configs.append(("scan", "mean", args.extra_block))
    rows = []
    for n in sizes:
        subset = n >= args.subset_from
        channels = CHANNELS // args.subset_divisor if subset else CHANNELS
        for form, mode, block in configs:
            config = {"n": n, "mode": mode, "form": form, "channel_block": block, "channels": channels,
                      "threads": args.threads, "repeats": args.repeats if n < args.long_from else 0}
            result = _in_subprocess(_attnlens_worker, config)
            measured = statistics.median(result["times_s"]) if result["times_s"] else result["first_s"]
            scale = CHANNELS / channels
            rows.append({**config, **result, "seconds_per_layer": measured * scale,
                         "how": f"{channels} of {CHANNELS} channels, x{scale:g}" if subset else "all channels",
                         "peak_in_nn": result["peak_mib"] * 2**20 / (4 * n * n)})
            print(f"attnlens n={n} form={form} channels={mode} channel_block={block}: "
                  f"{rows[-1]['seconds_per_layer']:.3f} s/layer ({rows[-1]['how']}), peak {result['peak_mib']:.0f} MiB",
                  flush=True)
    validation = []
    if args.validate_subset:
        n = args.validate_subset
        for mode in ("mean", "abs_mean"):
            config = {"n": n, "mode": mode, "form": "scan", "channel_block": None, "threads": args.threads,
                      "channels": CHANNELS // args.subset_divisor, "repeats": 0}
            result = _in_subprocess(_attnlens_worker, config)
            full = next((r for r in rows if r["n"] == n and r["mode"] == mode and r["form"] == "scan"
                         and r["channel_block"] is None and r["channels"] == CHANNELS), None)
            validation.append({"n": n, "mode": mode, "subset_times_divisor_s": result["first_s"] * args.subset_divisor,
                               "full_s": None if full is None else full["seconds_per_layer"],
                               "subset_peak_mib": result["peak_mib"],
                               "full_peak_mib": None if full is None else full["peak_mib"]})
            print(f"subset check n={n} {mode}: {validation[-1]}", flush=True)

    authors = []
    authors_sizes = sizes if args.authors_sizes is None else [int(v) for v in args.authors_sizes.split(",") if v]
    for n in ([args.authors_full] if args.authors_full else []) + authors_sizes:
        full_buffer = CHANNELS * n * n * 4 <= args.authors_buffer_gib * 2**30
        cap = math.inf if n == args.authors_full else args.cap
        result = _in_subprocess(_authors_worker, {"n": n, "cap": cap, "full_buffer": full_buffer,
                                                  "threads": args.threads})
        rows_done = result["rows_done"]
        a, b = fit_rows(result["row_seconds"])
        entry = {"n": n, "rows_done": rows_done, "seconds_run": result["seconds"], "finished": result["finished"],
                 "fit_a_s_per_multiply": a, "fit_b_s_per_pair": b, "full_buffer": full_buffer,
                 "buffer_gib_float32": CHANNELS * n * n * 4 / 2**30, "peak_mib": result["peak_mib"],
                 "seconds_per_layer": result["seconds"] if result["finished"] else extrapolate(a, b, n)}
        if result["finished"]:
            quarter = max(2, n // 4)
            entry["fit_from_first_quarter_s"] = extrapolate(*fit_rows(result["row_seconds"][:quarter]), n)
        authors.append(entry)
        print(f"authors n={n}: rows {rows_done}/{n} in {result['seconds']:.1f} s, "
              f"{'measured' if result['finished'] else 'fit'} {_fmt_s(entry['seconds_per_layer'])}/layer, "
              f"peak {result['peak_mib']:.0f} MiB {'(full buffer)' if full_buffer else '(row buffer)'}"
              + (f", fit from first quarter {_fmt_s(entry['fit_from_first_quarter_s'])}"
                 if 'fit_from_first_quarter_s' in entry else ""), flush=True)

    print("\n| n | form | channels | channel_block | s / layer | 24 layers | peak MiB / layer (x one n² float32) "
          "| authors' structure s / layer | authors / attnlens |")
    print("|---:|---|---|---|---:|---:|---:|---:|---:|")
    authors_by_n = {a["n"]: a for a in authors}  # the capped runs override the full one at the same n
    for row in rows:
        author = authors_by_n.get(row["n"], {"seconds_per_layer": math.nan})
        how = "" if row["how"] == "all channels" else f" ({row['how']})"
        print(f"| {row['n']} | {row['form']} | {row['mode']} | {row['channel_block'] or 'default'} "
              f"| {row['seconds_per_layer']:.3g}{how} | {_fmt_s(row['seconds_per_layer'] * LAYERS)} "
              f"| {row['peak_mib']:.0f} ({row['peak_in_nn']:.1f}x) | {_fmt_s(author['seconds_per_layer'])} "
              f"| {author['seconds_per_layer'] / row['seconds_per_layer']:.0f}x |")
    print("\n| n | authors' rows run | s run | s / layer | 24 layers | (D, n, n) float32 | peak MiB measured |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for a in authors:
        how = "measured" if a["finished"] else "fit"
        print(f"| {a['n']} | {a['rows_done']} / {a['n']} | {a['seconds_run']:.1f} | {_fmt_s(a['seconds_per_layer'])} "
              f"({how}) | {_fmt_s(a['seconds_per_layer'] * LAYERS)} | {a['buffer_gib_float32']:.3g} GiB"
              f"{'' if a['full_buffer'] else ' (not allocated)'} | {a['peak_mib']:.0f} |")
    unified = [(s, u) for s in rows for u in rows if s["form"] == "scan" and u["form"] == "unified"
               and s["n"] == u["n"] and s["mode"] == u["mode"] and s["channel_block"] is None]
    if unified:
        print("\n| n | channels | scan s / layer | unified s / layer | unified / scan (target ≤ 1.5x) |")
        print("|---:|---|---:|---:|---:|")
        for s, u in unified:
            print(f"| {s['n']} | {s['mode']} | {s['seconds_per_layer']:.3g} | {u['seconds_per_layer']:.3g} "
                  f"| {u['seconds_per_layer'] / s['seconds_per_layer']:.2f}x |")
    load_end = os.getloadavg()
    total = time.perf_counter() - wall
    print(f"\nload average at end: {load_end}; benchmark wall time {total:.0f} s")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine, "load_start": load_start, "load_end": load_end,
                                   "wall_s": total, "attnlens": rows, "subset_validation": validation,
                                   "authors": authors, "layers": LAYERS}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
