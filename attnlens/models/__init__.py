"""Model adapters: the only code that knows a model family."""

from attnlens.models._factory import load_adapter
from attnlens.models._registry import adapter_for_config, get_adapter_class, list_adapters, register_adapter
from attnlens.models._saliency import SALIENCY_REDUCTIONS, reduce_saliency
from attnlens.models.hf_mamba import MambaAdapter, ScanInputs
from attnlens.models.hf_text import ExplainError, TextClassifierAdapter, load_text_classifier

__all__ = [
    "SALIENCY_REDUCTIONS",
    "ExplainError",
    "MambaAdapter",
    "ScanInputs",
    "TextClassifierAdapter",
    "adapter_for_config",
    "get_adapter_class",
    "list_adapters",
    "load_adapter",
    "load_text_classifier",
    "reduce_saliency",
    "register_adapter",
]
