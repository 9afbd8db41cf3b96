"""Adapter for Hugging Face Mamba-2 language models (`Mamba2Model`, `Mamba2ForCausalLM`).

A Mamba-2 mixer projects its input to ``[z, xBC, dt]``, runs a causal depthwise convolution and
SiLU on xBC, splits it into x (H heads of P channels) and the B, C of ``n_groups`` groups, scans
with a scalar ``A_h = -exp(A_log_h)`` per head and ``Δ = clamp(softplus(dt + dt_bias), *time_step_limit)``,
adds ``D_h x``, applies the gated RMSNorm ``w ⊙ (y·SiLU(z)) / rms_group(y·SiLU(z))`` and `out_proj`.
This adapter captures, per layer, the in_proj output, the norm's input y and the out_proj input
(forward hooks, removed in `finally`), recomputes the convolution (its module is used by weight,
so no hook fires) and builds one of two attention forms
(:mod:`attnlens.methods.ssd_attention`):

* ``form="scan"`` (default): the SSD scan's hidden attention per head,
  ``α_h[r, c] = (C_r·B_c) exp(A_h Σ_{c<k≤r} Δ_k,h) Δ_c,h`` (Ali, Zimerman & Wolf, ACL 2025),
  averaged over heads (``channels="mean"``, or ``"abs_mean"``);
* ``form="unified"``: the whole mixer from the convolution's input x to out_proj's input,
  ``Ω_d = diag(g_d)(α_h + D_h I) diag(σ(v_d)) M_conv,d`` (Zimerman, Ali & Wolf, ICLR 2025), with
  g_d the gated RMSNorm's per-token diagonal ``w_d SiLU(z_d)/rms`` computed from the actual y,
  averaged over the H·P channels. The convolution bias adds an x-independent term β: the mixer
  output is ``out_proj(Ω x + β)``.

Normalisation, padding, target and readout are those of
:class:`~attnlens.models.hf_mamba.MambaAdapter`, whose tokenizing, trace assembly, prediction and
perturbation this class inherits (it replaces only the per-group forward and backward):
``Trace.attentions`` = ``norm_rows(|reduced α or Ω|)`` per layer as `(B, L, 1, n, n)`, the raw
signed reduction in ``extras["hidden_attention"]``; texts run in groups
of equal length (the model never sees padding) and are left-padded into one batch; the target is
the next token at the last position. Gradients: ``extras["residual_grad"]`` `(B, L, n)`
(``max_d (∂logit/∂h)⁺`` at the residual stream entering each layer, for Mamba-Attr) and
``extras["hidden_attention_grad"]`` `(B, L, n, n)`, the gradient of the target logit w.r.t. the
layer's attention of the traced form with its heads and channels tied: ``Σ_d ∂logit/∂y_d[r] · u_d[c]``
(scan: y the scan output, u its input) or ``Σ_d ∂logit/∂o_d[r] · x_d[c]`` (unified: o the out_proj
input, x the convolution input), lower-triangular.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlens.methods.ssd_attention import ssd_hidden_attention, ssd_unified_attention
from attnlens.models._hooks import eval_mode
from attnlens.models._loading import quiet_transformers
from attnlens.models._registry import register_adapter
from attnlens.models.hf_mamba import MambaAdapter, _group_result
from attnlens.trace import Trace

class SSDInputs(NamedTuple):
    """What one Mamba-2 mixer computed, for one batch (channels d = h·P + p, heads in groups of H/G).

    Attributes:
        conv_input: `(B, H·P, n)` the convolution's input x (the x part of xBC), what the unified form explains.
        conv_preactivation: `(B, H·P, n)` v, the convolution's output before the SiLU (bias included).
        u: `(B, H·P, n)` the scan input SiLU(v).
        delta: `(B, H, n)` Δ after softplus and clamp.
        A: `(H,)` ``-exp(A_log)``.
        B: `(B, G, N, n)` input matrices (after conv and SiLU).
        C: `(B, G, N, n)` output matrices.
        D: `(H,)` skip weights.
        conv_weight: `(H·P, K)` the x channels' convolution taps.
        conv_bias: `(H·P,)` their bias, or None.
        gate_scale: `(B, H·P, n)` the gated RMSNorm's diagonal ``w·SiLU(z)/rms`` for this input.
        scan_output: `(B, n, H·P)` y, the norm's input (in the autograd graph).
        mixer_input: `(B, n, H·P)` out_proj's input (in the autograd graph).
    """

    conv_input: Tensor
    conv_preactivation: Tensor
    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor
    conv_weight: Tensor
    conv_bias: Tensor | None
    gate_scale: Tensor
    scan_output: Tensor
    mixer_input: Tensor


def _mixers(model: torch.nn.Module) -> list[torch.nn.Module]:
    layers = getattr(getattr(model, "backbone", model), "layers", None)
    mixers = [getattr(layer, "mixer", None) for layer in layers] if layers is not None else []
    if not mixers or not all(hasattr(m, "n_groups") and hasattr(m, "dt_bias") for m in mixers):
        raise ValueError(f"Expected a Hugging Face Mamba-2 model with `layers` of Mamba-2 mixers, but got "
                         f"{type(model).__name__}.")
    return mixers


@contextlib.contextmanager
def _capture_mixers(model: torch.nn.Module) -> Iterator[list[dict[str, Tensor]]]:
    """Hooks on every mixer's `in_proj` (output), `norm` and `out_proj` (inputs) and every block's input
    (the residual stream entering it); removed in `finally`."""
    mixers = _mixers(model)
    records: list[dict[str, Tensor]] = [{} for _ in mixers]
    handles = []

    def output_of(record: dict[str, Tensor], key: str):
        def save(module, args, result):
            record[key] = result

        return save

    def input_of(record: dict[str, Tensor], key: str):
        def save(module, args, kwargs):
            record[key] = args[0] if args else kwargs["hidden_states"]

        return save

    try:
        for block, mixer, record in zip(getattr(model, "backbone", model).layers, mixers, records):
            handles.append(block.register_forward_pre_hook(input_of(record, "residual"), with_kwargs=True))
            handles.append(mixer.in_proj.register_forward_hook(output_of(record, "projected")))
            handles.append(mixer.norm.register_forward_pre_hook(input_of(record, "scan_output"), with_kwargs=True))
            handles.append(mixer.out_proj.register_forward_pre_hook(input_of(record, "mixer_input"), with_kwargs=True))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _ssd_inputs(mixer: torch.nn.Module, record: dict[str, Tensor]) -> SSDInputs:
    """Everything :mod:`attnlens.methods.ssd_attention` needs, recomputed from one mixer's records (float32)."""
    width, heads, groups, states = mixer.intermediate_size, mixer.num_heads, mixer.n_groups, mixer.ssm_state_size
    projected = record["projected"].float()
    z, xbc, dt = projected.split([width, mixer.conv_dim, heads], dim=-1)
    weight = mixer.conv1d.weight[:, 0].float()  # (conv_dim, K)
    bias = None if mixer.conv1d.bias is None else mixer.conv1d.bias.float()
    length = xbc.shape[1]
    v = F.conv1d(xbc.transpose(1, 2), weight[:, None], bias, padding=weight.shape[1] - 1,
                 groups=mixer.conv_dim)[..., :length]  # (b, conv_dim, n) before the activation
    activated = mixer.act(v)
    u, B, C = activated.split([width, groups * states, groups * states], dim=1)
    low, high = mixer.time_step_limit
    delta = torch.clamp(F.softplus(dt + mixer.dt_bias.float()), min=low, max=high).transpose(1, 2)  # (b, H, n)
    y = record["scan_output"].float()  # (b, n, I)
    gated = y * F.silu(z)
    grouped = gated.view(*gated.shape[:-1], groups, width // groups)
    rms = torch.sqrt(grouped.pow(2).mean(dim=-1, keepdim=True) + mixer.norm.variance_epsilon)
    scale = (mixer.norm.weight.float() * (F.silu(z).view_as(grouped) / rms).view_as(z)).transpose(1, 2)
    return SSDInputs(
        conv_input=xbc[..., :width].transpose(1, 2), conv_preactivation=v[:, :width], u=u, delta=delta,
        A=-torch.exp(mixer.A_log.float()), B=B.view(B.shape[0], groups, states, length),
        C=C.view(C.shape[0], groups, states, length), D=mixer.D.float(), conv_weight=weight[:width],
        conv_bias=None if bias is None else bias[:width], gate_scale=scale, scan_output=record["scan_output"],
        mixer_input=record["mixer_input"],
    )


@register_adapter("mamba2")
class Mamba2Adapter(MambaAdapter):
    """Hidden-attention traces of a Hugging Face Mamba-2 language model, in the scan or the unified form.

    Args:
        model: a `Mamba2ForCausalLM` (or a `Mamba2Model`, whose input embeddings then serve as the
            output head).
        tokenizer: the model's tokenizer.
        device: where the model runs.

    Example:
        >>> from transformers import Mamba2Config
        >>> Mamba2Adapter.accepts(Mamba2Config()), MambaAdapter.accepts(Mamba2Config())
        (True, False)
    """

    task = "language_modeling"
    provides = frozenset({"attention", "hidden_attention_gradients", "residual_gradients"})

    def __init__(self, model: torch.nn.Module, tokenizer: object, *, device: str | torch.device = "cpu") -> None:
        _mixers(model)
        self.model = model.to(device)
        self.tokenizer = tokenizer
        # transformers warns once per process that its CUDA kernels are missing, at the first forward:
        # run that forward here, quietly (one token), so traces print nothing
        with quiet_transformers(), eval_mode(self.model), torch.no_grad():
            getattr(self.model, "backbone", self.model)(input_ids=torch.zeros(1, 1, dtype=torch.long,
                                                                               device=self.device), use_cache=False)

    @classmethod
    def accepts(cls, config: object) -> bool:
        """Whether a Hugging Face `config` is a Mamba-2 language model (a sequence classifier has its own family)."""
        architectures = getattr(config, "architectures", None) or []
        classifier = any(name.endswith("ForSequenceClassification") for name in architectures)
        return getattr(config, "model_type", None) == "mamba2" and not classifier

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> Mamba2Adapter:
        """Load a `Mamba2ForCausalLM` and its tokenizer from a Hugging Face id or a local folder."""
        from transformers import AutoTokenizer, Mamba2ForCausalLM  # noqa: PLC0415

        with quiet_transformers():  # no weight-loading bar, no causal_conv1d / mamba_ssm fallback warnings
            model = Mamba2ForCausalLM.from_pretrained(name_or_path, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        return cls(model, tokenizer, device=device)

    # --- running the model --------------------------------------------------------------------
    def scan_inputs(self, input_ids: Tensor) -> list[SSDInputs]:
        """Per layer, what each Mamba-2 mixer computed for `input_ids (B, n)` (one forward pass, no gradients)."""
        with torch.no_grad():
            with eval_mode(self.model), _capture_mixers(self.model) as records:
                self.model(input_ids.to(self.device), use_cache=False)
            return [_ssd_inputs(mixer, record) for mixer, record in zip(_mixers(self.model), records)]

    def _run_group(self, input_ids: Tensor, target: Tensor | None, saliency: str | None, channels: str,
                   form: str = "scan") -> dict[str, Tensor]:
        """One forward + backward on texts of equal length (no padding)."""
        embeds = self.model.get_input_embeddings()(input_ids).detach().requires_grad_(True)
        with _capture_mixers(self.model) as records:
            backbone = getattr(self.model, "backbone", self.model)
            hidden = backbone(inputs_embeds=embeds, use_cache=False).last_hidden_state
            logits = self._logits(hidden[:, -1])
        chosen = logits.argmax(dim=-1) if target is None else target.to(logits.device)
        with torch.no_grad():  # the recorded y and out_proj inputs stay in the graph
            scans = [_ssd_inputs(mixer, record) for mixer, record in zip(_mixers(self.model), records)]
        layers = len(scans)
        outputs = [scan.scan_output if form == "scan" else scan.mixer_input for scan in scans]
        score = logits.gather(1, chosen[:, None]).sum()
        grads = torch.autograd.grad(score, [embeds, *outputs, *(record["residual"] for record in records)])
        attentions, gradients = [], []
        with torch.no_grad():
            for scan, grad_out in zip(scans, grads[1 : 1 + layers]):
                if form == "scan":
                    alpha = ssd_hidden_attention(scan.delta, scan.A, scan.B, scan.C, heads=channels)
                    values = scan.u
                else:
                    alpha = ssd_unified_attention(scan.delta, scan.A, scan.B, scan.C, skip=scan.D,
                                                  conv_weight=scan.conv_weight, gate_scale=scan.gate_scale,
                                                  conv_preactivation=scan.conv_preactivation, channels=channels)
                    values = scan.conv_input
                attentions.append(alpha)
                gradients.append(torch.matmul(grad_out.float(), values).tril())  # Σ_d g_d[r] values_d[c]
        return _group_result(logits, chosen, embeds, grads[0], grads[1 + layers:], saliency,
                             hidden_attention=torch.stack(attentions, dim=1),
                             hidden_attention_grad=torch.stack(gradients, dim=1))

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
            target: as :meth:`MambaAdapter.trace <attnlens.models.hf_mamba.MambaAdapter.trace>` (the
                next-token argmax by default, ``"gold"``, token ids or a single-token string).
            labels: B gold next-token ids, optional.
            saliency: ``"sum_abs"``, ``"l2"``, ``"grad_x_input"`` of the input-embedding gradient,
                or None (or ``"none"``) for none.
            saliency_at: ``"layer_input"`` or ``"word_embeddings"`` (the same for Mamba-2).
            channels: ``"mean"`` or ``"abs_mean"``: the reduction over heads (scan form: α is per
                head) or over the H·P channels (unified form).
            form: ``"scan"`` (the SSD scan's α) or ``"unified"`` (the whole mixer, Ω).

        Returns:
            A `Trace` with `attentions (B, L, 1, n, n)` = norm_rows(|reduced attention|), left-padded
            `mask (B, n)`, `logits (B, V)` at the last position, `target (B,)`, `readout (B,)` = n - 1,
            `saliency (B, n)`, `input_ids (B, n)` and extras ``hidden_attention``,
            ``hidden_attention_grad`` `(B, L, n, n)` and ``residual_grad`` `(B, L, n)` (0 on padding).

        Raises:
            ValueError: on an empty text, an unknown option, a badly shaped target, a token id
                outside the vocabulary or a string target that is not one token.
            TypeError: on a target that is not integer token ids or a string.
        """
        if form == "unified":
            activations = {mixer.activation for mixer in _mixers(self.model)} - {"silu", "swish"}
            if activations:
                raise ValueError(f"Expected `form` 'unified' to see SiLU convolution activations (SiLU(v) = v·σ(v)), "
                                 f"but the model uses {sorted(activations)[0]!r}.")
        # MambaAdapter's grouping by length, left padding and normalisation, around this class's _run_group
        return super().trace(texts, target=target, labels=labels, saliency=saliency, saliency_at=saliency_at,
                             channels=channels, form=form)
