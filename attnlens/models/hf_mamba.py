"""Adapter for Hugging Face Mamba-1 and Falcon-Mamba language models (`MambaForCausalLM`,
`FalconMambaForCausalLM`, and their bare `...Model`).

A Mamba layer has no softmax attention, but its selective scan is an attention layer in
disguise (Ali, Zimerman & Wolf, "The Hidden Attention of Mamba Models", ACL 2025): per channel,
``y = α · u + D · u`` with α the hidden attention of :func:`attnlens.methods.hidden_attention`.
This adapter captures, per layer, the scan input u (the mixer's `x_proj` input, after the causal
conv and SiLU) and Δ, B, C (from the `x_proj` output; Δ = softplus(dt_proj.weight · dt +
dt_proj.bias), computed here because `dt_proj` is used by weight and its hook never fires), then
builds the hidden attention of every layer.

Two forms (``trace(..., form=...)``). ``"scan"`` (the default) is α, the scan alone (the map
from u to the scan output before the gate). ``"unified"`` (Zimerman, Ali & Wolf, "Explaining
Modern Gated-Linear RNNs via a Unified Implicit Attention Formulation", ICLR 2025) is the whole
mixer from its conv input x (the `in_proj` x half) to its gated output (what enters `out_proj`):
``Ω_d = diag(SiLU(z_d)) · (α_d + diag(D_d)) · diag(σ(v_d)) · M_conv,d`` with v = conv(x) + bias,
so the gated output is ``Ω x + β`` (β: the conv bias's share,
:func:`attnlens.methods.unified_attention.unified_attention_bias`). The capture records x, v and
the conv weight and bias for it (:class:`ScanInputs`).

Falcon-Mamba is Mamba-1 with weightless RMS norms on Δ's low-rank input, B and C inside the mixer
(`dt_layernorm`, `b_layernorm`, `c_layernorm`, after `x_proj`); the adapter applies the mixer's
own norm modules to the captured `x_proj` output, so Δ, B, C, and both forms, are exact for it.

Normalisation. Hidden attention is signed and its rows do not sum to 1. `Trace.attentions`
holds, per layer, ``norm_rows(|mean_d α_d|)`` (unified form: ``norm_rows(|mean_d Ω_d|)``) over valid
tokens (absolute value of the channel mean, each row divided by its sum, as Ali et al. do before
rollout) as `(B, L, 1, n, n)`, so rollout, selective rollout, flow, diffusion and every view work
unchanged. The raw signed channel mean is kept in ``trace.extras["hidden_attention"]`` `(B, L, n, n)`.

Gradients (for Mamba-Attr). ``trace.extras["residual_grad"]`` `(B, L, n)` is, per layer and
token, ``max_d (∂logit/∂h)⁺`` at the residual stream h entering the layer (what the authors'
released Mamba-Attr uses); ``trace.extras["hidden_attention_grad"]`` `(B, L, n, n)` is the
gradient of the target logit with respect to the layer's hidden attention with its channels
tied, ``Σ_d ∂logit/∂α_d[r, c] = Σ_d g_d[r] · u_d[c]`` with g the gradient at the scan output
(before the gate), lower-triangular; for the unified form ``Σ_d ∂logit/∂Ω_d[r, c] = Σ_d g_d[r] ·
x_d[c]`` with g the gradient at the gated output.

Padding. Mamba has no attention mask, so the adapter never pads inside the model: texts are run
in groups of equal token length, and the results are left-padded into one batch (padding first,
so the last position is every example's last token). Each example gets exactly what it gets alone.

Target. By default the model's next-token prediction at the last position (argmax of its
logits); or a given token id per example, or a single-token string (the vocabulary is the class
set). The readout is the last position, n - 1, for every example.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlens._checks import _check_choice, _check_integer
from attnlens.methods._common import _apply_mask, _normalize_rows
from attnlens.methods.hidden_attention import hidden_attention
from attnlens.models._hooks import eval_mode, frozen_parameters
from attnlens.models._loading import quiet_transformers
from attnlens.models._perturb import gather_rows, perturbed_ids
from attnlens.models._registry import register_adapter
from attnlens.models._saliency import SALIENCY_POSITIONS, SALIENCY_REDUCTIONS, reduce_saliency
from attnlens.models._targets import ExplainError, label_indices, target_indices
from attnlens.models.base import Adapter
from attnlens.trace import Trace

_SALIENCIES = (*SALIENCY_REDUCTIONS, "none")  # "none": as None
_CHANNEL_MODES = ("mean", "abs_mean")
_FORMS = ("scan", "unified")
_MODEL_TYPES = ("mamba", "falcon_mamba")  # Falcon-Mamba: Mamba-1 with RMS-normalised B, C and Δ in the mixer


class ScanInputs(NamedTuple):
    """What one Mamba layer's selective scan (and the mixer around it) saw, for one batch.

    Attributes:
        u: `(B, D, n)` scan input (after conv and SiLU).
        delta: `(B, D, n)` Δ after the softplus (Falcon-Mamba: of the RMS-normalised time step).
        A: `(D, N)` state matrix ``-exp(A_log)``.
        B: `(B, N, n)` input matrix (Falcon-Mamba: RMS-normalised).
        C: `(B, N, n)` output matrix (Falcon-Mamba: RMS-normalised).
        D: `(D,)` skip weights.
        gate: `(B, D, n)` gate input z (the output is ``(α·u + D·u) · silu(z)``).
        scan_output: `(B, n, D)` the gated scan output entering `out_proj` (in the autograd graph).
        conv_input: `(B, D, n)` the conv input x (the `in_proj` x half), what the unified form explains.
        conv_preactivation: `(B, D, n)` v = conv(x) + conv bias, before the SiLU (u = SiLU(v)).
        conv_weight: `(D, K)` the causal depthwise conv taps (``conv1d.weight[:, 0]``).
        conv_bias: `(D,)` the conv bias, or None.
    """

    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor
    gate: Tensor
    scan_output: Tensor
    conv_input: Tensor | None = None
    conv_preactivation: Tensor | None = None
    conv_weight: Tensor | None = None
    conv_bias: Tensor | None = None


def _mixers(model: torch.nn.Module) -> list[torch.nn.Module]:
    backbone = getattr(model, "backbone", model)
    layers = getattr(backbone, "layers", None)
    if layers is None:
        raise ValueError(f"Expected a Hugging Face Mamba model with `layers`, but got {type(model).__name__}.")
    return [layer.mixer for layer in layers]


@contextlib.contextmanager
def _capture_scans(model: torch.nn.Module) -> Iterator[list[dict[str, Tensor]]]:
    """Forward hooks on every mixer's `in_proj`, `x_proj` and `out_proj`, and on every block's input
    (the residual stream entering it); removed in `finally`."""
    mixers = _mixers(model)
    records: list[dict[str, Tensor]] = [{} for _ in mixers]
    handles = []

    def hook(record: dict[str, Tensor], kind: str):
        def save(module, inputs, output):
            if kind == "in_proj":
                record["conv_input"], record["gate"] = output.chunk(2, dim=-1)
            elif kind == "x_proj":
                record["u"], record["x_proj"] = inputs[0], output
            else:
                record["scan_output"] = inputs[0]

        return save

    def residual(record: dict[str, Tensor]):
        def save(module, args, kwargs):
            record["residual"] = args[0] if args else kwargs["hidden_states"]

        return save

    try:
        blocks = getattr(model, "backbone", model).layers
        for block, mixer, record in zip(blocks, mixers, records):
            handles.append(block.register_forward_pre_hook(residual(record), with_kwargs=True))
            for kind in ("in_proj", "x_proj", "out_proj"):
                handles.append(getattr(mixer, kind).register_forward_hook(hook(record, kind)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _scan_inputs(mixer: torch.nn.Module, record: dict[str, Tensor]) -> ScanInputs:
    rank, states = mixer.time_step_rank, mixer.ssm_state_size
    time_step, B, C = torch.split(record["x_proj"], [rank, states, states], dim=-1)
    if hasattr(mixer, "b_layernorm"):  # Falcon-Mamba: RMS norms on Δ's low-rank input, B and C (its own modules)
        time_step, B, C = mixer.dt_layernorm(time_step), mixer.b_layernorm(B), mixer.c_layernorm(C)
    raw = time_step @ mixer.dt_proj.weight.T  # (b, n, D)
    if mixer.dt_proj.bias is not None:
        raw = raw + mixer.dt_proj.bias
    delta = F.softplus(raw.float()).transpose(1, 2)
    conv = mixer.conv1d
    conv_input = record["conv_input"].transpose(1, 2)  # (b, D, n)
    n, taps = conv_input.shape[-1], conv.weight.shape[-1]
    # the mixer's causal conv (causal_conv1d_fn's torch path): K-1 zeros in front, the first n outputs
    preactivation = F.conv1d(conv_input.to(conv.weight.dtype), conv.weight, conv.bias, padding=taps - 1,
                             groups=conv.weight.shape[0])[..., :n]
    return ScanInputs(
        u=record["u"].transpose(1, 2),
        delta=delta,
        A=-torch.exp(mixer.A_log.float()),
        B=B.transpose(1, 2),
        C=C.transpose(1, 2),
        D=mixer.D,
        gate=record["gate"].transpose(1, 2),
        scan_output=record["scan_output"],
        conv_input=conv_input,
        conv_preactivation=preactivation,
        conv_weight=conv.weight[:, 0],
        conv_bias=conv.bias,
    )


def _layer_attention(scan: ScanInputs, channels: str, form: str) -> Tensor:
    """`(b, n, n)` one layer's hidden attention (``form="scan"``: α; ``"unified"``: Ω), reduced over channels."""
    if form == "unified":
        return hidden_attention(scan.delta, scan.A, scan.B.float(), scan.C.float(), channels=channels, form="unified",
                                gate=scan.gate.float(), skip=scan.D.float(), conv_weight=scan.conv_weight.float(),
                                conv_preactivation=scan.conv_preactivation.float())
    return hidden_attention(scan.delta, scan.A, scan.B.float(), scan.C.float(), channels=channels)


