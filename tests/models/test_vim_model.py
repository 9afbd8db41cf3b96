"""Vision Mamba in plain PyTorch: the official reference case, the official state-dict schema, the scan
against a token-by-token loop, checkpoint and folder loading."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens._checks import ArgumentError
from attnlens.methods.hidden_attention import hidden_attention
from attnlens.models import load_adapter
from attnlens.models.vim import (
    VIM_CONFIGS,
    VimConfig,
    VisionMamba,
    load_vim_checkpoint,
    load_vim_folder,
    save_vim_folder,
    selective_scan,
)
from attnlens.models.vim_adapter import TINY_VIM_CONFIG, tiny_vim
from tests.conftest import SHARED_DATA

VIM_DATA = SHARED_DATA / "vim"
needs_vim_data = pytest.mark.skipif(not (VIM_DATA / "vim_reduced_case.safetensors").is_file(),
                                    reason=f"Vim reference fixtures not found under {VIM_DATA}")
SCHEMA_NAMES = {  # create-function prefixes of the schema → attnlens names
    "vim_tiny_patch16_224": "vim-tiny", "vim_small_patch16_224": "vim-small",
    "vim_tiny_patch16_stride8_224": "vim-tiny-stride8", "vim_small_patch16_stride8_224": "vim-small-stride8",
}


def _schema() -> dict:
    return json.loads((VIM_DATA / "vim_state_dict_schema.json").read_text())


def _schema_config(name: str) -> dict:
    for function, config in _schema()["configs"].items():
        if function.split("_bimamba")[0] == next(k for k, v in SCHEMA_NAMES.items() if v == name):
            return config
    raise KeyError(name)


# --- the reference case ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reduced():
    from safetensors.torch import load_file

    config = json.loads((VIM_DATA / "vim_reduced_config.json").read_text())
    model = VisionMamba(VimConfig.from_constructor_args(config["effective_constructor_args"]))
    model.load_state_dict(load_file(str(VIM_DATA / "vim_reduced.safetensors")), strict=True)
    return model.eval(), load_file(str(VIM_DATA / "vim_reduced_case.safetensors"))


@needs_vim_data
def test_reduced_case_logits_features_and_every_residual_stream(reduced):
    model, case = reduced
    record = []
    with torch.no_grad():
        tokens = model.embed(case["input"])
        final = model.forward_hidden(tokens, record=record)
        logits = model(case["input"])
        features = model(case["input"], return_features=True)
    close = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, case["logits"], **close)
    torch.testing.assert_close(features, case["features"], **close)
    torch.testing.assert_close(tokens, case["tokens_embedded"], **close)
    torch.testing.assert_close(final, case["final_norm"], **close)
    assert len(record) == 4
    for i, layer in enumerate(record):
        torch.testing.assert_close(layer.residual, case[f"layers.{i}.residual"], **close)
        torch.testing.assert_close(layer.mixer_out, case[f"layers.{i}.mixer_out"], **close)
        torch.testing.assert_close(model.layers[i].norm(layer.residual), case[f"layers.{i}.mixer_in"], **close)
    torch.testing.assert_close(record[3].residual + record[3].mixer_out, case["final_residual"], **close)


@needs_vim_data
def test_reduced_case_scan_tensors_and_hidden_attention(reduced):
    model, case = reduced
    record = []
    with torch.no_grad():
        model.forward_hidden(model.embed(case["input"]), record=record)
    for direction, scan in (("fwd", record[0].forward), ("bwd", record[0].backward)):
        for name in ("u", "B", "C", "z"):
            torch.testing.assert_close(getattr(scan, name), case[f"scan.0.{direction}.{name}"], atol=1e-6, rtol=1e-5)
        out_z = (selective_scan(scan.u, scan.delta, scan.A, scan.B, scan.C) + scan.D[:, None] * scan.u) \
            * torch.nn.functional.silu(scan.z)
        torch.testing.assert_close(out_z, case[f"scan.0.{direction}.out_z"], atol=1e-5, rtol=1e-4)
    for i in (0, 3):
        for direction, scan in (("fwd", record[i].forward), ("bwd", record[i].backward)):
            alpha = hidden_attention(scan.delta, scan.A, scan.B, scan.C, channels="none")
            if direction == "bwd":  # the reference flips the backward matrices back to token order
                alpha = alpha.flip(-1, -2)
            torch.testing.assert_close(alpha, case[f"attn.{i}.{direction}"], atol=1e-6, rtol=0)
            torch.testing.assert_close(alpha.mean(dim=1), case[f"attn.{i}.{direction}_mean"], atol=1e-6, rtol=0)


# --- the schema -------------------------------------------------------------------------------------


@needs_vim_data
@pytest.mark.parametrize("name", list(VIM_CONFIGS))
def test_every_official_config_has_exactly_the_schema_keys_and_shapes(name):
    schema = _schema_config(name)
    config = VimConfig.from_constructor_args(schema["effective_constructor_args"])
    assert config == VIM_CONFIGS[name]
    assert (config.grid, config.seq_len, config.cls_position) == (
        tuple(schema["derived"]["grid_size"]), schema["derived"]["seq_len"], schema["derived"]["cls_token_index"])
    assert (config.d_inner, config.dt_rank) == (schema["mixer"]["d_inner"], schema["mixer"]["dt_rank"])
    with torch.device("meta"):
        model = VisionMamba(name)
    state = model.state_dict()
    assert [(key, tuple(value.shape)) for key, value in state.items()] == [
        (entry["key"], tuple(entry["shape"])) for entry in schema["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == schema["derived"]["num_parameters"]
    assert not list(model.buffers())


@pytest.mark.parametrize(("key", "value", "message"), [
    ("if_rope", True, r"Expected `if_rope` to be False \(rotary position embeddings are not supported\), but got True"),
    ("bimamba_type", "v1", r"Expected `bimamba_type` to be 'v2' \(only bimamba v2 is supported\), but got 'v1'"),
    ("rms_norm", False, r"Expected `rms_norm` to be True"),
    ("use_double_cls_token", True, r"Expected `use_double_cls_token` to be False"),
    ("flip_img_sequences_ratio", 0.5, r"Expected `flip_img_sequences_ratio` to be at most 0"),
    ("if_devide_out", "yes", r"Expected `if_devide_out` to be True or False, but got 'yes'"),
    ("something", 1, r"Expected `something` to be a VisionMamba constructor argument, but it is unknown"),
    ("ssm_cfg", {"d_state": 8, "nope": 1}, r"Expected `ssm_cfg.nope` to be a Mamba mixer argument"),
    ("embed_dim", 0, r"Expected `embed_dim` to be a positive integer, but got 0"),
])
def test_unsupported_constructor_arguments_are_refused_by_name(key, value, message):
    with pytest.raises(ValueError, match=message):
        VimConfig.from_constructor_args({"embed_dim": 64, key: value})


def test_constructor_argument_spellings_and_round_trip():
    config = VimConfig.from_constructor_args({"embed_dim": 64, "if_divide_out": False, "use_middle_cls_token": False,
                                              "ssm_cfg": {"d_state": 8, "dt_rank": "auto", "dt_min": 0.01}})
    assert (config.divide_out, config.cls_position, config.d_state, config.dt_rank) == (False, 0, 8, 4)
    assert VimConfig.from_constructor_args(config.constructor_args()) == config
    with pytest.raises(ValueError, match="Expected `config` to be one of vim-tiny, vim-small, "):
        VisionMamba("vim-huge")


def test_first_class_token_and_undivided_output_variants_run():
    config = VimConfig(img_size=8, patch_size=4, stride=4, depth=1, embed_dim=8, num_classes=2,
                       use_middle_cls_token=False, divide_out=False)
    model = VisionMamba(config).eval()
    images = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        hidden = model.forward_hidden(model.embed(images))
        torch.testing.assert_close(model(images), model.head(hidden[:, 0]))
    with pytest.raises(ValueError, match=r"Expected `images` to have shape \(B, 3, 8, 8\), but got \(2, 3, 9, 9\)"):
        model(torch.zeros(2, 3, 9, 9))


@settings(max_examples=15, deadline=None)
@given(side=st.integers(2, 5), middle=st.booleans(), seed=st.integers(0, 2**16))
def test_class_token_insertion_keeps_every_patch_in_grid_order(side, middle, seed):
    config = VimConfig(img_size=2 * side, patch_size=2, stride=2, depth=1, embed_dim=4, num_classes=2,
                       use_middle_cls_token=middle)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VisionMamba(config)
        images = torch.randn(1, 3, 2 * side, 2 * side)
    with torch.no_grad():
        tokens = model.embed(images) - model.pos_embed
        patches = model.patch_embed(images)
    p = config.cls_position
    assert p == (side * side // 2 if middle else 0)
    torch.testing.assert_close(tokens[0, p], model.cls_token[0, 0].detach())
    torch.testing.assert_close(torch.cat([tokens[:, :p], tokens[:, p + 1:]], dim=1), patches)


# --- the scan -----------------------------------------------------------------------------------------


def _reference_scan(u, delta, A, B, C):
    """Token-by-token recurrence (Gu & Dao 2023, Algorithm 2), as the reference `selective_scan_ref`."""
    batch, channels, n = u.shape
    state = torch.zeros(batch, channels, A.shape[1], dtype=u.dtype)
    out = []
    for t in range(n):
        inputs = (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        state = torch.exp(delta[:, :, t, None] * A) * state + inputs
        out.append((state * C[:, None, :, t]).sum(dim=-1))
    return torch.stack(out, dim=-1)


def _scan_inputs(generator, batch, channels, states, n, dtype=torch.float64):
    u = torch.randn(batch, channels, n, generator=generator, dtype=dtype)
    delta = torch.nn.functional.softplus(torch.randn(batch, channels, n, generator=generator, dtype=dtype))
    A = -torch.exp(torch.randn(channels, states, generator=generator, dtype=dtype))
    B = torch.randn(batch, states, n, generator=generator, dtype=dtype)
    C = torch.randn(batch, states, n, generator=generator, dtype=dtype)
    return u, delta, A, B, C


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 2), channels=st.integers(1, 3), states=st.integers(1, 3), n=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_scan_and_its_gradients_equal_the_token_loop(batch, channels, states, n, seed):
    generator = torch.Generator().manual_seed(seed)
    inputs = [x.requires_grad_(True) for x in _scan_inputs(generator, batch, channels, states, n)]
    weights = torch.randn(batch, channels, n, generator=generator, dtype=torch.float64)
    got = selective_scan(*inputs)
    expected = _reference_scan(*inputs)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)
    grads = torch.autograd.grad((got * weights).sum(), inputs)
    reference = torch.autograd.grad((expected * weights).sum(), inputs)
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-8)


def test_scan_equals_hidden_attention_times_u():
    generator = torch.Generator().manual_seed(3)
    u, delta, A, B, C = _scan_inputs(generator, 2, 4, 3, 11)
    alpha = hidden_attention(delta, A, B, C, channels="none")  # (B, E, n, n)
    torch.testing.assert_close(selective_scan(u, delta, A, B, C), (alpha @ u[..., None])[..., 0], atol=1e-12, rtol=0)


def test_model_gradients_reach_every_parameter():
    model = tiny_vim().train()
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(p.grad.abs().sum() > 0 for name, p in model.named_parameters() if "A_" in name or name.endswith("D"))


# --- checkpoints and folders ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A Vim-Ti checkpoint built from the schema alone (random weights), saved as the official files are."""
    generator = torch.Generator().manual_seed(0)
    state = {entry["key"]: 0.02 * torch.randn(*entry["shape"], generator=generator)
             for entry in _schema_config("vim-tiny")["state_dict"]}
    path = tmp_path_factory.mktemp("vim-ti") / "vim_t_midclstok_random.pth"
    torch.save({"model": state, "optimizer": {}, "epoch": 3}, path)
    return path, state


