"""Every method on CUDA tensors: output stays on the device and equals the CPU result.

    python benchmarks/gpu_smoke.py            # needs a CUDA device; prints one line per method
"""

from __future__ import annotations

import torch

from attnlens.methods import hidden_attention, network_diffusion, raw_attention, relevance, rollout, selective_rollout
from attnlens.metrics import gini, normalized_entropy, spearman


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(0)
    attn = torch.softmax(torch.randn(4, 6, 3, 9, 9, generator=gen, dtype=torch.float64), dim=-1)
    mask = torch.arange(9)[None] < torch.tensor([9, 7, 5, 3])[:, None]
    attn = attn * mask[:, None, None, None, :]
    attn = attn / attn.sum(-1, keepdim=True)
    sal = torch.rand(4, 9, generator=gen, dtype=torch.float64)
    delta = torch.rand(2, 8, 11, generator=gen, dtype=torch.float64)
    a_mat = -torch.rand(8, 4, generator=gen, dtype=torch.float64) - 0.1
    b_mat, c_mat = torch.randn(2, 4, 11, generator=gen, dtype=torch.float64), torch.randn(2, 4, 11, generator=gen,
                                                                                            dtype=torch.float64)
    checks = {
        "raw_attention": lambda a, m, s: raw_attention(a, mask=m),
        "rollout": lambda a, m, s: rollout(a, mask=m),
        "selective_rollout": lambda a, m, s: selective_rollout(a, threshold=0.3, mask=m).joint,
        "network_diffusion": lambda a, m, s: network_diffusion(a.mean(2), alpha=0.9, mask=m),
        "relevance+spearman": lambda a, m, s: spearman(relevance(rollout(a, mask=m)[:, -1], mask=m), s, mask=m),
        "clarity": lambda a, m, s: torch.stack([normalized_entropy(relevance(rollout(a, mask=m)[:, -1], mask=m), mask=m),
                                                gini(relevance(rollout(a, mask=m)[:, -1], mask=m), mask=m)]),
    }
    try:
        from attnlens.methods.attention_flow import attention_flow

        checks["attention_flow"] = lambda a, m, s: attention_flow(a, mask=m, layer=None)
    except ImportError:
        pass
    for name, fn in checks.items():
        cpu = fn(attn, mask, sal)
        dev = fn(attn.to(device), mask.to(device), sal.to(device))
        ok = dev.device.type == torch.device(device).type and torch.allclose(dev.cpu(), cpu, atol=1e-8, equal_nan=True)
        print(f"{name:22s} device={dev.device} matches_cpu={ok}")
    cpu = hidden_attention(delta, a_mat, b_mat, c_mat)
    dev = hidden_attention(delta.to(device), a_mat.to(device), b_mat.to(device), c_mat.to(device))
    print(f"{'hidden_attention':22s} device={dev.device} matches_cpu={torch.allclose(dev.cpu(), cpu, atol=1e-10)}")


if __name__ == "__main__":
    main()
