"""The method registry: every registered method equals its public function, the shared cache
computes each intermediate once, variant names and option errors, and the README names them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods import (
    attention_flow,
    gradient_rollout,
    mamba_attr,
    mamba_attr_alpha_grad,
    network_diffusion,
    released_mamba_attr,
    released_raw_attention,
    released_rollout,
    raw_attention,
    rollout,
    selective_rollout,
)
from attnlens.methods.registry import MethodCache, expand_methods, get_method, list_methods
from tests.conftest import padded_attention, random_attention

README = Path(__file__).resolve().parents[2] / "README.md"


def _batch(generator, lengths=(6, 4, 2), layers=4, heads=2):
    return padded_attention(random_attention(generator, len(lengths), layers, heads, 6, 6), list(lengths), generator)


def test_every_method_equals_its_public_function(generator):
    attn, mask = _batch(generator)
    grads = torch.randn(attn.shape[0], attn.shape[1], 6, 6, generator=generator, dtype=torch.float64)
    hidden = attn.mean(2, keepdim=True)  # a one-head "hidden attention" for mamba_attr
    variants = expand_methods(list_methods(), threshold=["0.05", "0.3"], alpha=["0.7"])
    cache = MethodCache(attn, mask)
    got = {v.name: v.compute(cache) for v in variants if v.spec.needs == {"attention"}}
    fused = attn.mean(2)
    diffused = network_diffusion(fused, alpha=0.7, mask=mask)
    torch.testing.assert_close(got["raw"].joint, raw_attention(attn, mask=mask), atol=1e-12, rtol=0)
    torch.testing.assert_close(got["rollout"].joint, rollout(attn, mask=mask), atol=1e-12, rtol=0)
    torch.testing.assert_close(got["flow"].joint, attention_flow(attn, mask=mask, layer=None), atol=1e-12, rtol=0)
    torch.testing.assert_close(got["diffusion@0.7"].joint, diffused, atol=1e-12, rtol=0)
    torch.testing.assert_close(got["diffused_rollout@0.7"].joint, rollout(diffused, mask=mask), atol=1e-12, rtol=0)
    for text in ("0.05", "0.3"):
        expected = selective_rollout(attn, threshold=float(text), mask=mask)
        torch.testing.assert_close(got[f"selective@{text}"].joint, expected.joint, atol=1e-12, rtol=0)
        assert torch.equal(got[f"selective@{text}"].used, expected.used)
        expected = selective_rollout(diffused, threshold=float(text), mask=mask)
        torch.testing.assert_close(got[f"diffused_selective@0.7:{text}"].joint, expected.joint, atol=1e-12, rtol=0)
        assert torch.equal(got[f"diffused_selective@0.7:{text}"].used, expected.used)
    mamba = expand_methods(["mamba_attr_alpha"], start_layer=1)[0]
    joint = mamba.compute(MethodCache(hidden, mask, extras={"hidden_attention_grad": grads})).joint
    torch.testing.assert_close(joint[:, -1], mamba_attr_alpha_grad(hidden, grads, mask=mask, start_layer=1),
                               atol=1e-12, rtol=0)
    residual_grad = torch.rand(attn.shape[0], attn.shape[1], 6, generator=generator, dtype=torch.float64)
    signed = hidden[:, :, 0] - 0.1
    extras = {"hidden_attention": signed, "residual_grad": residual_grad, "attention_grad": torch.randn_like(attn)}
    cache = MethodCache(hidden, mask, extras=extras)
    joint = expand_methods(["mamba_attr"], start_layer=1)[0].compute(cache).joint
    torch.testing.assert_close(joint, mamba_attr(signed, residual_grad, mask=mask, start_layer=1), atol=1e-12, rtol=0)
    joint = expand_methods(["gae"])[0].compute(MethodCache(attn, mask, extras=extras)).joint
    torch.testing.assert_close(joint, gradient_rollout(attn, extras["attention_grad"], mask=mask), atol=1e-12, rtol=0)
    rows = torch.randn(attn.shape[0], attn.shape[1], 3, 6, generator=generator, dtype=torch.float64)
    readout = torch.tensor([2, 1, 0])
    cache = MethodCache(hidden, mask, extras={**extras, "readout_rows": rows}, readout=readout)
    for name, expected in (("released_raw", released_raw_attention(rows, readout, start_layer=1)),
                           ("released_rollout", released_rollout(rows, readout, start_layer=1)),
                           ("released_mamba_attr", released_mamba_attr(rows, residual_grad, readout, start_layer=1))):
        joint = expand_methods([name], start_layer=1)[0].compute(cache).joint
        assert joint.shape == attn.shape[:2] + (6, 6)
        torch.testing.assert_close(joint[torch.arange(3), :, readout], expected, atol=1e-12, rtol=0)


def test_cache_computes_each_intermediate_once(generator):
    attn, mask = _batch(generator)
    cache = MethodCache(attn, mask)
    variants = expand_methods(["rollout", "selective", "diffusion", "diffused_rollout", "diffused_selective"],
                              threshold=["0.1", "0.5", "1"], alpha=["0.8"])
    for variant in variants:
        variant.compute(cache)
    assert cache.computed == {"fused": 1, "augmented": 2, "selective": 2, "diffusion": 1}


def test_shared_diffusion_cache_equals_direct_call(generator):
    attn = random_attention(generator, 2, 3, 2, 5, 5)
    mask = torch.ones(2, 5, dtype=torch.bool)
    cache = MethodCache(attn, mask)
    built = {m.name: m for m in expand_methods(["diffusion", "diffused_rollout"], alpha=["0.8"])}
    diffused = built["diffusion@0.8"].compute(cache).joint
    rolled = built["diffused_rollout@0.8"].compute(cache).joint
    torch.testing.assert_close(diffused, network_diffusion(attn.mean(2), alpha=0.8))
    torch.testing.assert_close(rolled, rollout(network_diffusion(attn.mean(2), alpha=0.8)))
    assert cache.computed["diffusion"] == 1


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4), name=st.sampled_from(
    ["raw", "rollout", "selective", "diffusion", "diffused_rollout", "diffused_selective"]), seed=st.integers(0, 99))
def test_batched_equals_each_example_alone(lengths, name, seed):
    generator = torch.Generator().manual_seed(seed)
    attn, mask = padded_attention(random_attention(generator, len(lengths), 3, 2, 6, 6), lengths, generator)
    variant = expand_methods([name], threshold="0.2", alpha="0.6")[0]
    batched = variant.compute(MethodCache(attn, mask)).joint
    for b, n in enumerate(lengths):
        alone = variant.compute(MethodCache(attn[b:b + 1, ..., :n, :n], mask[b:b + 1, :n])).joint
        torch.testing.assert_close(batched[b, :, :n, :n], alone[0], atol=1e-10, rtol=0)
        assert bool((batched[b, :, n:] == 0).all()) and bool((batched[b, :, :, n:] == 0).all())


def test_variant_names_keep_the_spelling_and_order():
    names = [v.name for v in expand_methods(["diffused_selective", "selective", "raw"], threshold=["1", "0.50"],
                                            alpha=["0.9", "0.5"])]
    assert names == ["diffused_selective@0.9:1", "diffused_selective@0.9:0.50", "diffused_selective@0.5:1",
                     "diffused_selective@0.5:0.50", "selective@1", "selective@0.50", "raw"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: expand_methods(["raw", "magic"]), r"Expected every entry of `methods` to be one of raw, rollout"),
        (lambda: expand_methods([]), r"Expected `methods` to name at least one of"),
        (lambda: expand_methods(["raw", "raw"]), r"Expected the entries of `methods` to be distinct"),
        (lambda: expand_methods(["selective"], threshold=["0.5", "abc"]),
         r"Expected every entry of `thresholds` to be a number, but got 'abc'"),
        (lambda: expand_methods(["selective"], threshold=["-1"]), r"Expected every entry of `thresholds` to lie in "
         r"\[0, inf\], but got '-1'"),
        (lambda: expand_methods(["diffusion"], alpha=["1.5"]), r"Expected every entry of `alphas` to lie in \[0, 1\)"),
        (lambda: expand_methods(["selective"], threshold=["1", "1.0"]), r"Expected the entries of `thresholds` to be "
         r"distinct numbers"),
        (lambda: expand_methods(["selective"], threshold=["1", ""]), r"Expected `thresholds` to be a comma-separated"),
        (lambda: expand_methods(["rollout"], head_fusion="median"), r"Expected `head_fusion` to be one of"),
        (lambda: expand_methods(["rollout"], colour="red"), r"Expected `colour` to be a method parameter"),
        (lambda: get_method("nope"), r"but got 'nope'"),
    ],
)
def test_option_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mamba_attr_without_gradients_says_so(generator):
    attn, mask = _batch(generator)
    with pytest.raises(ValueError, match="residual-stream gradients \(a Mamba model\) for `method` 'mamba_attr'"):
        expand_methods(["mamba_attr"])[0].compute(MethodCache(attn, mask))


def test_needs_filter_and_spec_fields():
    assert "mamba_attr" not in list_methods(needs=["attention"]) and "gae" not in list_methods(needs=["attention"])
    assert "gae" in list_methods(needs=["attention", "attention_gradients"])
    assert "mamba_attr" in list_methods(needs=["attention", "residual_gradients"])
    from attnlens.methods.registry import NEEDS
    assert set(list_methods(needs=NEEDS)) == set(list_methods())
    for name in list_methods():
        spec = get_method(name)
        assert spec.summary and spec.citation and callable(spec.function) and spec.needs
        assert spec.function.__doc__ and spec.function.__name__ in {
            "raw_attention", "rollout", "selective_rollout", "attention_flow", "network_diffusion", "mamba_attr",
            "mamba_attr_alpha_grad", "gradient_rollout", "released_raw_attention", "released_rollout",
            "released_mamba_attr"}


def test_readme_methods_table_names_every_registered_method():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Methods"):]
    section = section[:section.index("\n## ", 4)]
    named = set(re.findall(r"^\| `([a-z_]+)`", section, flags=re.MULTILINE))
    missing = set(list_methods()) - named
    assert not missing, f"README methods table lacks {sorted(missing)}"