@needs_vim_data
def test_official_tiny_checkpoint_loads_by_spec(tiny_checkpoint):
    path, state = tiny_checkpoint
    adapter = load_adapter(f"vim-tiny={path}")
    assert adapter.family == "vim" and adapter.num_layers == 24 and adapter.num_tokens == 197
    loaded = adapter.model.state_dict()
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
    assert adapter.preprocessing.resize_to == 256 and adapter.preprocessing.crop == (224, 224)
    bare = path.with_name("bare.pt")
    torch.save(state, bare)
    assert torch.equal(load_vim_checkpoint(bare, "vim-tiny").pos_embed, state["pos_embed"])


@needs_vim_data
def test_mismatching_checkpoint_names_missing_unexpected_and_reshaped_keys(tiny_checkpoint, tmp_path):
    _, state = tiny_checkpoint
    broken = dict(state)
    del broken["layers.3.mixer.D_b"]
    broken["layers.0.mixer.extra"] = torch.zeros(3)
    broken["pos_embed"] = torch.zeros(1, 196, 192)
    path = tmp_path / "broken.pth"
    torch.save({"model": broken}, path)
    pattern = (r"Expected `model` to hold the state dict of a Vim with embed_dim 192, depth 24 and 197 tokens "
               r"\(415 tensors\), but got 1 missing key\(s\) \[layers.3.mixer.D_b\], 1 unexpected key\(s\) "
               r"\[layers.0.mixer.extra\], 1 shape mismatch\(es\) \(checkpoint vs model\) "
               r"\[pos_embed \(1, 196, 192\) vs \(1, 197, 192\)\]\.$")
    with pytest.raises(ArgumentError, match=pattern) as caught:
        load_adapter(f"vim-tiny={path}")
    assert caught.value.argument == "model" and "\n" not in str(caught.value)


