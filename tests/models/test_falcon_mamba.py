"""Falcon-Mamba (Mamba-1 with RMS-normalised B, C and Δ inside the mixer) through MambaAdapter."""

import pytest
import torch
import torch.nn.functional as F
from transformers import FalconMambaConfig, FalconMambaForCausalLM

from attnlens.methods.hidden_attention import hidden_attention
from attnlens.models import create_tiny_adapter, load_adapter
from attnlens.models._registry import adapter_for_config
from attnlens.models._tiny import tiny_falcon_mamba_lm
from attnlens.models.hf_mamba import MambaAdapter, _capture_scans, _mixers
from tests.models.test_hf_mamba import WORDS, mixer_outputs, scan_rebuilt, tiny_tokenizer, unified_rebuilt

torch.set_num_threads(1)
TEXT = "the movie was great not bad at all a film"


@pytest.fixture(scope="module")
def adapter():
    return MambaAdapter(tiny_falcon_mamba_lm(len(WORDS) + 2, seed=1), tiny_tokenizer())


def _ids(adapter, text=TEXT):
    return torch.tensor([adapter.tokenizer.encode(text)])


def test_accepted_and_routed_to_the_mamba_family():
    assert MambaAdapter.accepts(FalconMambaConfig())
    assert adapter_for_config(FalconMambaConfig()) is MambaAdapter
    assert not MambaAdapter.accepts(FalconMambaConfig(architectures=["FalconMambaForSequenceClassification"]))
    tiny = create_tiny_adapter("test_falcon_mamba")
    assert isinstance(tiny.model, FalconMambaForCausalLM) and tiny.family == "mamba"


def test_scan_form_reproduces_every_mixer_output(adapter):
    """With the normalised B, C and Δ, (α u + D u)·SiLU(z) through out_proj is each mixer's output."""
    ids = _ids(adapter)
    outputs = mixer_outputs(adapter.model, ids)
    assert len(outputs) == 2
    for rebuilt, output in zip(scan_rebuilt(adapter, ids), outputs):
        torch.testing.assert_close(rebuilt, output, atol=1e-5, rtol=0)


@pytest.mark.parametrize("conv_bias", [True, False])
def test_unified_form_reproduces_every_mixer_output(conv_bias):
    options = {} if conv_bias else {"use_conv_bias": False}
    model = tiny_falcon_mamba_lm(len(WORDS) + 2, seed=2, **options)
    adapter = MambaAdapter(model, tiny_tokenizer())
    ids = _ids(adapter)
    scans = adapter.scan_inputs(ids)
    assert (scans[0].conv_bias is not None and bool(scans[0].conv_bias.abs().min() > 0)) == conv_bias
    for rebuilt, output in zip(unified_rebuilt(adapter, ids), mixer_outputs(model, ids)):
        torch.testing.assert_close(rebuilt, output, atol=1e-5, rtol=0)


def test_without_the_norms_the_scan_is_not_reproduced(adapter):
    """Negative control: B, C and Δ straight from x_proj (as for Mamba-1) do not give Falcon-Mamba's output."""
    ids = _ids(adapter)
    mixer = _mixers(adapter.model)[0]
    with torch.no_grad(), _capture_scans(adapter.model) as records:
        adapter.model(ids, use_cache=False)
    rank, states = mixer.time_step_rank, mixer.ssm_state_size
    time_step, B, C = torch.split(records[0]["x_proj"], [rank, states, states], dim=-1)
    delta = F.softplus(time_step @ mixer.dt_proj.weight.T + mixer.dt_proj.bias).transpose(1, 2)
    scan = adapter.scan_inputs(ids)[0]
    raw = hidden_attention(delta, scan.A, B.transpose(1, 2), C.transpose(1, 2), channels="none")
    y = (torch.einsum("bdrc,bdc->bdr", raw, scan.u) + scan.D[None, :, None] * scan.u) * F.silu(scan.gate)
    wrong = mixer.out_proj(y.transpose(1, 2))
    assert (wrong - mixer_outputs(adapter.model, ids)[0]).abs().max() > 1e-2
    rms = B.pow(2).mean(-1, keepdim=True).add(mixer.rms_eps).rsqrt()
    torch.testing.assert_close(scan.B, (B * rms).transpose(1, 2), atol=1e-6, rtol=0)  # what the capture holds


@pytest.mark.parametrize("form", ["scan", "unified"])
def test_trace_in_both_forms(adapter, form):
    texts = ["the movie was great", "not bad at all a film", "i loved it"]
    trace = adapter.trace(texts, form=form)
    assert trace.attentions.shape == (3, 2, 1, 6, 6)
    rows = trace.attentions[:, :, 0].sum(-1)
    valid = trace.mask[:, None, :].expand_as(rows)
    torch.testing.assert_close(rows[valid], torch.ones(int(valid.sum())))
    with torch.no_grad():
        logits = adapter.model(_ids(adapter, texts[1])).logits[0, -1]
    torch.testing.assert_close(trace.logits[1], logits, atol=1e-5, rtol=0)
    for b, text in enumerate(texts):
        alone = adapter.trace([text], form=form)
        n = alone.mask.shape[1]
        torch.testing.assert_close(trace.extras["hidden_attention"][b, :, -n:, -n:],
                                   alone.extras["hidden_attention"][0], atol=1e-6, rtol=0)


def test_from_pretrained_loads_a_saved_falcon_mamba(tmp_path):
    model = tiny_falcon_mamba_lm(len(WORDS) + 2, seed=4)
    model.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    loaded = load_adapter(str(tmp_path))
    assert isinstance(loaded, MambaAdapter) and isinstance(loaded.model, FalconMambaForCausalLM)
    ids = _ids(loaded, "the movie")
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, model(ids).logits, atol=1e-6, rtol=0)
