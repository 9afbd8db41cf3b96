"""Adapter for Hugging Face Mamba language models (`MambaModel`, `MambaForCausalLM`).

A Mamba layer has no softmax attention, but its selective scan is an attention layer in
disguise (Ali, Zimerman & Wolf, "The Hidden Attention of Mamba Models", ACL 2025): per channel,
``y = α · u + D · u`` with α the hidden attention of :func:`attnlens.methods.hidden_attention`.
This adapter captures, per layer, the scan input u (the mixer's `x_proj` input, after the causal
conv and SiLU) and Δ, B, C (from the `x_proj` output; Δ = softplus(dt_proj.weight · dt +
dt_proj.bias), computed here because `dt_proj` is used by weight and its hook never fires), then
builds the hidden attention of every layer.

Normalisation. Hidden attention is signed and its rows do not sum to 1. `Trace.attentions`
holds, per layer, ``norm_rows(|mean_d α_d|)`` over valid tokens (absolute value of the channel
mean, each row divided by its sum, as Ali et al. do before rollout) as `(B, L, 1, n, n)`, so
rollout, selective rollout, flow, diffusion and every view work unchanged. The raw signed channel
mean is kept in ``trace.extras["hidden_attention"]`` `(B, L, n, n)`.

Gradients (for Mamba-Attr). ``trace.extras["hidden_attention_grad"]`` `(B, L, n, n)` is the
gradient of the target logit with respect to the layer's hidden attention with its channels
tied, ``Σ_d ∂logit/∂α_d[r, c] = Σ_d g_d[r] · u_d[c]`` with g the gradient at the scan output
(before the gate), lower-triangular.

Padding. Mamba has no attention mask, so the adapter never pads inside the model: texts are run
in groups of equal token length, and the results are left-padded into one batch (padding first,
so the last position is every example's last token). Each example gets exactly what it gets alone.

Target. By default the model's next-token prediction at the last position (argmax of its
logits); or a given token id per example.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlens._checks import _check_choice
from attnlens.methods._common import _apply_mask, _normalize_rows
from attnlens.methods.hidden_attention import hidden_attention
from attnlens.models._hooks import eval_mode, frozen_parameters
from attnlens.models._registry import register_adapter
from attnlens.models._saliency import SALIENCY_REDUCTIONS, reduce_saliency
from attnlens.trace import Trace

_SALIENCIES = (*SALIENCY_REDUCTIONS, "none")
_CHANNEL_MODES = ("mean", "abs_mean")


class ScanInputs(NamedTuple):
    """What one Mamba layer's selective scan saw, for one batch.

    Attributes:
        u: `(B, D, n)` scan input (after conv and SiLU).
        delta: `(B, D, n)` Δ after the softplus.
        A: `(D, N)` state matrix ``-exp(A_log)``.
        B: `(B, N, n)` input matrix.
        C: `(B, N, n)` output matrix.
        D: `(D,)` skip weights.
        gate: `(B, D, n)` gate input z (the output is ``(α·u + D·u) · silu(z)``).
        scan_output: `(B, n, D)` the gated scan output entering `out_proj` (in the autograd graph).
    """

    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor
    gate: Tensor
    scan_output: Tensor


def _mixers(model: torch.nn.Module) -> list[torch.nn.Module]:
    backbone = getattr(model, "backbone", model)
    layers = getattr(backbone, "layers", None)
    if layers is None:
        raise ValueError(f"Expected a Hugging Face Mamba model with `layers`, but got {type(model).__name__}.")
    return [layer.mixer for layer in layers]


@contextlib.contextmanager
def _capture_scans(model: torch.nn.Module) -> Iterator[list[dict[str, Tensor]]]:
    """Forward hooks on every mixer's `in_proj`, `x_proj` and `out_proj`; removed in `finally`."""
    mixers = _mixers(model)
    records: list[dict[str, Tensor]] = [{} for _ in mixers]
    handles = []

    def hook(record: dict[str, Tensor], kind: str):
        def save(module, inputs, output):
            if kind == "in_proj":
                record["gate"] = output.chunk(2, dim=-1)[1]
            elif kind == "x_proj":
                record["u"], record["x_proj"] = inputs[0], output
            else:
                record["scan_output"] = inputs[0]

        return save

    try:
        for mixer, record in zip(mixers, records):
            for kind in ("in_proj", "x_proj", "out_proj"):
                handles.append(getattr(mixer, kind).register_forward_hook(hook(record, kind)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _scan_inputs(mixer: torch.nn.Module, record: dict[str, Tensor]) -> ScanInputs:
    rank, states = mixer.time_step_rank, mixer.ssm_state_size
    time_step, B, C = torch.split(record["x_proj"], [rank, states, states], dim=-1)
    raw = time_step @ mixer.dt_proj.weight.T  # (b, n, D)
    if mixer.dt_proj.bias is not None:
        raw = raw + mixer.dt_proj.bias
    delta = F.softplus(raw.float()).transpose(1, 2)
    return ScanInputs(
        u=record["u"].transpose(1, 2),
        delta=delta,
        A=-torch.exp(mixer.A_log.float()),
        B=B.transpose(1, 2),
        C=C.transpose(1, 2),
        D=mixer.D,
        gate=record["gate"].transpose(1, 2),
        scan_output=record["scan_output"],
    )


def _to_target(target: int | Sequence[int] | Tensor | None, batch: int, vocab: int) -> Tensor | None:
    """Token ids `(batch,)` from an int, a list/tuple of ints or an integer tensor, each in [0, vocab)."""
    if target is None:
        return None
    expected = "a token id (int), a list or tuple of ids, or an integer tensor"
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"Expected `target` to be {expected}, but got a tensor of dtype {target.dtype}.")
        ids = target.detach().to("cpu", torch.long).reshape(-1)
    elif isinstance(target, (list, tuple)) or (isinstance(target, numbers.Integral) and not isinstance(target, bool)):
        items = list(target) if isinstance(target, (list, tuple)) else [target]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise TypeError(f"Expected `target` to be {expected}, but got {target!r} (holding a "
                                f"{type(item).__name__}).")
        ids = torch.tensor([int(item) for item in items], dtype=torch.long)
    else:
        hint = "; convert a token with `target_id`" if isinstance(target, str) else ""
        raise TypeError(f"Expected `target` to be {expected}, but got {type(target).__name__} {target!r}{hint}.")
    if ids.numel() == 1:
        ids = ids.expand(batch)
    if ids.shape != (batch,):
        raise ValueError(f"Expected `target` to hold one token id per text ({batch}), but got {tuple(ids.shape)}.")
    out_of_range = (ids < 0) | (ids >= vocab)
    if bool(out_of_range.any()):
        raise ValueError(f"Expected `target` to hold token ids in [0, {vocab}), but got "
                         f"{int(ids[out_of_range][0])}.")
    return ids


@register_adapter("mamba")
class MambaAdapter:
    """Hidden-attention traces of a Hugging Face Mamba language model.

    Args:
        model: a `MambaForCausalLM` (or a `MambaModel`, whose tied input embeddings then serve as
            the output head).
        tokenizer: the model's tokenizer.
        device: where the model runs.

    Example:
        >>> from transformers import MambaConfig
        >>> MambaAdapter.accepts(MambaConfig())
        True
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, device: str | torch.device = "cpu") -> None:
        _mixers(model)
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.device = torch.device(device)

    @classmethod
    def accepts(cls, config: object) -> bool:
        """Whether a Hugging Face `config` is a Mamba (v1) model."""
        return getattr(config, "model_type", None) == "mamba"

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> MambaAdapter:
        """Load a `MambaForCausalLM` and its tokenizer from a Hugging Face id or a local folder."""
        from transformers import AutoTokenizer, MambaForCausalLM

        model = MambaForCausalLM.from_pretrained(name_or_path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        return cls(model, tokenizer, device=device)

    def target_id(self, token: str) -> int:
        """The id of a target given as text; it must be exactly one token."""
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"Expected `target` to be a single token, but {token!r} is {len(ids)} tokens.")
        return int(ids[0])

    def _vocab_size(self) -> int:
        """Size of the output vocabulary (the logits' last dimension)."""
        head = getattr(self.model, "lm_head", None)
        if head is not None:
            return int(head.out_features if hasattr(head, "out_features") else head.weight.shape[0])
        return int(self.model.get_input_embeddings().weight.shape[0])

    def _logits(self, hidden: Tensor) -> Tensor:
        head = getattr(self.model, "lm_head", None)
        if head is not None:
            return head(hidden)
        return hidden @ self.model.get_input_embeddings().weight.T

    def _run_group(self, input_ids: Tensor, target: Tensor | None, saliency: str, channels: str) -> dict[str, Tensor]:
        """One forward + backward on texts of equal length (no padding)."""
        embeds = self.model.get_input_embeddings()(input_ids).detach().requires_grad_(True)
        with _capture_scans(self.model) as records:
            backbone = getattr(self.model, "backbone", self.model)
            hidden = backbone(inputs_embeds=embeds, use_cache=False).last_hidden_state
            logits = self._logits(hidden[:, -1])
        chosen = logits.argmax(dim=-1) if target is None else target.to(logits.device)
        scans = [_scan_inputs(mixer, record) for mixer, record in zip(_mixers(self.model), records)]
        score = logits.gather(1, chosen[:, None]).sum()
        grads = torch.autograd.grad(score, [embeds] + [scan.scan_output for scan in scans])
        attentions, gradients = [], []
        with torch.no_grad():
            for scan, grad_out in zip(scans, grads[1:]):
                alpha = hidden_attention(scan.delta, scan.A, scan.B.float(), scan.C.float(), channels=channels)
                attentions.append(alpha)
                grad_scan = grad_out.transpose(1, 2).float() * F.silu(scan.gate.float())  # (b, D, n)
                tied = torch.matmul(grad_scan.transpose(1, 2), scan.u.float())  # (b, n, n): Σ_d g_d[r] u_d[c]
                gradients.append(tied.tril())
        out = {
            "hidden_attention": torch.stack(attentions, dim=1),
            "hidden_attention_grad": torch.stack(gradients, dim=1),
            "logits": logits.detach(),
            "target": chosen,
        }
        if saliency != "none":
            valid = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
            out["saliency"] = reduce_saliency(grads[0], embeds.detach(), valid, how=saliency).detach()
        return out

    def scan_inputs(self, input_ids: Tensor) -> list[ScanInputs]:
        """Per layer, what each selective scan saw for `input_ids (B, n)` (one forward pass, no gradients)."""
        with torch.no_grad(), _capture_scans(self.model) as records:
            self.model(input_ids.to(self.device), use_cache=False)
        return [_scan_inputs(mixer, record) for mixer, record in zip(_mixers(self.model), records)]

    def trace(
        self,
        texts: str | Sequence[str],
        *,
        target: int | Sequence[int] | Tensor | None = None,
        saliency: str = "sum_abs",
        channels: str = "mean",
    ) -> Trace:
        """Run the model on `texts` and record hidden attention, logits, target and saliency.

        Args:
            texts: one text or a list of texts.
            target: token id(s) to explain at the last position (an int for every text, a list or
                tuple of ints, or an integer tensor, each in [0, vocabulary size)); None explains the
                argmax. Convert a target given as text with :meth:`target_id`.
            saliency: ``"sum_abs"`` (|Σ_d g|), ``"l2"`` (‖g‖₂), ``"grad_x_input"`` (|Σ_d g·e|) of the
                gradient g of the target logit w.r.t. the input embeddings e, as for text
                classifiers (:func:`attnlens.models.hf_text.reduce_saliency`), or ``"none"``.
            channels: ``"mean"`` (Ali et al.) or ``"abs_mean"`` channel reduction of α.

        Returns:
            A `Trace` with `attentions (B, L, 1, n, n)` = norm_rows(|hidden attention|), left-padded
            `mask (B, n)`, `logits (B, V)` at the last position, `target (B,)`, `saliency (B, n)`,
            `input_ids (B, n)` and extras ``hidden_attention``, ``hidden_attention_grad``.

        Raises:
            ValueError: on an empty text, an unknown option, a badly shaped target or a token id
                outside the vocabulary.
            TypeError: on a target that is not integer token ids (a float, a bool, a string).
        """
        _check_choice(saliency, "saliency", _SALIENCIES)
        _check_choice(channels, "channels", _CHANNEL_MODES)
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("Expected `texts` to hold at least one text, but got none.")
        encoded = [self.tokenizer.encode(text) for text in texts]
        for text, ids in zip(texts, encoded):
            if not ids:
                raise ValueError(f"Expected every text to give at least one token, but got none for {text!r}.")
        targets = _to_target(target, len(texts), self._vocab_size())
        batch, n = len(texts), max(len(ids) for ids in encoded)

        results: dict[int, dict[str, Tensor]] = {}
        with eval_mode(self.model), frozen_parameters(self.model):
            for length in sorted({len(ids) for ids in encoded}):
                members = [i for i, ids in enumerate(encoded) if len(ids) == length]
                input_ids = torch.tensor([encoded[i] for i in members], device=self.device)
                group_target = None if targets is None else targets[members]
                group = self._run_group(input_ids, group_target, saliency, channels)
                for row, index in enumerate(members):
                    results[index] = {key: value[row] for key, value in group.items()}

        mask = torch.zeros(batch, n, dtype=torch.bool, device=self.device)
        input_ids = torch.full((batch, n), self.tokenizer.pad_token_id or 0, dtype=torch.long, device=self.device)
        layers = results[0]["hidden_attention"].shape[0]
        raw = torch.zeros(batch, layers, n, n, device=self.device)
        grad = torch.zeros_like(raw)
        sal = torch.zeros(batch, n, device=self.device) if saliency != "none" else None
        for b, ids in enumerate(encoded):
            start = n - len(ids)
            mask[b, start:] = True
            input_ids[b, start:] = torch.tensor(ids, device=self.device)
            raw[b, :, start:, start:] = results[b]["hidden_attention"]
            grad[b, :, start:, start:] = results[b]["hidden_attention_grad"]
            if sal is not None:
                sal[b, start:] = results[b]["saliency"]
        attentions = _normalize_rows(_apply_mask(raw.abs(), mask))[:, :, None]
        return Trace(
            tokens=[[self.tokenizer.decode([i]) for i in ids] for ids in encoded],
            mask=mask,
            attentions=attentions,
            logits=torch.stack([results[b]["logits"] for b in range(batch)]),
            target=torch.stack([results[b]["target"] for b in range(batch)]),
            saliency=sal,
            input_ids=input_ids,
            extras={"hidden_attention": raw, "hidden_attention_grad": grad},
        )
