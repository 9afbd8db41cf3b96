"""Profile one SST-2 study run (torch profiler): the operators that cost the most host and device time.

    python benchmarks/profile_sst2_study.py --model bert-base --tokenizer DIR --data DIR --device cuda
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from attnlens.experiments.sst2 import SST2StudyConfig, run_sst2_study
from bench_sst2_study import SHARED, load_adapter  # noqa: E402 - sibling script (benchmarks/ is on sys.path when run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--tokenizer", default=str(SHARED / "models" / "minilm-sst2"))
    parser.add_argument("--data", default=str(SHARED / "data"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    adapter = load_adapter(args.model, args.tokenizer, args.device)
    config = SST2StudyConfig(data=args.data, batch_size=args.batch_size, device=args.device, limit=args.limit)
    run_sst2_study(config, adapter=adapter)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        run_sst2_study(config, adapter=adapter)
    key = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
