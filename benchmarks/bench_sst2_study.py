"""SST-2 study cost against its floor: the model's own forward+backward with attentions.

Floor: for the same length-sorted batches, tokenize, run the classifier with
`output_attentions=True` and take the gradient of the predicted logit w.r.t. the first layer's
input — what any attention-vs-gradient study must do at least. Study: `run_sst2_study` with raw,
rollout and selective rollout at three thresholds, Spearman per layer and all summaries. Rounds
alternate floor and study; the minimum of each is reported. Peak memory: on CUDA the peak
allocated by torch during each run; on the CPU the peak resident set size above its level before
the run, sampled every 2 ms by a thread (a lower bound of the true peak).

    python benchmarks/bench_sst2_study.py --model ../shared/models/minilm-sst2 --data ../shared/data
    python benchmarks/bench_sst2_study.py --model bert-base --tokenizer DIR --data DIR --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from attnlens.datasets import load_sst2
from attnlens.experiments.scoring import length_batches
from attnlens.experiments.sst2 import SST2StudyConfig, run_sst2_study
from attnlens.models import TextClassifierAdapter

SHARED = Path(__file__).resolve().parents[2] / "shared"  # the offline data beside the checkout

SHAPES = {"bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
          "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)}


def load_adapter(model: str, tokenizer: str | None, device: str) -> TextClassifierAdapter:
    if model not in SHAPES:
        return TextClassifierAdapter.from_pretrained(model, device=device)
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(num_labels=2, attn_implementation="eager", **SHAPES[model])
    net = BertForSequenceClassification(config).eval().to(device)
    return TextClassifierAdapter(net, AutoTokenizer.from_pretrained(tokenizer))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory(device: str, record: list[int]):
    """Append the run's peak memory in bytes to `record` (see the module docstring)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield
        torch.cuda.synchronize()
        record.append(torch.cuda.max_memory_allocated() - base)
        return
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        record.append(max(peak[0], _rss_bytes()) - base)


def floor_seconds(adapter: TextClassifierAdapter, sentences: list[str], batch_size: int, device: str) -> float:
    model, tokenizer = adapter.model, adapter.tokenizer
    for p in model.parameters():
        p.requires_grad_(False)
    lengths = [len(ids) for ids in tokenizer(sentences)["input_ids"]]
    sync(device)
    start = time.perf_counter()
    for batch in length_batches(lengths, batch_size):
        enc = tokenizer([sentences[i] for i in batch], padding=True, truncation=True, max_length=512,
                        return_tensors="pt").to(device)
        embeddings = model.get_input_embeddings()(enc.pop("input_ids")).requires_grad_(True)
        out = model(inputs_embeds=embeddings, output_attentions=True, output_hidden_states=True, **enc)
        picked = out.logits.gather(1, out.logits.argmax(-1, keepdim=True)).sum()
        torch.autograd.grad(picked, out.hidden_states[0])
        _ = [a.detach() for a in out.attentions]
    sync(device)
    return time.perf_counter() - start


def study_seconds(adapter: TextClassifierAdapter, data: str, batch_size: int, device: str, limit: int | None) -> tuple[
        float, dict]:
    config = SST2StudyConfig(data=data, batch_size=batch_size, device=device, limit=limit,
                             methods=("raw", "rollout", "selective"), thresholds=("0.5", "1", "2"))
    sync(device)
    start = time.perf_counter()
    result = run_sst2_study(config, adapter=adapter)
    sync(device)
    return time.perf_counter() - start, result.summary.timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-sst2"))
    parser.add_argument("--tokenizer", default=str(SHARED / "models" / "minilm-sst2"))
    parser.add_argument("--data", default=str(SHARED / "data"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch1-limit", type=int, default=200, help="sentences for the batch-1 comparison")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adapter = load_adapter(args.model, args.tokenizer, args.device)
    sentences = load_sst2("dev", data_dir=args.data).sentences[: args.limit]
    n = len(sentences)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    print(f"model {args.model}, {n} SST-2 dev sentences, device {args.device} ({device_name}), "
          f"torch threads {args.threads}, torch {torch.__version__}")
    floor_seconds(adapter, sentences[:64], args.batch_size, args.device)  # warm-up
    floors, studies, timings = [], [], {}
    floor_memory: list[int] = []
    study_memory: list[int] = []
    for _ in range(args.rounds):
        with peak_memory(args.device, floor_memory):
            floors.append(floor_seconds(adapter, sentences, args.batch_size, args.device))
        with peak_memory(args.device, study_memory):
            seconds, timings = study_seconds(adapter, args.data, args.batch_size, args.device, args.limit)
        studies.append(seconds)
    floor, study = min(floors), min(studies)
    mib = 2 ** 20
    print("| batch | floor: forward+backward with attentions (s) | whole study (s) | study / floor | "
          "peak memory floor (MiB) | peak memory study (MiB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {args.batch_size} | {floor:.2f} | {study:.2f} | {study / floor:.2f} | {max(floor_memory) / mib:.0f} | "
          f"{max(study_memory) / mib:.0f} |")
    print("study breakdown (last round): " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    limit = min(args.batch1_limit, n)
    one = floor_seconds(adapter, sentences[:limit], 1, args.device)
    many = floor_seconds(adapter, sentences[:limit], args.batch_size, args.device)
    s_one, _ = study_seconds(adapter, args.data, 1, args.device, limit)
    s_many, _ = study_seconds(adapter, args.data, args.batch_size, args.device, limit)
    print(f"\nthroughput on the first {limit} sentences (sentences/s):")
    print("| | batch 1 | batch %d | speed-up |" % args.batch_size)
    print("| --- | --- | --- | --- |")
    print(f"| floor | {limit / one:.1f} | {limit / many:.1f} | {one / many:.2f}x |")
    print(f"| study | {limit / s_one:.1f} | {limit / s_many:.1f} | {s_one / s_many:.2f}x |")


if __name__ == "__main__":
    main()