@needs_vim_data
def test_checkpoint_for_another_model_is_refused_in_one_line(tiny_checkpoint):
    path, _ = tiny_checkpoint
    with pytest.raises(ArgumentError, match=r"Expected `model` to hold the state dict of a Vim with embed_dim 384, "
                                            r".*0 missing key\(s\) \[\], 0 unexpected key\(s\) \[\], 414 shape "
                                            r"mismatch\(es\) .*, … and 409 more\]\.$"):
        load_adapter(f"vim-small={path}")


def test_bad_specs_and_files(tmp_path):
    with pytest.raises(ArgumentError, match="Expected `model` to name a Vim checkpoint file, but .*nope.pth does not "
                                            "exist"):
        load_adapter(f"vim-small={tmp_path / 'nope.pth'}")
    with pytest.raises(ArgumentError, match=r"Expected `model` to be vim-small=PATH with a path, but got 'vim-small='"):
        load_adapter("vim-small=")
    with pytest.raises(ArgumentError, match="Expected `model` vim=DIR to name a Vim folder, but .* is not a folder"):
        load_adapter(f"vim={tmp_path / 'missing'}")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(ArgumentError, match="Expected `model` to be a readable checkpoint, but .*junk.pth could not "
                                            "be loaded"):
        load_adapter(f"vim-tiny={junk}")
    torch.save({"weights": [1, 2]}, junk)
    with pytest.raises(ArgumentError, match="Expected `model` to hold a state dict"):
        load_adapter(f"vim-tiny={junk}")


