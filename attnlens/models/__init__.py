"""Model adapters: the only code that knows a model family."""

from attnlens.models._factory import load_adapter
from attnlens.models._registry import (
    adapter_for_config,
    create_tiny_adapter,
    get_adapter_class,
    list_adapters,
    list_tiny_variants,
    register_adapter,
    register_tiny_variant,
)
from attnlens.models._saliency import SALIENCY_POSITIONS, SALIENCY_REDUCTIONS, reduce_saliency
from attnlens.models._targets import ExplainError, resolve_target
from attnlens.models.base import Adapter
from attnlens.models.hf_causal_text import CausalTextClassifierAdapter
from attnlens.models.hf_hybrid import JambaAdapter
from attnlens.models.hf_mamba import MambaAdapter, ScanInputs
from attnlens.models.hf_mamba2 import Mamba2Adapter
from attnlens.models.hf_mamba_classifier import MambaClassifierAdapter
from attnlens.models.hf_text import TextClassifierAdapter, load_text_classifier
from attnlens.models.hf_vit import ViTAdapter
from attnlens.models.vim_adapter import VimAdapter
from attnlens.models import _tiny  # noqa: F401, E402 - registers the tiny test_* variants
from attnlens.models import _tiny_hybrid  # noqa: F401, E402 - registers test_jamba
from attnlens.models import _tiny_vision  # noqa: F401, E402 - registers test_vit and test_deit
from attnlens.models import _tiny_mamba_classifier  # noqa: F401, E402 - registers test_mamba_classifier
from attnlens.models import _tiny_mamba2  # noqa: F401, E402 - registers test_mamba2

__all__ = [
    "SALIENCY_POSITIONS",
    "SALIENCY_REDUCTIONS",
    "Adapter",
    "CausalTextClassifierAdapter",
    "ExplainError",
    "JambaAdapter",
    "Mamba2Adapter",
    "MambaAdapter",
    "MambaClassifierAdapter",
    "ScanInputs",
    "TextClassifierAdapter",
    "ViTAdapter",
    "VimAdapter",
    "adapter_for_config",
    "create_tiny_adapter",
    "get_adapter_class",
    "list_adapters",
    "list_tiny_variants",
    "load_adapter",
    "load_text_classifier",
    "reduce_saliency",
    "register_adapter",
    "register_tiny_variant",
    "resolve_target",
]
