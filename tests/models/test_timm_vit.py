"""The optional timm ViT adapter without timm installed: attnlens imports, and a timm spec says what to install."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from attnlens.models import load_adapter
from attnlens.models._targets import ExplainError
from attnlens.models.timm_vit import TimmViTAdapter, parse_timm_spec

HAS_TIMM = importlib.util.find_spec("timm") is not None


def test_importing_attnlens_does_not_import_timm():
    code = ("import sys, attnlens, attnlens.models, attnlens.models.timm_vit, attnlens.datasets.images; "
            "assert 'timm' not in sys.modules and 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_parse_timm_spec():
    assert parse_timm_spec("timm:vit_base_patch16_224") == ("vit_base_patch16_224", None)
    assert parse_timm_spec("timm:deit_small_patch16_224=/w/deit.pth") == ("deit_small_patch16_224", "/w/deit.pth")
    assert parse_timm_spec("google/vit-base-patch16-224") is None and parse_timm_spec("vim-small=x.pth") is None
    with pytest.raises(ValueError, match="Expected `model` to be timm:MODEL_NAME or timm:MODEL_NAME=FILE, but got "
                                         "'timm:'"):
        parse_timm_spec("timm:")
    assert not TimmViTAdapter.accepts(object())


@pytest.mark.skipif(HAS_TIMM, reason="timm is installed")
@pytest.mark.parametrize("spec", ["timm:vit_tiny_patch16_224", "timm:vit_tiny_patch16_224=weights.pth"])
def test_a_timm_spec_without_timm_names_the_extra(spec):
    with pytest.raises(ExplainError, match=r"Expected the `timm` package for model 'timm:vit_tiny_patch16_224', but "
                                           r"it is not installed \(pip install attnlens\[timm\]\)\.$") as info:
        load_adapter(spec)
    assert "\n" not in str(info.value)