def _group_result(logits: Tensor, chosen: Tensor, embeds: Tensor, embeds_grad: Tensor, residual_grads: Sequence[Tensor],
                  saliency: str | None, **per_layer: Tensor) -> dict[str, Tensor]:
    """What one group's forward + backward gives the trace (every state-space family's ``_run_group``).

    Args:
        logits: `(b, V)` at the last token; chosen: `(b,)` the explained targets.
        embeds: `(b, n, d)` input embeddings; embeds_grad: the target logit's gradient at them.
        residual_grads: per layer `(b, n, d)` the gradient at the residual stream entering it.
        saliency: the reduction of the embedding gradient, or None for none.
        per_layer: the family's per-layer tensors (``hidden_attention``, ...), kept as given.

    Returns:
        `per_layer`, ``residual_grad`` `(b, L, n)` = max_d of the positive residual gradient (what
        Mamba-Attr reads), ``logits``, ``target`` and, with `saliency`, ``saliency`` `(b, n)`.
    """
    out = {**per_layer,
           "residual_grad": torch.stack([g.clamp(min=0).amax(dim=-1) for g in residual_grads], dim=1).detach().float(),
           "logits": logits.detach(), "target": chosen}
    if saliency is not None:
        valid = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        out["saliency"] = reduce_saliency(embeds_grad, embeds.detach(), valid, how=saliency).detach()
    return out


