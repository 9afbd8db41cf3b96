"""Adapter for Hugging Face Jamba language models: softmax attention and Mamba layers in one stack.

Jamba (Lieber et al., "Jamba: A Hybrid Transformer-Mamba Language Model", 2024) interleaves
softmax-attention layers (every ``attn_layer_period`` layers from ``attn_layer_offset``) with
Mamba-1 layers, each followed by an MLP or a mixture of experts. This adapter rolls both kinds
out in model order: attention layers give the model's own softmax attention (eager attention),
Mamba layers their hidden attention (Ali, Zimerman & Wolf, "The Hidden Attention of Mamba Models",
ACL 2025, Eq. 11) from what the selective scan saw: u (the `x_proj` input, after the causal conv
and SiLU), the gate z (second half of `in_proj`), Δ, B and C as the mixer computes them, i.e.
after its RMS norms ``dt_layernorm``, ``b_layernorm`` and ``c_layernorm`` (captured at those
norms' outputs; Δ = softplus(dt_proj.weight · dt + dt_proj.bias), computed here because `dt_proj`
is used by weight and its hook never fires). Per channel ``y = α · u + D · u``, so
``out_proj((α·u + D·u) · SiLU(z))`` is the mixer's output.

One normalisation for both kinds. Every layer's matrix in ``Trace.attentions`` is row-stochastic
over valid tokens and zero on padding: attention layers as the softmax gives them, Mamba layers
as ``norm_rows(|mean_d α_d|)`` (the absolute channel mean, each row divided by its sum, as Ali et
al. do before rollout and as :class:`~attnlens.models.hf_mamba.MambaAdapter` does). The trace is
`(B, L, H, n, n)` with H the attention heads: a Mamba layer's one matrix is repeated over the H
heads. Heads are kept because they are the model's own; repeating costs nothing in meaning,
since every head fusion (mean, max, min) of H equal copies gives the matrix back exactly, so
rollout, selective rollout, flow and diffusion run through all L layers unchanged, and the mean
fusion they use by default equals rolling out head-mean attention and hidden attention alike.
``trace.extras["ssm_layers"]`` `(B, L)` bool says which layers are Mamba layers (True) and which
are attention layers (False); ``trace.extras["hidden_attention"]`` `(B, L, n, n)` keeps, per
layer, the signed channel mean of α for Mamba layers and the head-mean softmax attention for
attention layers (an attention layer's attention is its own "hidden attention"), so Mamba-Attr
runs through all layers too.

Gradients. ``trace.extras["residual_grad"]`` `(B, L, n)`: per layer and token ``max_d
(∂logit/∂h)⁺`` at the residual stream h entering the layer (either kind), as for Mamba.

Padding. Mamba layers have no attention mask, so the model never sees padding: texts run in
groups of equal token length, and the results are left-padded into one batch (padding first, so
the last position is every example's last token). Each example gets exactly what it gets alone.

Target. By default the model's next-token prediction at the last position (argmax of its
logits); or a given token id per example, or a single-token string (the vocabulary is the class
set). The readout is the last position, n - 1, for every example.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlens.methods._common import _normalize_rows
from attnlens.methods.hidden_attention import hidden_attention
from attnlens.models._hooks import eval_mode
from attnlens.models._loading import quiet_transformers
from attnlens.models._registry import register_adapter
from attnlens.models._targets import ExplainError
from attnlens.models.hf_mamba import MambaAdapter, ScanInputs, _group_result, _length_groups
from attnlens.trace import Trace

_SCAN_CAPTURES = {  # mixer submodule: (record key, what to keep of (inputs, output))
    "in_proj": ("gate", lambda inputs, output: output.chunk(2, dim=-1)[1]),
    "x_proj": ("u", lambda inputs, output: inputs[0]),
    "dt_layernorm": ("time_step", lambda inputs, output: output),
    "b_layernorm": ("B", lambda inputs, output: output),
    "c_layernorm": ("C", lambda inputs, output: output),
    "out_proj": ("scan_output", lambda inputs, output: inputs[0]),
}


def _backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The `JambaModel` of a `JambaForCausalLM` (or the model itself)."""
    return getattr(model, "base_model", model)


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    layers = getattr(_backbone(model), "layers", None)
    if layers is None or not all(hasattr(layer, "mamba") or hasattr(layer, "self_attn") for layer in layers):
        raise ValueError(f"Expected a Hugging Face Jamba model with `layers` of attention and Mamba decoder layers, "
                         f"but got {type(model).__name__}.")
    return list(layers)


def _is_ssm(layer: torch.nn.Module) -> bool:
    return hasattr(layer, "mamba")


