"""Vision Mamba (Vim) in plain PyTorch, with the official state-dict names and shapes.

Zhu et al. 2024, "Vision Mamba: Efficient Visual Representation Learning with Bidirectional State Space
Model" (ICML, arXiv:2401.09417); hidden attention as in Ali, Zimerman & Wolf 2025 (ACL).

The model reads top to bottom as the official ``VisionMamba`` (hustvl/Vim, AmeenAli/HiddenMambaAttn):
a strided ``Conv2d`` patch embedding (tokens in row-major grid order), the class token inserted at
``M // 2`` (M patches), an absolute position embedding, ``depth`` blocks, a final RMSNorm and a linear
head on the class token. A block keeps the residual stream r in float32: ``r = r + h`` (block 0:
``r = tokens``), ``h = Mixer(RMSNorm(r))``. The mixer is bidirectional ("bimamba v2"): a shared
``in_proj`` gives ``[x | z]``; a forward branch (``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``)
scans x in token order, a backward branch (``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b_log``,
``D_b``) scans the flipped sequence; each gives ``(scan(u) + D·u) · SiLU(z)`` and the shared ``out_proj``
takes their mean (``if_devide_out``), the backward one flipped back to token order.

The selective scan ``h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, y_t = <C_t, h_t>`` runs as a recurrence
over the tokens (one fused multiply-add per token on the `(B, E, N)` state, all exponentials computed
at once) inside a custom autograd function whose backward is the reverse recurrence (the states are
recomputed, not stored: memory O(B·E·n) per layer). It is exact; at n = 197 it is much cheaper than
materialising the per-channel hidden attention (E·n²·N). On CUDA with ``mamba_ssm`` importable its
fused kernel is used instead. ``forward_hidden(..., record=[])`` records per layer and direction
what the scan saw (:class:`ScanTensors`), so hidden attention needs no second forward pass.

Loading: :func:`load_vim_checkpoint` (official ``.pth`` files: ``torch.load(weights_only=True)``, the
weights under ``"model"``; bare state dicts; ``.safetensors``), :func:`load_vim_folder` /
:func:`save_vim_folder` (``config.json`` with the constructor arguments + ``model.safetensors``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlens._checks import ArgumentError

try:  # optional fused CUDA kernel; plain PyTorch otherwise
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_selective_scan
except Exception:  # noqa: BLE001 - not installed, or installed without a usable CUDA build
    _mamba_selective_scan = None

# --- configuration ------------------------------------------------------------------------------

# Constructor arguments that only matter for initialisation, rotary embeddings or the device: accepted, ignored.
_IGNORED_ARGS = ("initializer_cfg", "device", "dtype", "ft_seq_len", "pt_hw_seq_len", "final_pool_type",
                 "fused_add_norm", "residual_in_fp32")
# Constructor arguments that must have one value (the architecture attnlens implements).
_FIXED_ARGS = {"rms_norm": (True, "LayerNorm blocks are not supported"),
               "if_rope": (False, "rotary position embeddings are not supported"),
               "if_rope_residual": (False, "rotary position embeddings are not supported"),
               "if_bidirectional": (False, "the two-stack bidirectional variant is not supported"),
               "if_bimamba": (False, "bimamba v1 is not supported"),
               "bimamba_type": ("v2", "only bimamba v2 is supported"),
               "if_abs_pos_embed": (True, "models without an absolute position embedding are not supported"),
               "if_cls_token": (True, "models without a class token are not supported"),
               "use_double_cls_token": (False, "two class tokens are not supported"),
               "init_layer_scale": (None, "layer scale is not supported")}
_SSM_KEYS = ("d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor",
             "conv_bias", "bias", "use_fast_path")


@dataclass(frozen=True)
class VimConfig:
    """The architecture of a Vision Mamba model (the ``VisionMamba`` constructor arguments that matter).

    Zhu et al. 2024, "Vision Mamba" (ICML).

    Attributes:
        img_size: input height and width in pixels (square images).
        patch_size: side of the patch-embedding convolution's kernel.
        stride: stride of the patch embedding (16, or 8 for the overlapping "stride8" models).
        depth: number of blocks.
        embed_dim: D, the width of the residual stream.
        channels: input image channels.
        num_classes: C, classifier classes.
        d_state: N, SSM states per channel.
        d_conv: kernel of the causal depthwise convolution.
        expand: E = expand · D scan channels.
        dt_rank: R, rank of the Δ projection; None means ``ceil(D / 16)``.
        norm_epsilon: RMSNorm epsilon.
        use_middle_cls_token: the class token at ``M // 2`` (True, the official models) or first.
        divide_out: halve the sum of the two directions (``if_devide_out``).
        drop_rate: dropout after the position embedding (training only).
        drop_path_rate: stochastic depth, linearly increasing over the blocks (training only).

    Example:
        >>> VIM_CONFIGS["vim-small"].seq_len, VIM_CONFIGS["vim-small"].cls_position
        (197, 98)
    """

    img_size: int = 224
    patch_size: int = 16
    stride: int = 16
    depth: int = 24
    embed_dim: int = 192
    channels: int = 3
    num_classes: int = 1000
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    norm_epsilon: float = 1e-5
    use_middle_cls_token: bool = True
    divide_out: bool = True
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "stride", "depth", "embed_dim", "channels", "num_classes", "d_state",
                     "d_conv", "expand"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected `{name}` to be a positive integer, but got {value!r}.")
        if self.patch_size > self.img_size:
            raise ValueError(f"Expected `patch_size` to be at most `img_size` = {self.img_size}, but got "
                             f"{self.patch_size}.")
        if self.dt_rank is None:
            object.__setattr__(self, "dt_rank", math.ceil(self.embed_dim / 16))
        elif isinstance(self.dt_rank, bool) or not isinstance(self.dt_rank, int) or self.dt_rank < 1:
            raise ValueError(f"Expected `dt_rank` to be a positive integer or None, but got {self.dt_rank!r}.")

    @property
    def d_inner(self) -> int:
        """E, the scan channels (``expand · embed_dim``)."""
        return self.expand * self.embed_dim

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the patch grid."""
        side = (self.img_size - self.patch_size) // self.stride + 1
        return side, side

    @property
    def num_patches(self) -> int:
        """M, the number of patches."""
        return self.grid[0] * self.grid[1]

    @property
    def seq_len(self) -> int:
        """n = M + 1 tokens."""
        return self.num_patches + 1

    @property
    def cls_position(self) -> int:
        """Token index of the class token: ``M // 2`` (middle) or 0."""
        return self.num_patches // 2 if self.use_middle_cls_token else 0

    @classmethod
    def from_constructor_args(cls, args: Mapping[str, Any]) -> VimConfig:
        """The config of ``VisionMamba(**args)`` (hustvl/Vim or HiddenMambaAttn constructor arguments).

        Zhu et al. 2024, "Vision Mamba".

        Args:
            args: constructor arguments, e.g. the ``effective_constructor_args`` of an official model
                (``if_devide_out`` and ``if_divide_out`` both accepted; an ``ssm_cfg`` dict may set
                d_state, d_conv, expand, dt_rank).

        Raises:
            ValueError: naming the first argument whose value attnlens does not support (rotary
                embeddings, bimamba other than v2, LayerNorm, ...) or that it does not know.

        Example:
            >>> VimConfig.from_constructor_args({"embed_dim": 384, "depth": 24}).d_inner
            768
        """
        if not isinstance(args, Mapping):
            raise ValueError(f"Expected `args` to be a mapping of constructor arguments, but got "
                             f"{type(args).__name__}.")
        values: dict[str, Any] = {}
        for key, value in args.items():
            if key in _IGNORED_ARGS or key.startswith("_"):
                continue
            if key in _FIXED_ARGS:
                expected, why = _FIXED_ARGS[key]
                if value != expected or type(value) is not type(expected):
                    raise ValueError(f"Expected `{key}` to be {expected!r} ({why}), but got {value!r}.")
            elif key == "flip_img_sequences_ratio":
                if not isinstance(value, (int, float)) or value > 0:
                    raise ValueError(f"Expected `flip_img_sequences_ratio` to be at most 0 (random sequence flips "
                                     f"are not supported), but got {value!r}.")
            elif key in ("if_devide_out", "if_divide_out"):
                values["divide_out"] = _check_flag(value, key)
            elif key == "use_middle_cls_token":
                values[key] = _check_flag(value, key)
            elif key == "ssm_cfg":
                values.update(_ssm_values(value))
            elif key in {f.name for f in dataclasses.fields(cls)} and key != "divide_out":
                values[key] = value
            else:
                raise ValueError(f"Expected `{key}` to be a VisionMamba constructor argument, but it is unknown.")
        if values.get("dt_rank") == "auto":
            values["dt_rank"] = None
        return cls(**values)

    def constructor_args(self) -> dict[str, Any]:
        """Constructor arguments (official names) that rebuild this model; what ``config.json`` holds."""
        ssm = {"d_state": self.d_state, "d_conv": self.d_conv, "expand": self.expand, "dt_rank": self.dt_rank}
        return {"img_size": self.img_size, "patch_size": self.patch_size, "stride": self.stride, "depth": self.depth,
                "embed_dim": self.embed_dim, "channels": self.channels, "num_classes": self.num_classes,
                "ssm_cfg": ssm, "drop_rate": self.drop_rate, "drop_path_rate": self.drop_path_rate,
                "norm_epsilon": self.norm_epsilon, "rms_norm": True, "residual_in_fp32": True,
                "fused_add_norm": True, "final_pool_type": "mean", "if_abs_pos_embed": True, "if_rope": False,
                "if_rope_residual": False, "bimamba_type": "v2", "if_cls_token": True,
                "if_devide_out": self.divide_out, "use_middle_cls_token": self.use_middle_cls_token}


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"Expected `{name}` to be True or False, but got {value!r}.")
    return value