def _length_groups(rows: Sequence[Sequence[int]]) -> list[list[int]]:
    """Indices of the rows grouped by length (shortest first), so no group needs padding."""
    return [[i for i, row in enumerate(rows) if len(row) == length] for length in sorted({len(r) for r in rows})]


@register_adapter("mamba")
class MambaAdapter(Adapter):
    """Hidden-attention traces of a Hugging Face Mamba-1 or Falcon-Mamba language model.

    Args:
        model: a `MambaForCausalLM` (or a `MambaModel`, whose tied input embeddings then serve as
            the output head).
        tokenizer: the model's tokenizer.
        device: where the model runs.

    Example:
        >>> from transformers import FalconMambaConfig, MambaConfig
        >>> MambaAdapter.accepts(MambaConfig()), MambaAdapter.accepts(FalconMambaConfig())
        (True, True)
    """

    task = "language_modeling"
    provides = frozenset({"attention", "hidden_attention_gradients", "residual_gradients"})

    def __init__(self, model: torch.nn.Module, tokenizer: object, *, device: str | torch.device = "cpu") -> None:
        _mixers(model)
        self.model = model.to(device)
        self.tokenizer = tokenizer

    @classmethod
    def accepts(cls, config: object) -> bool:
        """Whether a Hugging Face `config` is a Mamba (v1) or Falcon-Mamba language model (a sequence
        classifier has its own family)."""
        architectures = getattr(config, "architectures", None) or []
        classifier = any(name.endswith("ForSequenceClassification") for name in architectures)
        return getattr(config, "model_type", None) in _MODEL_TYPES and not classifier

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> MambaAdapter:
        """Load a `MambaForCausalLM` or `FalconMambaForCausalLM` (as its config says) and its tokenizer
        from a Hugging Face id or a local folder."""
        from transformers import AutoConfig, AutoTokenizer, FalconMambaForCausalLM, MambaForCausalLM

        with quiet_transformers():  # no weight-loading bar, no causal_conv1d / mamba_ssm fallback warnings
            falcon = getattr(AutoConfig.from_pretrained(name_or_path), "model_type", None) == "falcon_mamba"
            model_class = FalconMambaForCausalLM if falcon else MambaForCausalLM
            model = model_class.from_pretrained(name_or_path, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        return cls(model, tokenizer, device=device)

    # --- what the model is --------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers())

    @property
    def num_classes(self) -> int:
        """The vocabulary size (the logits' last dimension)."""
        return self._vocab_size()

    def layers(self) -> list[torch.nn.Module]:
        return list(getattr(self.model, "backbone", self.model).layers)

    def label(self, class_index: int) -> str:
        """The decoded token of a token id."""
        index = _check_integer(class_index, "class_index", low=0, high=self.num_classes - 1)
        return self.tokenizer.decode([index])

    def class_index(self, name: str) -> int:
        """The id of a target given as text, which must be exactly one known token; a string of
        digits that is not a token is taken as an id.

        Raises:
            ExplainError: when `name` is not exactly one token of the vocabulary.
        """
        if not isinstance(name, str):
            raise TypeError(f"Expected `target` to be a token (str), but got {type(name).__name__}.")
        ids = self.tokenizer.encode(name, add_special_tokens=False)
        unknown = len(ids) == 1 and ids[0] == self.tokenizer.unk_token_id and name != self.tokenizer.unk_token
        if len(ids) == 1 and not unknown:
            return int(ids[0])
        if name.strip().isdigit() and int(name) < self.num_classes:
            return int(name)
        if unknown:
            raise ExplainError(f"Expected `target` to be a single token of the vocabulary, but {name!r} is unknown.")
        raise ExplainError(f"Expected `target` to be a single token, but {name!r} is {len(ids)} tokens.")

    def target_id(self, token: str) -> int:
        """The id of a target given as text; it must be exactly one token (same as :meth:`class_index`)."""
        return self.class_index(token)

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

    # --- tokenizing ---------------------------------------------------------------------------
    def _encode(self, texts: str | Sequence[str]) -> list[list[int]]:
        """Token ids per text (no padding, no truncation).

        Raises:
            ExplainError: on no texts or a text without tokens.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ExplainError("Expected `texts` to hold at least one text, but got none.")
        encoded = [self.tokenizer.encode(text) for text in texts]
        for text, ids in zip(texts, encoded):
            if not ids:
                raise ExplainError(f"Expected every text to give at least one token, but got none for {text!r}.")
        return encoded

    def _left_padded(self, encoded: list[list[int]]) -> tuple[Tensor, Tensor]:
        """`(B, n)` ids and valid-token mask on the CPU, padding first (the trace's layout)."""
        batch, n = len(encoded), max(len(ids) for ids in encoded)
        mask = torch.zeros(batch, n, dtype=torch.bool)
        input_ids = torch.full((batch, n), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        for b, ids in enumerate(encoded):
            mask[b, n - len(ids):] = True
            input_ids[b, n - len(ids):] = torch.tensor(ids, dtype=torch.long)
        return input_ids, mask

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Tokens per text (Mamba never truncates)."""
        return [len(ids) for ids in self._encode(texts)]

    # --- running the model --------------------------------------------------------------------
    def _last_logits(self, rows: list[list[int]]) -> Tensor:
        """`(B, V)` logits at the last token of every row, run in groups of equal length (no grads)."""
        out: dict[int, Tensor] = {}
        backbone = getattr(self.model, "backbone", self.model)
        with eval_mode(self.model), torch.no_grad():
            for members in _length_groups(rows):
                input_ids = torch.tensor([rows[i] for i in members], device=self.device)
                logits = self._logits(backbone(input_ids=input_ids, use_cache=False).last_hidden_state[:, -1])
                out.update(zip(members, logits))
        return torch.stack([out[b] for b in range(len(rows))])

    def predict(self, texts: str | Sequence[str]) -> Tensor:
        """The model's next-token logits `(B, V)` at every text's last token (eval mode, no gradients)."""
        return self._last_logits(self._encode(texts))

    def perturb(self, texts: str | Sequence[str], keep_mask: Tensor, *, mode: str = "remove") -> Tensor:
        """Logits `(B, V)` at the last token with the tokens where `keep_mask` is False removed or masked.

        Args:
            texts: B texts.
            keep_mask: `(B, n)` bool in the left-padded positions of ``trace(texts).mask``
                (padding ignored).
            mode: ``"remove"`` (the model re-run on the kept tokens) or ``"mask"`` (the tokenizer's
                mask token, else its unknown token).

        Returns:
            `(B, V)` logits.

        Raises:
            ExplainError: as :meth:`attnlens.models.base.Adapter.perturb` says (a `ValueError`).
            TypeError: on a `keep_mask` that is not a bool tensor.
        """
        input_ids, mask = self._left_padded(self._encode(texts))
        input_ids, keep = perturbed_ids(input_ids, mask, keep_mask, mode=mode, tokenizer=self.tokenizer)
        return self._last_logits(gather_rows(input_ids, keep))

    def _run_group(self, input_ids: Tensor, target: Tensor | None, saliency: str | None,
                   channels: str, form: str = "scan") -> dict[str, Tensor]:
        """One forward + backward on texts of equal length (no padding)."""
        embeds = self.model.get_input_embeddings()(input_ids).detach().requires_grad_(True)
        with _capture_scans(self.model) as records:
            backbone = getattr(self.model, "backbone", self.model)
            hidden = backbone(inputs_embeds=embeds, use_cache=False).last_hidden_state
            logits = self._logits(hidden[:, -1])
        chosen = logits.argmax(dim=-1) if target is None else target.to(logits.device)
        scans = [_scan_inputs(mixer, record) for mixer, record in zip(_mixers(self.model), records)]
        score = logits.gather(1, chosen[:, None]).sum()
        layers = len(scans)
        grads = torch.autograd.grad(score, [embeds] + [scan.scan_output for scan in scans]
                                    + [record["residual"] for record in records])
        attentions, gradients = [], []
        with torch.no_grad():
            for scan, grad_out in zip(scans, grads[1 : 1 + layers]):
                attentions.append(_layer_attention(scan, channels, form))
                if form == "unified":  # o = Ω x + β: ∂/∂Ω_d[r, c] = g_d[r] x_d[c], g at the gated output
                    grad_scan, keys = grad_out.transpose(1, 2).float(), scan.conv_input.float()
                else:  # y = α u + D u before the gate: g at the scan output, u the scan input
                    grad_scan, keys = grad_out.transpose(1, 2).float() * F.silu(scan.gate.float()), scan.u.float()
                tied = torch.matmul(grad_scan.transpose(1, 2), keys)  # (b, n, n): Σ_d g_d[r] keys_d[c]
                gradients.append(tied.tril())
        return _group_result(logits, chosen, embeds, grads[0], grads[1 + layers:], saliency,
                             hidden_attention=torch.stack(attentions, dim=1),
                             hidden_attention_grad=torch.stack(gradients, dim=1))

    def scan_inputs(self, input_ids: Tensor) -> list[ScanInputs]:
        """Per layer, what each selective scan saw for `input_ids (B, n)` (one forward pass, no gradients)."""
        with torch.no_grad(), _capture_scans(self.model) as records:
            self.model(input_ids.to(self.device), use_cache=False)
        return [_scan_inputs(mixer, record) for mixer, record in zip(_mixers(self.model), records)]

    def trace(
        self,
        texts: str | Sequence[str],
        *,
        target: str | int | Sequence[int] | Tensor | None = "pred",
        labels: Sequence[int] | Tensor | None = None,
        saliency: str | None = "sum_abs",
        saliency_at: str = "layer_input",
        channels: str = "mean",
        form: str = "scan",
    ) -> Trace:
        """Run the model on `texts` and record hidden attention, logits, target and saliency.

        Args:
            texts: one text or a list of texts.
            target: ``"pred"`` or None (the argmax at the last position), ``"gold"`` (needs
                `labels`), token id(s) to explain at the last position (an int for every text, a
                list or tuple of ints, or an integer tensor, each in [0, vocabulary size)), or a
                single-token string (see :meth:`class_index`).
            labels: B gold next-token ids, optional.
            saliency: ``"sum_abs"`` (|Σ_d g|), ``"l2"`` (‖g‖₂), ``"grad_x_input"`` (|Σ_d g·e|) of the
                gradient g of the target logit w.r.t. the input embeddings e, as for text
                classifiers (:func:`attnlens.models.hf_text.reduce_saliency`), or None (or
                ``"none"``) for no saliency; the backward pass still runs for the hidden-attention
                gradient.
            saliency_at: ``"layer_input"`` or ``"word_embeddings"``, the same for Mamba: the
                embedding output enters the first layer.
            channels: ``"mean"`` (Ali et al.) or ``"abs_mean"`` channel reduction of α (or Ω).
            form: ``"scan"`` (α, the selective scan: Ali et al.) or ``"unified"`` (Ω, the whole
                mixer from its conv input to its gated output: Zimerman et al., ICLR 2025).

        Returns:
            A `Trace` with `attentions (B, L, 1, n, n)` = norm_rows(|hidden attention|) (α or Ω as
            `form` says, reduced over channels), left-padded `mask (B, n)`, `logits (B, V)` at the
            last position, `target (B,)`, `readout (B,)` = n - 1, `saliency (B, n)`,
            `input_ids (B, n)` and extras ``hidden_attention`` (signed channel mean of α or Ω),
            ``hidden_attention_grad`` (w.r.t. α or Ω, channels tied), ``residual_grad`` `(B, L, n)`
            (per layer and token the largest positive gradient of the target logit at the residual
            stream entering the layer, for Mamba-Attr; 0 on padding).

        Raises:
            ValueError: on an empty text, an unknown option, a badly shaped target, a token id
                outside the vocabulary or a string target that is not one token.
            TypeError: on a target that is not integer token ids or a string (a float, a bool).
        """
        _check_choice(form, "form", _FORMS)
        encoded, gold, saliency, results = self._run_groups(
            texts, target, labels, saliency, saliency_at, channels,
            lambda input_ids, group_target, how: self._run_group(input_ids, group_target, how, channels, form))
        mask, input_ids = self._layout(encoded)
        raw = self._left_padded_results(encoded, results, "hidden_attention", square=True)
        attentions = _normalize_rows(_apply_mask(raw.abs(), mask))[:, :, None]
        return self._assemble_trace(encoded, gold, results, mask, input_ids, attentions, extras={
            "hidden_attention": raw,
            "hidden_attention_grad": self._left_padded_results(encoded, results, "hidden_attention_grad", square=True),
            "residual_grad": self._left_padded_results(encoded, results, "residual_grad", square=False)})

    # --- shared by the state-space families' traces ---------------------------------------------
    def _run_groups(self, texts, target, labels, saliency, saliency_at, channels, run):
        """Check the options, encode, and run `run(input_ids, target, saliency)` on every group of texts of
        equal length (no padding inside the model); return (token ids, gold labels, saliency, per-text results)."""
        saliency = None if saliency == "none" else saliency
        if saliency is not None:
            _check_choice(saliency, "saliency", _SALIENCIES)
        _check_choice(saliency_at, "saliency_at", SALIENCY_POSITIONS)
        _check_choice(channels, "channels", _CHANNEL_MODES)
        encoded = self._encode(texts)
        gold = label_indices(labels, len(encoded), unit="token")
        targets = target_indices(target, batch=len(encoded), classes=self._vocab_size(), labels=gold,
                                 lookup=self.class_index, unit="token")
        results: dict[int, dict[str, Tensor]] = {}
        with eval_mode(self.model), frozen_parameters(self.model):
            for members in _length_groups(encoded):
                input_ids = torch.tensor([encoded[i] for i in members], device=self.device)
                group = run(input_ids, None if targets is None else targets[members], saliency)
                for row, index in enumerate(members):
                    results[index] = {key: value[row] for key, value in group.items()}
        return encoded, gold, saliency, results

    def _layout(self, encoded: list[list[int]]) -> tuple[Tensor, Tensor]:
        """`(B, n)` valid-token mask and left-padded ids on the adapter's device."""
        input_ids, mask = (tensor.to(self.device) for tensor in self._left_padded(encoded))
        return mask, input_ids

    def _left_padded_results(self, encoded: list[list[int]], results: dict[int, dict[str, Tensor]], key: str, *,
                             square: bool) -> Tensor:
        """Every text's `results[key]`, `(..., m, m)` when `square` else `(..., m)`, left-padded into
        `(B, ..., n, n)` / `(B, ..., n)` float32 zeros (padding first, as the trace's mask)."""
        n = max(len(ids) for ids in encoded)
        first = results[0][key]
        lead = tuple(first.shape[:-2] if square else first.shape[:-1])
        out = torch.zeros(len(encoded), *lead, *((n, n) if square else (n,)), device=self.device)
        for b, ids in enumerate(encoded):
            start = n - len(ids)
            if square:
                out[b, ..., start:, start:] = results[b][key]
            else:
                out[b, ..., start:] = results[b][key]
        return out

    def _assemble_trace(self, encoded, gold, results, mask: Tensor, input_ids: Tensor, attentions: Tensor, *,
                        extras: dict[str, Tensor]) -> Trace:
        """The `Trace` of left-padded results: tokens, logits and targets per text, saliency when
        computed, readout n - 1 (the last position)."""
        batch, n = mask.shape
        saliency = (self._left_padded_results(encoded, results, "saliency", square=False)
                    if "saliency" in results[0] else None)
        return Trace(
            tokens=[[self.tokenizer.decode([i]) for i in ids] for ids in encoded],
            mask=mask,
            attentions=attentions,
            logits=torch.stack([results[b]["logits"] for b in range(batch)]),
            target=torch.stack([results[b]["target"] for b in range(batch)]),
            saliency=saliency,
            input_ids=input_ids,
            labels=None if gold is None else gold.to(self.device),
            extras=extras,
            readout=torch.full((batch,), n - 1, dtype=torch.long, device=self.device),
        )
