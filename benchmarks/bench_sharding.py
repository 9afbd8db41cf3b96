"""Studies over processes: throughput of 1 and 2 processes, and the cost of writing shard files.

Scaling: the SST-2 study (raw, rollout, selective at 0.5/1/2) run by `attnlens sst2` as one process
and as two processes under `torch.distributed.run` (gloo), each with one torch thread, side by side
in one run; throughput = examples / the slowest rank's scoring seconds (read from the shards'
footers in results.json), and the wall time of the whole command (start-up, loading and the
merge included). Shard cost: in one process, `score` with and without the shard writer on the
same examples, rounds alternating, the minimum of each (noisy on a shared VM), and, within the
same runs, the time spent inside the writer (encoding and flushing the lines: the direct cost),
plus the time to read the shard back and merge it.

    python benchmarks/bench_sharding.py                     # SST-2 dev on ../shared/models/minilm-sst2
    python benchmarks/bench_sharding.py --limit 400 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
ROOT = Path(__file__).resolve().parents[1]


def run_command(processes: int, out: Path, args: argparse.Namespace) -> tuple[float, dict]:
    study = ["-m", "attnlens.cli", "--quiet", "--threads", "1", "sst2", "--model", args.model, "--data", args.data,
             "--batch-size", str(args.batch_size), "--out", str(out)] + (["--limit", str(args.limit)] if args.limit else [])
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                          str(processes)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    subprocess.run([sys.executable, *launcher, *study], check=True, env=env, capture_output=True)
    return time.perf_counter() - start, json.loads((out / "results.json").read_text())


def shard_cost(args: argparse.Namespace) -> dict[str, float]:
    from attnlens.experiments.scoring import score
    from attnlens.experiments.shards import ShardWriter, merge_shards
    from attnlens.experiments.sst2 import SST2StudyConfig
    from attnlens.experiments.study import _prepare

    torch.set_num_threads(1)
    config = SST2StudyConfig(model=args.model, data=args.data, limit=args.limit, batch_size=args.batch_size)
    methods, adapter, examples, _, _ = _prepare(config, None, None)
    options = config.score_options()
    score(adapter, examples[:32], methods, options=options)  # warm-up
    plain, written, merged, writing = [], [], [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        score(adapter, examples, methods, options=options)
        plain.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as folder:
            header = {"config": {}, "data_hash": "", "model_hash": "", "methods": [m.name for m in methods],
                      "families": {m.name: m.family for m in methods}, "num_layers": adapter.num_layers, "rank": 0,
                      "world": 1}
            start = time.perf_counter()
            writer = ShardWriter(Path(folder) / "shard-00000-of-00001.jsonl", header)
            inside = [0.0]

            def timed_write(number, piece, writer=writer, inside=inside):
                began = time.perf_counter()
                writer.write_batch(number, piece)
                inside[0] += time.perf_counter() - began

            table = score(adapter, examples, methods, options=options, on_batch=timed_write)
            began = time.perf_counter()
            writer.finish(table.timings)
            inside[0] += time.perf_counter() - began
            written.append(time.perf_counter() - start)
            writing.append(inside[0])
            start = time.perf_counter()
            merge_shards([folder])
            merged.append(time.perf_counter() - start)
    return {"plain": min(plain), "with_shards": min(written), "merge": min(merged), "writing": min(writing),
            "examples": len(examples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-sst2"))
    parser.add_argument("--data", default=str(SHARED / "data"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"model {args.model}, SST-2 dev{'' if args.limit is None else f' (first {args.limit})'}, batch "
          f"{args.batch_size}, one torch thread per process, {os.cpu_count()} CPUs, torch {torch.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            for processes in (1, 2):
                wall, document = run_command(processes, Path(folder) / f"p{processes}-r{round_index}", args)
                ranks = document["timings_seconds"]["ranks"]
                examples = sum(r["examples"] for r in ranks)
                rows.append((processes, wall, examples / max(r["seconds"] for r in ranks), examples / wall))
    best = {p: (min(r[1] for r in rows if r[0] == p), max(r[2] for r in rows if r[0] == p),
                max(r[3] for r in rows if r[0] == p)) for p in (1, 2)}
    print("| processes | wall time (s) | scoring throughput (examples/s) | end-to-end throughput (examples/s) |")
    print("| --- | --- | --- | --- |")
    for processes, (wall, scoring, overall) in best.items():
        print(f"| {processes} | {wall:.1f} | {scoring:.1f} | {overall:.1f} |")
    print(f"scaling 2 vs 1 process: scoring {best[2][1] / best[1][1]:.2f}x, end to end {best[2][2] / best[1][2]:.2f}x")
    cost = shard_cost(args)
    overhead = (cost["with_shards"] - cost["plain"]) / cost["plain"]
    print(f"\nshard writing, {cost['examples']} examples: score alone {cost['plain']:.2f} s, with the shard writer "
          f"{cost['with_shards']:.2f} s ({100 * overhead:+.1f} %, side by side, min of {args.rounds}); time spent "
          f"inside the writer {cost['writing']:.3f} s ({100 * cost['writing'] / cost['plain']:.2f} % of scoring); "
          f"reading back and merging {cost['merge']:.2f} s ({100 * cost['merge'] / cost['plain']:.2f} %)")


if __name__ == "__main__":
    main()
