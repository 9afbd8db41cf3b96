"""CPU benchmark: the Vim adapter's trace against the forward pass alone, and against the authors' loop.

Per image (batch 1) at Vim-small shape (embed 384, 24 layers, E = 768 scan channels, N = 16 states,
224 px, n = 197 tokens), random weights (seed 0; A_log, D and the Δ biases moved off their
initialisation as in the shared reference fixture, so decays differ per channel), float32,
``torch.set_num_threads(--threads)`` (default 1: the CPU is shared). Each time is the best of
``--repeats`` rounds after one warm-up; every round runs (a)–(d) once each, interleaved.

(a) floor: ``model(images)`` under ``torch.no_grad()``;
(b) forward + backward: the recording forward pass and the one backward pass of a trace
    (target logit → every block's residual stream), no hidden attention;
(c) trace: ``VimAdapter.trace`` (the forward pass with the scans recorded, the channel-mean hidden
    attention of all 24 layers in both directions, the exact per-channel class-token rows, the
    backward pass for Mamba-Attr's residual gradients and the saliency);
(d) trace + methods: (c) then rollout, rollout after Network Diffusion, and Mamba-Attr on it;
(e) authors' structure: the hidden attention of one layer and direction by their per-(r, c) loop
    (``authors_loop`` of ``bench_hidden_attention.py``: the decay of every pair built as a running
    product of ``exp(Δ·A)``), stopped after ``--cap`` seconds and extrapolated from the fraction of
    tensor operations done, times 2 · 24 for every layer and direction; compared with the hidden
    attention part of (c).

    python benchmarks/bench_vim.py [--threads 1] [--repeats 3] [--cap 10] [--out benchmarks/results/vim.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hidden_attention import authors_loop  # noqa: E402

from attnlens.methods import mamba_attr, network_diffusion, rollout  # noqa: E402
from attnlens.models.vim import VisionMamba  # noqa: E402
from attnlens.models.vim_adapter import VimAdapter, _layer_attention, readout_rows  # noqa: E402


def best_interleaved(calls: dict, repeats: int) -> dict[str, float]:
    """Best time of each call over `repeats` rounds, every round running each call once (after one warm-up),
    so that a slower period of a shared CPU hits all of them alike."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def random_vim(name: str) -> VisionMamba:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VisionMamba(name)
        with torch.no_grad():
            for layer in model.layers:
                mixer = layer.mixer
                for log_a in (mixer.A_log, mixer.A_b_log):
                    log_a.add_(0.5 * torch.randn_like(log_a))
                for skip in (mixer.D, mixer.D_b):
                    skip.add_(0.5 * torch.randn_like(skip))
                for proj in (mixer.dt_proj, mixer.dt_proj_b):
                    low, high = torch.log(torch.tensor(0.01)), torch.log(torch.tensor(0.5))
                    dt = torch.exp(low + (high - low) * torch.rand_like(proj.bias))
                    proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vim-small")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cap", type=float, default=10.0, help="seconds for the authors' loop before extrapolating")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "vim.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = random_vim(args.model)
    adapter = VimAdapter(model)
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    config = model.config

    def forward() -> None:
        with torch.no_grad():
            model(images)

    def forward_backward() -> None:
        record = []
        for p in model.parameters():
            p.requires_grad_(False)
        tokens = model.embed(images).detach().requires_grad_(True)
        logits = model.forward_tokens(tokens, record=record)
        torch.autograd.grad(logits[0, 0], [layer.residual for layer in record])
        for p in model.parameters():
            p.requires_grad_(True)

    def trace() -> None:
        adapter.trace(images)

    def trace_and_methods() -> None:
        traced = adapter.trace(images)
        rollout(traced.attentions)
        rollout(network_diffusion(traced.attentions[:, :, 0], alpha=0.9)[:, :, None])
        mamba_attr(traced.extras["hidden_attention"], traced.extras["residual_grad"])

    record = []
    with torch.no_grad():
        model.forward_hidden(model.embed(images), record=record)

    def hidden_attention_only() -> None:
        with torch.no_grad():
            for layer in record:
                _layer_attention(layer)
                readout_rows(layer, position=config.cls_position)

    results = {
        "model": args.model, "tokens": config.seq_len, "layers": config.depth, "scan_channels": config.d_inner,
        "states": config.d_state, "batch": 1, "threads": args.threads, "repeats": args.repeats,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }
    results.update(best_interleaved({"floor_forward_s": forward, "forward_backward_s": forward_backward,
                                     "hidden_attention_all_layers_s": hidden_attention_only, "trace_s": trace,
                                     "trace_and_methods_s": trace_and_methods}, args.repeats))
    results["trace_over_floor"] = results["trace_s"] / results["floor_forward_s"]
    results["trace_and_methods_over_floor"] = results["trace_and_methods_s"] / results["floor_forward_s"]

    scan = record[0].forward
    seconds, fraction = authors_loop(scan.delta, scan.A, scan.B, scan.C, args.cap)
    per_layer_direction = seconds / fraction
    results["authors_loop_one_layer_direction_s"] = per_layer_direction
    results["authors_loop_fraction_run"] = fraction
    results["authors_loop_all_layers_s_extrapolated"] = per_layer_direction * 2 * config.depth
    results["authors_over_attnlens_hidden_attention"] = (
        results["authors_loop_all_layers_s_extrapolated"] / results["hidden_attention_all_layers_s"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    for key, value in results.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
