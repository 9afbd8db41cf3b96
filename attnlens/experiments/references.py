"""Reference attributions from captum (a well-kept library, not re-written): IG, Input×Gradient, occlusion, KernelSHAP, LIME.

Each gives a `(B, n)` per-token attribution of the target logit in the positions of
``adapter.trace(texts).mask``: layer attributions at the word embeddings summed over the hidden
dimension (signed: positive supports the target, captum's convention), occlusion and KernelSHAP
per token with the mask (else unknown) token as the baseline, LIME likewise. Special tokens get 0. captum is the
optional extra ``attnlens[faithfulness]``; without it these raise a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from attnlens._checks import _check_choice

if TYPE_CHECKING:
    from attnlens.models import Adapter

CAPTUM_REFERENCES = ("ig", "input_x_gradient", "occlusion", "kernel_shap", "lime")


def captum_available() -> bool:
    """Whether captum is installed."""
    try:
        import captum.attr  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def captum_attributions(adapter: Adapter, texts: Sequence[str], target: Tensor, *, algorithm: str = "ig",
                        steps: int = 32, samples: int = 64, special_mask: Tensor | None = None) -> Tensor:
    """Per-token reference attributions of the target logit by captum.

    Integrated Gradients (Sundararajan et al., ICML 2017) from the all-baseline-token input with
    `steps` steps; Input×Gradient (Shrikumar et al. 2017); occlusion of one token at a time (Zeiler
    & Fergus 2014; captum ``FeatureAblation``); KernelSHAP (Lundberg & Lee, NeurIPS 2017) with
    `samples` coalitions per example; LIME (Ribeiro et al., KDD 2016) with `samples` perturbations
    per example (captum's default exponential-kernel similarity and lasso surrogate).

    Args:
        adapter: a Hugging Face text classifier adapter.
        texts: B texts.
        target: `(B,)` long explained classes.
        algorithm: ``"ig"``, ``"input_x_gradient"``, ``"occlusion"``, ``"kernel_shap"`` or ``"lime"``.
        steps: IG steps.
        samples: KernelSHAP coalitions / LIME perturbations per example.
        special_mask: `(B, n)` bool special tokens (kept in every baseline, attribution 0); None: none.

    Returns:
        `(B, n)` float32 attributions on the adapter's device, 0 on padding and special tokens.

    Raises:
        ValueError: on an unknown `algorithm` or a model captum cannot drive.
        ImportError: when captum is not installed (``pip install 'attnlens[faithfulness]'``).
    """
    _check_choice(algorithm, "algorithm", CAPTUM_REFERENCES)
    if not captum_available():
        raise ImportError("Expected captum to be installed for reference attributions, but it is missing: "
                          "pip install 'attnlens[faithfulness]'.")
    from captum.attr import (  # noqa: PLC0415
        FeatureAblation,
        KernelShap,
        LayerGradientXActivation,
        Lime,
        LayerIntegratedGradients,
    )

    from attnlens.models._embedding_forward import embedding_forward  # noqa: PLC0415

    run = embedding_forward(adapter, texts)
    ids, mask = run.input_ids, run.attention_mask.bool()
    special = (torch.zeros_like(mask) if special_mask is None else special_mask.to(mask.device).bool()) & mask
    target = target.to(ids.device)
    extra = (run.attention_mask, run.token_type_ids)
    baseline = torch.where(mask & ~special, run.replacement, ids)
    if algorithm == "ig":
        attributions = LayerIntegratedGradients(run.forward, run.layer).attribute(
            ids, baselines=baseline, target=target, additional_forward_args=extra, n_steps=steps,
            internal_batch_size=max(1, 256 // ids.shape[0]) * ids.shape[0]).sum(dim=-1)
    elif algorithm == "input_x_gradient":
        attributions = LayerGradientXActivation(run.forward, run.layer).attribute(
            ids, target=target, additional_forward_args=extra).sum(dim=-1)
    else:
        features = torch.arange(ids.shape[1], device=ids.device).expand_as(ids).contiguous()
        if algorithm == "occlusion":
            attributions = FeatureAblation(run.forward).attribute(
                ids, baselines=baseline, target=target, additional_forward_args=extra, feature_mask=features,
                perturbations_per_eval=16)
        else:
            rows = []
            algorithm_class = KernelShap if algorithm == "kernel_shap" else Lime
            for b in range(ids.shape[0]):
                rows.append(algorithm_class(run.forward).attribute(
                    ids[b:b + 1], baselines=baseline[b:b + 1], target=target[b:b + 1],
                    additional_forward_args=tuple(t[b:b + 1] for t in extra), feature_mask=features[b:b + 1],
                    n_samples=samples, perturbations_per_eval=samples))
            attributions = torch.cat(rows)
    return (attributions.detach().float() * (mask & ~special).float())


__all__ = ["CAPTUM_REFERENCES", "captum_attributions", "captum_available"]