def _ssm_values(ssm_cfg: object) -> dict[str, Any]:
    if ssm_cfg is None:
        return {}
    if not isinstance(ssm_cfg, Mapping):
        raise ValueError(f"Expected `ssm_cfg` to be None or a mapping, but got {type(ssm_cfg).__name__}.")
    out = {}
    for key, value in ssm_cfg.items():
        if key not in _SSM_KEYS:
            raise ValueError(f"Expected `ssm_cfg.{key}` to be a Mamba mixer argument, but it is unknown.")
        if key == "conv_bias" and value is not True:
            raise ValueError(f"Expected `ssm_cfg.conv_bias` to be True (the official models), but got {value!r}.")
        if key == "bias" and value is not False:
            raise ValueError(f"Expected `ssm_cfg.bias` to be False (the official models), but got {value!r}.")
        if key in ("d_state", "d_conv", "expand", "dt_rank"):
            out[key] = value
    return out


def _official(embed_dim: int, stride: int) -> VimConfig:
    return VimConfig(embed_dim=embed_dim, stride=stride, depth=24, img_size=224, patch_size=16, num_classes=1000,
                     drop_path_rate=0.1)


#: The four official ImageNet configurations (Vim-Ti, Vim-S; stride 16 and the fine-tuned stride-8 "+" models).
VIM_CONFIGS: dict[str, VimConfig] = {
    "vim-tiny": _official(192, 16),
    "vim-small": _official(384, 16),
    "vim-tiny-stride8": _official(192, 8),
    "vim-small-stride8": _official(384, 8),
}