def test_folder_round_trip_with_labels_safetensors_and_pth(tmp_path):
    model = tiny_vim()
    from attnlens.datasets.images import ImagePreprocessing

    preprocessing = ImagePreprocessing(size=(16, 16), resize_to=20, crop=(16, 16), mean=(0.1, 0.2, 0.3))
    folder = save_vim_folder(model, tmp_path / "tiny", labels=["a", "b", "c"], preprocessing=preprocessing)
    images = torch.randn(2, 3, 16, 16)
    loaded = load_vim_folder(folder)
    assert loaded.config == TINY_VIM_CONFIG
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=0, rtol=0)
    adapter = load_adapter(f"vim={folder}")
    assert [adapter.label(i) for i in range(3)] == ["a", "b", "c"] and adapter.preprocessing == preprocessing
    (folder / "model.safetensors").rename(folder / "weights.safetensors")
    assert load_vim_folder(folder).config == TINY_VIM_CONFIG  # the one weights file there
    (folder / "weights.safetensors").unlink()
    torch.save({"model": model.state_dict()}, folder / "a.pth")
    torch.save({"model": model.state_dict()}, folder / "b.pth")
    with pytest.raises(ArgumentError, match="Expected `model` to hold model.safetensors or exactly one .pth file, "
                                            "but .* holds 2"):
        load_vim_folder(folder)
    (folder / "b.pth").unlink()
    with torch.no_grad():
        torch.testing.assert_close(load_vim_folder(folder)(images), model(images), atol=0, rtol=0)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "if_rope": True}))
    with pytest.raises(ArgumentError, match=r"Expected `if_rope` to be False .*\(in .*config.json\)"):
        load_vim_folder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ArgumentError, match="Expected `model` to be a Vim folder with a config.json, but .* has none"):
        load_vim_folder(folder)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 12))
def test_flipping_the_tokens_equals_swapping_the_two_directions(seed, n):
    """The backward branch is the forward branch on the flipped sequence: with every mixer's forward and
    backward parameters swapped, the blocks map flipped tokens to the flipped hidden states."""
    model = tiny_vim(seed=seed % 7)
    swapped = tiny_vim(seed=seed % 7)
    with torch.no_grad():
        for layer in swapped.layers:
            mixer = layer.mixer
            for forward, backward in (("A_log", "A_b_log"), ("D", "D_b"), ("conv1d", "conv1d_b"),
                                      ("x_proj", "x_proj_b"), ("dt_proj", "dt_proj_b")):
                one, other = getattr(mixer, forward), getattr(mixer, backward)
                for a, b in zip(one.parameters() if isinstance(one, torch.nn.Module) else [one],
                                other.parameters() if isinstance(other, torch.nn.Module) else [other]):
                    saved = a.detach().clone()
                    a.copy_(b)
                    b.copy_(saved)
        tokens = torch.randn(2, n, TINY_VIM_CONFIG.embed_dim, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(swapped.forward_hidden(tokens.flip(1)), model.forward_hidden(tokens).flip(1),
                                   atol=1e-5, rtol=1e-5)