@contextlib.contextmanager
def _capture_layers(layers: Sequence[torch.nn.Module]) -> Iterator[list[dict[str, Tensor]]]:
    """Per layer a record filled by hooks: the residual stream entering it (pre-hook), a Mamba
    mixer's scan inputs (`_SCAN_CAPTURES`) or an attention layer's weights `(b, H, n, n)`; every
    hook is removed in `finally`."""
    records: list[dict[str, Tensor]] = [{} for _ in layers]
    handles = []

    def keep(record: dict[str, Tensor], key: str, pick):
        def save(module, inputs, output):
            record[key] = pick(inputs, output)

        return save

    def residual(record: dict[str, Tensor]):
        def save(module, args, kwargs):
            record["residual"] = args[0] if args else kwargs["hidden_states"]

        return save

    try:
        for layer, record in zip(layers, records):
            handles.append(layer.register_forward_pre_hook(residual(record), with_kwargs=True))
            if _is_ssm(layer):
                for name, (key, pick) in _SCAN_CAPTURES.items():
                    handles.append(getattr(layer.mamba, name).register_forward_hook(keep(record, key, pick)))
            else:
                handles.append(layer.self_attn.register_forward_hook(
                    keep(record, "attention", lambda inputs, output: output[1])))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _scan_inputs(mixer: torch.nn.Module, record: dict[str, Tensor]) -> ScanInputs:
    """A Jamba mixer's scan inputs, with Δ as its forward computes it from the normalised time step."""
    raw = mixer.dt_proj.weight @ record["time_step"].transpose(1, 2)  # (b, D, n), as the mixer does
    if mixer.dt_proj.bias is not None:
        raw = raw + mixer.dt_proj.bias.float()[:, None]
    return ScanInputs(
        u=record["u"].transpose(1, 2),
        delta=F.softplus(raw.float()),
        A=-torch.exp(mixer.A_log.float()),
        B=record["B"].transpose(1, 2),
        C=record["C"].transpose(1, 2),
        D=mixer.D,
        gate=record["gate"].transpose(1, 2),
        scan_output=record["scan_output"],
    )