def vim_config(name_or_config: str | VimConfig) -> VimConfig:
    """A `VimConfig` given as itself or by name (one of :data:`VIM_CONFIGS`).

    Raises:
        ValueError: on an unknown name, listing the valid ones.
    """
    if isinstance(name_or_config, VimConfig):
        return name_or_config
    if name_or_config not in VIM_CONFIGS:
        raise ValueError(f"Expected `config` to be one of {', '.join(VIM_CONFIGS)} or a VimConfig, but got "
                         f"{name_or_config!r}.")
    return VIM_CONFIGS[name_or_config]


# --- the selective scan -------------------------------------------------------------------------


def _tokens_first(x: Tensor) -> Tensor:
    """`(B, K, n)` → contiguous `(n, B, K)`: every big scan tensor is then contiguous, one token per slice."""
    return x.permute(2, 0, 1).contiguous()


def _scan_states(u: Tensor, delta: Tensor, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    """Token-first `u, delta (n, B, E)`, `B (n, B, N)` → states `H (n, B, E, N)` and decays `exp(Δ A) (n, B, E, N)`
    of ``h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t``."""
    decay = torch.exp(delta[..., None] * A)
    states = (delta * u)[..., None] * B[:, :, None, :]
    for t in range(1, states.shape[0]):
        states[t].addcmul_(decay[t], states[t - 1])
    return states, decay


class _SelectiveScan(torch.autograd.Function):
    """``y = scan(u, Δ, A, B, C)`` (no D, no gate), backward by the reverse recurrence with recomputed states."""

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:  # noqa: D102
        u_t, delta_t, B_t, C_t = (_tokens_first(x) for x in (u, delta, B, C))
        states, _ = _scan_states(u_t, delta_t, A, B_t)
        ctx.save_for_backward(u_t, delta_t, A, B_t, C_t)
        return torch.matmul(states, C_t[..., None])[..., 0].permute(1, 2, 0)  # (n, b, E) → (b, E, n)

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # noqa: D102
        u_t, delta_t, A, B_t, C_t = ctx.saved_tensors
        states, decay = _scan_states(u_t, delta_t, A, B_t)
        grad_t = _tokens_first(grad_y)  # (n, b, E)
        # G_t = ∂/∂h_t = g_t C_t + exp(Δ_{t+1} A) G_{t+1}
        grad_states = grad_t[..., None] * C_t[:, :, None, :]
        for t in range(grad_states.shape[0] - 2, -1, -1):
            grad_states[t].addcmul_(decay[t + 1], grad_states[t + 1])
        need_u, need_delta, need_A, need_B, need_C = ctx.needs_input_grad
        grad_u = grad_delta = grad_A = grad_B = grad_C = None
        if need_C:  # Σ_e g_e h_{e,s}
            grad_C = torch.matmul(grad_t[:, :, None, :], states)[:, :, 0].permute(1, 2, 0)
        if need_B:  # Σ_e G_{e,s} Δ_e u_e
            grad_B = torch.matmul((delta_t * u_t)[:, :, None, :], grad_states)[:, :, 0].permute(1, 2, 0)
        if need_u or need_delta:
            grad_du = torch.matmul(grad_states, B_t[..., None])[..., 0]  # ∂/∂(Δ u), (n, b, E)
            if need_u:
                grad_u = (grad_du * delta_t).permute(1, 2, 0)
        if need_delta or need_A:
            # ∂/∂ exp(Δ_t A) = G_t h_{t-1} (t ≥ 1), times exp(Δ_t A) for the exponent Δ_t A
            exponent_grad = grad_states[1:].mul_(states[:-1]).mul_(decay[1:])
            if need_delta:
                grad_delta = grad_du * u_t
                grad_delta[1:] += (exponent_grad * A).sum(dim=-1)
                grad_delta = grad_delta.permute(1, 2, 0)
            if need_A:
                grad_A = (exponent_grad * delta_t[1:, :, :, None]).sum(dim=(0, 1))
        return grad_u, grad_delta, grad_A, grad_B, grad_C


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """The selective scan of one Mamba branch, without the D skip and the gate: ``y = α · u`` per channel.

    Gu & Dao 2023, "Mamba" (Algorithm 2): ``h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t``, ``y_t = <C_t, h_t>``,
    h_{-1} = 0; the same as Ali, Zimerman & Wolf 2025's hidden attention applied to u.

    Args:
        u: `(B, E, n)` scan input (after the convolution and SiLU).
        delta: `(B, E, n)` Δ after the softplus.
        A: `(E, N)` state matrix, ``-exp(A_log)``.
        B: `(B, N, n)` input matrix.
        C: `(B, N, n)` output matrix.

    Returns:
        `(B, E, n)`, differentiable with respect to every input.

    Example:
        >>> ones = torch.ones(1, 1, 2)
        >>> selective_scan(ones, ones, -torch.ones(1, 1), ones, ones)
        tensor([[[1.0000, 1.3679]]])
    """
    if _mamba_selective_scan is not None and u.is_cuda:
        return _mamba_selective_scan(u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(),
                                     C.contiguous())
    return _SelectiveScan.apply(u, delta, A, B, C)


# --- modules ------------------------------------------------------------------------------------


class ScanTensors(NamedTuple):
    """What one direction of a Vim mixer's scan saw, in that direction's scan order.

    For the backward direction scan position s is token n - 1 - s. Every tensor is in the autograd
    graph of the forward pass that recorded it.

    Attributes:
        u: `(B, E, n)` scan input (after the causal conv and SiLU).
        delta: `(B, E, n)` Δ after the softplus.
        A: `(E, N)` ``-exp(A_log)`` (``A_b_log`` for the backward direction).
        B: `(B, N, n)` input matrix.
        C: `(B, N, n)` output matrix.
        D: `(E,)` skip weights.
        z: `(B, E, n)` gate input: the direction's output is ``(α·u + D·u) · SiLU(z)``.
    """

    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor
    z: Tensor


class VimLayerRecord(NamedTuple):
    """What one Vim block did (``forward_hidden(..., record=[])``).

    Attributes:
        residual: `(B, n, D)` float32 residual stream the block normalises (block 0: the embedded tokens).
        mixer_out: `(B, n, D)` the mixer's output h.
        forward: the forward direction's :class:`ScanTensors` (token order).
        backward: the backward direction's :class:`ScanTensors` (flipped order).
    """

    residual: Tensor
    mixer_out: Tensor
    forward: ScanTensors
    backward: ScanTensors


class RMSNorm(nn.Module):
    """``x · rsqrt(mean(x²) + eps) · w`` in float32 (Zhang & Sennrich 2019), weight only."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight.float()


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): zero a sample's branch with probability p in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class PatchEmbed(nn.Module):
    """Strided convolution from `(B, C, H, W)` pixels to `(B, M, D)` patch tokens in row-major grid order."""

    def __init__(self, config: VimConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(config.channels, config.embed_dim, config.patch_size, stride=config.stride)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class BidirectionalMamba(nn.Module):
    """The bimamba-v2 mixer: shared in/out projections, a forward and a backward selective scan.

    Zhu et al. 2024, "Vision Mamba" (Algorithm 1).
    """

    def __init__(self, config: VimConfig) -> None:
        super().__init__()
        inner, states, rank = config.d_inner, config.d_state, config.dt_rank
        self.d_conv, self.d_state, self.dt_rank, self.divide_out = config.d_conv, states, rank, config.divide_out
        a_log = torch.log(torch.arange(1, states + 1, dtype=torch.float32)).repeat(inner, 1)
        self.A_log = nn.Parameter(a_log)
        self.D = nn.Parameter(torch.ones(inner))
        self.A_b_log = nn.Parameter(a_log.clone())
        self.D_b = nn.Parameter(torch.ones(inner))
        self.in_proj = nn.Linear(config.embed_dim, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, config.d_conv, groups=inner, padding=config.d_conv - 1)
        self.x_proj = nn.Linear(inner, rank + 2 * states, bias=False)
        self.dt_proj = nn.Linear(rank, inner)
        self.conv1d_b = nn.Conv1d(inner, inner, config.d_conv, groups=inner, padding=config.d_conv - 1)
        self.x_proj_b = nn.Linear(inner, rank + 2 * states, bias=False)
        self.dt_proj_b = nn.Linear(rank, inner)
        self.out_proj = nn.Linear(inner, config.embed_dim, bias=False)
        self._init_dt(config)

    def _init_dt(self, config: VimConfig, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> None:
        """Mamba's Δ initialisation: softplus(bias) log-uniform in [dt_min, dt_max]; weights ±rank^-½."""
        with torch.no_grad():
            for proj in (self.dt_proj, self.dt_proj_b):
                nn.init.uniform_(proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
                dt = torch.exp(torch.rand(proj.bias.shape) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
                dt = dt.clamp(min=floor)
                proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
            self.out_proj.weight /= math.sqrt(config.depth)

    def _direction(self, x: Tensor, z: Tensor, backward: bool) -> tuple[Tensor, ScanTensors]:
        """One direction on `x, z (B, E, n)` in its scan order: `(B, E, n)` gated output and its scan tensors."""
        suffix = "_b" if backward else ""
        conv, x_proj, dt_proj = (getattr(self, name + suffix) for name in ("conv1d", "x_proj", "dt_proj"))
        A_log, D = (self.A_b_log, self.D_b) if backward else (self.A_log, self.D)
        n = x.shape[-1]
        u = F.silu(F.conv1d(x, conv.weight, conv.bias, padding=self.d_conv - 1, groups=x.shape[1])[..., :n])
        dt, B, C = torch.split(F.linear(u.transpose(1, 2), x_proj.weight),
                               [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(F.linear(dt, dt_proj.weight, dt_proj.bias).float()).transpose(1, 2)
        A = -torch.exp(A_log.float())
        B, C = B.transpose(1, 2).float(), C.transpose(1, 2).float()
        y = selective_scan(u.float(), delta, A, B, C) + D.float()[:, None] * u.float()
        return (y * F.silu(z.float())).to(x.dtype), ScanTensors(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z)

    def forward(self, hidden: Tensor, record: list[ScanTensors] | None = None) -> Tensor:
        """`(B, n, D)` normalised tokens → `(B, n, D)` mixer output; appends both directions' scans to `record`."""
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, E, n) each
        out_forward, scan_forward = self._direction(x, z, backward=False)
        out_backward, scan_backward = self._direction(x.flip(-1), z.flip(-1), backward=True)
        if record is not None:
            record.extend((scan_forward, scan_backward))
        total = out_forward + out_backward.flip(-1)
        if self.divide_out:
            total = total / 2
        return self.out_proj(total.transpose(1, 2))


class VimBlock(nn.Module):
    """``r = r + DropPath(h_prev)`` (float32), ``h = Mixer(RMSNorm(r))``; returns (h, r)."""

    def __init__(self, config: VimConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        self.mixer = BidirectionalMamba(config)
        self.norm = RMSNorm(config.embed_dim, config.norm_epsilon)
        self.drop_path = DropPath(drop_path)

    def forward(self, hidden: Tensor, residual: Tensor | None,
                record: list[ScanTensors] | None = None) -> tuple[Tensor, Tensor]:
        residual = hidden.float() if residual is None else residual + self.drop_path(hidden).float()
        return self.mixer(self.norm(residual).to(self.norm.weight.dtype), record), residual


def _trunc_normal_(tensor: Tensor, std: float = 0.02) -> None:
    nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


class VisionMamba(nn.Module):
    """Vision Mamba with the official parameter names and shapes (hustvl/Vim ``VisionMamba``).

    Zhu et al. 2024, "Vision Mamba" (ICML).

    Args:
        config: a :class:`VimConfig` or one of the names of :data:`VIM_CONFIGS`.

    Example:
        >>> model = VisionMamba(VimConfig(img_size=8, patch_size=4, stride=4, depth=1, embed_dim=8, num_classes=3))
        >>> model(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(self, config: VimConfig | str) -> None:
        super().__init__()
        config = vim_config(config)
        self.config = config
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.seq_len, config.embed_dim))
        self.patch_embed = PatchEmbed(config)
        self.head = nn.Linear(config.embed_dim, config.num_classes)
        steps = max(config.depth - 1, 1)  # block i gets rates[i]: 0, then linspace(0, drop_path_rate, depth)
        rates = [0.0] + [config.drop_path_rate * i / steps for i in range(config.depth)]
        self.layers = nn.ModuleList(VimBlock(config, rates[i]) for i in range(config.depth))
        self.norm_f = RMSNorm(config.embed_dim, config.norm_epsilon)
        self.pos_drop = nn.Dropout(config.drop_rate)
        self.drop_path = DropPath(config.drop_path_rate)
        with torch.no_grad():
            _trunc_normal_(self.cls_token)
            _trunc_normal_(self.pos_embed)
            _trunc_normal_(self.head.weight)
            self.head.bias.zero_()

    # --- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, config: VimConfig | str) -> VisionMamba:
        """Build `config` and load an official checkpoint into it; see :func:`load_vim_checkpoint`."""
        return load_vim_checkpoint(path, config)

    # --- running ----------------------------------------------------------------------------------
    def embed(self, images: Tensor) -> Tensor:
        """`(B, 3, H, W)` images → `(B, n, D)` tokens entering block 0 (class token inserted, position embedding
        added).

        Raises:
            ValueError: on images that are not `(B, channels, img_size, img_size)`.
        """
        config = self.config
        expected = (config.channels, config.img_size, config.img_size)
        if not isinstance(images, Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"Expected `images` to have shape (B, {', '.join(map(str, expected))}), but got {got}.")
        patches = self.patch_embed(images)
        position = config.cls_position
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        tokens = torch.cat([patches[:, :position], cls, patches[:, position:]], dim=1)
        return self.pos_drop(tokens + self.pos_embed)

    def forward_hidden(self, tokens: Tensor, *, record: list[VimLayerRecord] | None = None) -> Tensor:
        """`(B, n, D)` embedded tokens (any n: the model has no fixed length past the embedding) → `(B, n, D)`
        final-normed float32 hidden states; appends a :class:`VimLayerRecord` per block to `record`."""
        hidden, residual = tokens, None
        for layer in self.layers:
            scans: list[ScanTensors] | None = [] if record is not None else None
            hidden, residual = layer(hidden, residual, scans)
            if record is not None:
                record.append(VimLayerRecord(residual, hidden, scans[0], scans[1]))
        return self.norm_f(residual + self.drop_path(hidden).float())

    def forward_tokens(self, tokens: Tensor, *, readout: int | Tensor | None = None,
                       record: list[VimLayerRecord] | None = None) -> Tensor:
        """`(B, n, D)` embedded tokens → `(B, C)` logits read at `readout` (an index, or `(B,)` per example;
        default the class position)."""
        hidden = self.forward_hidden(tokens, record=record)
        if readout is None:
            readout = self.config.cls_position
        if isinstance(readout, int):
            features = hidden[:, readout]
        else:
            features = hidden[torch.arange(hidden.shape[0], device=hidden.device), readout.to(hidden.device)]
        return self.head(features.to(self.head.weight.dtype))

    def forward(self, images: Tensor, *, return_features: bool = False) -> Tensor:
        """`(B, 3, H, W)` → `(B, C)` logits, or `(B, D)` class-token features after the final norm."""
        hidden = self.forward_hidden(self.embed(images))
        features = hidden[:, self.config.cls_position]
        return features if return_features else self.head(features.to(self.head.weight.dtype))


# --- checkpoints and folders -------------------------------------------------------------------

_SHOWN = 5


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", … and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def check_vim_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], *, name: str = "checkpoint",
                         what: str = "the Vim model") -> None:
    """Refuse a state dict that does not fit `model`, in one line naming missing keys, unexpected keys
    and shape mismatches (each list truncated after 5).

    Raises:
        ArgumentError: (a ValueError, argument `name`) when anything does not match.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
                if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)]
    if missing or unexpected or reshaped:
        raise ArgumentError(
            f"Expected `{name}` to hold the state dict of {what} ({len(expected)} tensors), but got "
            f"{len(missing)} missing key(s) [{_listed(missing)}], {len(unexpected)} unexpected key(s) "
            f"[{_listed(unexpected)}], {len(reshaped)} shape mismatch(es) (checkpoint vs model) "
            f"[{_listed(reshaped)}].", name)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a ``.pth``/``.pt`` (``torch.load(weights_only=True)``; the ``"model"`` entry of a
    training checkpoint, or a bare state dict) or ``.safetensors`` file.

    Raises:
        ArgumentError: (argument `checkpoint`) on a missing or unreadable file, or one holding no state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ArgumentError(f"Expected `checkpoint` to be a checkpoint file, but {path} does not exist.", "checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415

            loaded: object = load_file(str(path))
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and format errors of every kind
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArgumentError(f"Expected `checkpoint` to be a readable checkpoint, but {path} could not be loaded "
                            f"({first[:200]}).", "checkpoint") from err
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ArgumentError(f"Expected `checkpoint` to hold a state dict (or a dict with a 'model' state dict), but "
                            f"{path} holds {type(loaded).__name__} without one.", "checkpoint")
    return dict(loaded)


def load_vim_checkpoint(path: str | Path, config: VimConfig | str) -> VisionMamba:
    """A :class:`VisionMamba` of `config` with the weights of a checkpoint file, in eval mode.

    Zhu et al. 2024, "Vision Mamba" (official checkpoints such as ``vim_s_midclstok_80p5acc.pth``).

    Args:
        path: ``.pth`` (a dict whose ``"model"`` entry is the state dict, or a bare state dict) or
            ``.safetensors``.
        config: a :class:`VimConfig` or a name of :data:`VIM_CONFIGS`.

    Raises:
        ArgumentError: on a missing or unreadable file, or a state dict that does not fit (one line
            naming missing keys, unexpected keys and shape mismatches).
    """
    config = vim_config(config)
    state_dict = read_state_dict(path)
    with torch.device("meta"):
        skeleton = VisionMamba(config)
    what = f"a Vim with embed_dim {config.embed_dim}, depth {config.depth} and {config.seq_len} tokens"
    check_vim_state_dict(skeleton, state_dict, what=what)
    model = VisionMamba(config)
    model.load_state_dict({key: value.float() for key, value in state_dict.items()}, strict=True)
    return model.eval()


def read_vim_folder(folder: str | Path) -> tuple[VimConfig, Path, dict[str, Any]]:
    """Config, weights file and extra ``config.json`` entries (``id2label``) of a Vim folder.

    Raises:
        ArgumentError: (argument `model`) on a missing folder or config, an unsupported config, or a
            folder without exactly one weights file.
    """
    folder = Path(folder).expanduser()
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ArgumentError(f"Expected `model` to be a Vim folder with a config.json, but {folder} has none.", "model")
    try:
        args = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArgumentError(f"Expected `model` to have a readable JSON config.json, but {config_file} is not "
                            f"({err}).", "model") from err
    if not isinstance(args, dict):
        raise ArgumentError(f"Expected `model` config.json to hold an object, but {config_file} holds "
                            f"{type(args).__name__}.", "model")
    extras = {key: args.pop(key) for key in ("id2label", "preprocessing") if key in args}
    args = args.get("effective_constructor_args", args)
    try:
        config = VimConfig.from_constructor_args(args)
    except (ValueError, TypeError) as err:
        raise ArgumentError(f"{str(err).rstrip('.')} (in {config_file}).", "model") from err
    weights = folder / "model.safetensors"
    if not weights.is_file():
        candidates = sorted(folder.glob("*.pth")) + sorted(folder.glob("*.safetensors"))
        if len(candidates) != 1:
            raise ArgumentError(f"Expected `model` to hold model.safetensors or exactly one .pth file, but {folder} "
                                f"holds {len(candidates)}.", "model")
        weights = candidates[0]
    return config, weights, extras


def load_vim_folder(folder: str | Path) -> VisionMamba:
    """A :class:`VisionMamba` from a folder with ``config.json`` (the constructor arguments, as the
    ``effective_constructor_args`` of an official model) and ``model.safetensors`` or one ``.pth``.

    Zhu et al. 2024, "Vision Mamba".

    Raises:
        ArgumentError: on a bad folder, config or checkpoint (one line).
    """
    config, weights, _ = read_vim_folder(folder)
    return load_vim_checkpoint(weights, config)


def save_vim_folder(model: VisionMamba, folder: str | Path, *, labels: list[str] | None = None,
                    preprocessing: object | None = None) -> Path:
    """Write ``config.json`` (constructor arguments; ``id2label`` when `labels` are given; ``preprocessing``,
    the fields of an :class:`~attnlens.datasets.images.ImagePreprocessing`, when given) and
    ``model.safetensors``, which :func:`load_vim_folder` (weights) and ``load_adapter("vim=DIR")`` (all)
    read back.

    Zhu et al. 2024, "Vision Mamba".

    Returns:
        The folder.

    Raises:
        ValueError: on `labels` that do not name every class.
    """
    from safetensors.torch import save_file  # noqa: PLC0415

    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    args = model.config.constructor_args()
    if labels is not None:
        if len(labels) != model.config.num_classes:
            raise ValueError(f"Expected `labels` to hold {model.config.num_classes} names, but got {len(labels)}.")
        args["id2label"] = {str(i): str(name) for i, name in enumerate(labels)}
    if preprocessing is not None:
        args["preprocessing"] = dataclasses.asdict(preprocessing)
    save_file({key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(args, indent=1) + "\n", encoding="utf-8")
    return folder


__all__ = [
    "VIM_CONFIGS",
    "BidirectionalMamba",
    "ScanTensors",
    "VimConfig",
    "VimLayerRecord",
    "VisionMamba",
    "check_vim_state_dict",
    "load_vim_checkpoint",
    "load_vim_folder",
    "read_state_dict",
    "read_vim_folder",
    "save_vim_folder",
    "selective_scan",
    "vim_config",
]
