"""Model adapters: the only code that knows a model family."""

from attnlens.models._registry import adapter_for_config, get_adapter_class, list_adapters, register_adapter
from attnlens.models.hf_text import ExplainError, TextClassifierAdapter, load_text_classifier, reduce_saliency

__all__ = [
    "ExplainError",
    "TextClassifierAdapter",
    "adapter_for_config",
    "get_adapter_class",
    "list_adapters",
    "load_text_classifier",
    "reduce_saliency",
    "register_adapter",
]