@register_adapter("jamba")
class JambaAdapter(MambaAdapter):
    """Traces of a Hugging Face Jamba language model through its attention and Mamba layers in order.

    Tokens, targets, perturbation and prediction work as for
    :class:`~attnlens.models.hf_mamba.MambaAdapter` (whose text handling this class reuses).

    Args:
        model: a `JambaForCausalLM` (switched to eager attention if it is not).
        tokenizer: the model's tokenizer.
        device: where the model runs.

    Example:
        >>> from transformers import JambaConfig
        >>> JambaAdapter.accepts(JambaConfig())
        True
    """

    task = "language_modeling"
    provides = frozenset({"attention", "residual_gradients"})

    def __init__(self, model: torch.nn.Module, tokenizer: object, *, device: str | torch.device = "cpu") -> None:
        _decoder_layers(model)
        config = getattr(model, "config", None)
        if getattr(config, "_attn_implementation", "eager") != "eager" and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
        self.model = model.to(device)
        self.tokenizer = tokenizer

    @classmethod
    def accepts(cls, config: object) -> bool:
        """Whether a Hugging Face `config` is a Jamba language model (sequence classifiers are left to their family)."""
        architectures = getattr(config, "architectures", None) or []
        classifier = any(name.endswith("ForSequenceClassification") for name in architectures)
        return getattr(config, "model_type", None) == "jamba" and not classifier

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> JambaAdapter:
        """Load a `JambaForCausalLM` (float32, eager attention) and its tokenizer by Hugging Face id or local folder."""
        from transformers import AutoTokenizer, JambaForCausalLM  # noqa: PLC0415

        with quiet_transformers():  # no weight-loading bar, no causal_conv1d / mamba_ssm fallback warnings
            model = JambaForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, attn_implementation="eager")
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        return cls(model, tokenizer, device=device)

    # --- what the model is --------------------------------------------------------------------
    def layers(self) -> list[torch.nn.Module]:
        """The decoder layers, first to last, of both kinds."""
        return _decoder_layers(self.model)

    @property
    def layer_kinds(self) -> list[str]:
        """Per layer in model order, ``"mamba"`` or ``"attention"`` (the config's ``layers_block_type``)."""
        return ["mamba" if _is_ssm(layer) else "attention" for layer in self.layers()]

    # --- running the model --------------------------------------------------------------------
    def _last_logits(self, rows: list[list[int]]) -> Tensor:
        """`(B, V)` logits at the last token of every row, run in groups of equal length (no grads)."""
        out: dict[int, Tensor] = {}
        with eval_mode(self.model), torch.no_grad():
            for members in _length_groups(rows):
                input_ids = torch.tensor([rows[i] for i in members], device=self.device)
                hidden = _backbone(self.model)(input_ids=input_ids, use_cache=False).last_hidden_state
                out.update(zip(members, self._logits(hidden[:, -1])))
        return torch.stack([out[b] for b in range(len(rows))])

    def scan_inputs(self, input_ids: Tensor) -> dict[int, ScanInputs]:
        """Per Mamba layer (by layer index), what its selective scan saw for `input_ids (B, n)` (no padding;
        one forward pass, no gradients)."""
        layers = self.layers()
        with torch.no_grad(), _capture_layers(layers) as records:
            _backbone(self.model)(input_ids=input_ids.to(self.device), use_cache=False)
        return {index: _scan_inputs(layer.mamba, record)
                for index, (layer, record) in enumerate(zip(layers, records)) if _is_ssm(layer)}

    def _run_group(self, input_ids: Tensor, target: Tensor | None, saliency: str | None,
                   channels: str) -> dict[str, Tensor]:
        """One forward + backward on texts of equal length (no padding)."""
        layers = self.layers()
        embeds = self.model.get_input_embeddings()(input_ids).detach().requires_grad_(True)
        with _capture_layers(layers) as records:
            hidden = _backbone(self.model)(inputs_embeds=embeds, use_cache=False).last_hidden_state
            logits = self._logits(hidden[:, -1])
        chosen = logits.argmax(dim=-1) if target is None else target.to(logits.device)
        score = logits.gather(1, chosen[:, None]).sum()
        grads = torch.autograd.grad(score, [embeds] + [record["residual"] for record in records])
        weights = [record.get("attention") for layer, record in zip(layers, records) if not _is_ssm(layer)]
        if any(w is None for w in weights):
            raise ExplainError("Expected the model's attention layers to return attention weights, but they "
                               "returned none (it needs attn_implementation='eager').")
        heads = weights[0].shape[1] if weights else 1
        attentions, hidden_attentions = [], []
        with torch.no_grad():
            for layer, record in zip(layers, records):
                if _is_ssm(layer):
                    scan = _scan_inputs(layer.mamba, record)
                    alpha = hidden_attention(scan.delta, scan.A, scan.B.float(), scan.C.float(), channels=channels)
                    hidden_attentions.append(alpha)
                    normalised = _normalize_rows(alpha.abs())
                    attentions.append(normalised[:, None].expand(-1, heads, -1, -1))
                else:
                    softmax = record["attention"].detach().float()
                    attentions.append(softmax)
                    hidden_attentions.append(softmax.mean(dim=1))
        return _group_result(logits, chosen, embeds, grads[0], grads[1:], saliency,
                             attentions=torch.stack(attentions, dim=1),
                             hidden_attention=torch.stack(hidden_attentions, dim=1))

    def trace(
        self,
        texts: str | Sequence[str],
        *,
        target: str | int | Sequence[int] | Tensor | None = "pred",
        labels: Sequence[int] | Tensor | None = None,
        saliency: str | None = "sum_abs",
        saliency_at: str = "layer_input",
        channels: str = "mean",
    ) -> Trace:
        """Run the model on `texts` and record every layer's attention, logits, target and saliency.

        Args:
            texts: one text or a list of texts.
            target: ``"pred"`` or None (the argmax at the last position), ``"gold"`` (needs
                `labels`), token id(s) to explain at the last position, or a single-token string,
                as for :meth:`~attnlens.models.hf_mamba.MambaAdapter.trace`.
            labels: B gold next-token ids, optional.
            saliency: ``"sum_abs"``, ``"l2"``, ``"grad_x_input"`` of the gradient of the target
                logit w.r.t. the input embeddings, or None (or ``"none"``) for no saliency; the
                backward pass still runs for ``residual_grad``.
            saliency_at: ``"layer_input"`` or ``"word_embeddings"``, the same for Jamba (no
                position embeddings: the embedding output enters the first layer).
            channels: ``"mean"`` (Ali et al.) or ``"abs_mean"`` channel reduction of a Mamba layer's α.

        Returns:
            A `Trace` with `attentions (B, L, H, n, n)` (attention layers: the softmax per head;
            Mamba layers: norm_rows(|hidden attention|) repeated over the H heads), left-padded
            `mask (B, n)`, `logits (B, V)` at the last position, `target (B,)`, `readout (B,)` =
            n - 1, `saliency (B, n)`, `input_ids (B, n)` and extras ``ssm_layers`` `(B, L)` bool,
            ``hidden_attention`` `(B, L, n, n)` (signed channel mean of α, or the head-mean
            attention of an attention layer) and ``residual_grad`` `(B, L, n)` (0 on padding).

        Raises:
            ValueError: on an empty text, an unknown option, a badly shaped target, a token id
                outside the vocabulary, a string target that is not one token, or attention layers
                that return no weights.
            TypeError: on a target that is not integer token ids or a string (a float, a bool).
        """
        encoded, gold, saliency, results = self._run_groups(
            texts, target, labels, saliency, saliency_at, channels,
            lambda input_ids, group_target, how: self._run_group(input_ids, group_target, how, channels))
        mask, input_ids = self._layout(encoded)
        ssm_layers = torch.tensor([kind == "mamba" for kind in self.layer_kinds], device=self.device)
        return self._assemble_trace(
            encoded, gold, results, mask, input_ids,
            self._left_padded_results(encoded, results, "attentions", square=True),
            extras={"hidden_attention": self._left_padded_results(encoded, results, "hidden_attention", square=True),
                    "residual_grad": self._left_padded_results(encoded, results, "residual_grad", square=False),
                    "ssm_layers": ssm_layers[None].expand(len(encoded), -1).clone()})
