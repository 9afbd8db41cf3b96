"""Name → adapter-factory table; every model family registers itself here by decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_ADAPTERS: dict[str, type] = {}


def register_adapter(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: register an adapter class under `name`.

    The class must define ``accepts(config) -> bool`` (a classmethod telling whether a
    Hugging Face config belongs to its family) and ``from_pretrained(name_or_path, **kwargs)``.
    """

    def decorator(cls: type[T]) -> type[T]:
        if name in _ADAPTERS:
            raise ValueError(f"Expected a new adapter name, but {name!r} is already registered.")
        _ADAPTERS[name] = cls
        cls.family = name  # type: ignore[attr-defined]
        return cls

    return decorator


def list_adapters() -> list[str]:
    """Sorted names of every registered adapter family."""
    return sorted(_ADAPTERS)


def get_adapter_class(name: str) -> type:
    """The adapter class registered as `name`; an unknown name lists the valid ones."""
    if name not in _ADAPTERS:
        raise ValueError(f"Expected `family` to be one of {', '.join(list_adapters())}, but got {name!r}.")
    return _ADAPTERS[name]


def adapter_for_config(config: object) -> type:
    """The first registered adapter class that accepts a Hugging Face `config`."""
    for name in list_adapters():
        cls = _ADAPTERS[name]
        if cls.accepts(config):  # type: ignore[attr-defined]
            return cls
    model_type = getattr(config, "model_type", type(config).__name__)
    raise ValueError(
        f"Expected a model of a supported family ({', '.join(list_adapters())}), but got model_type {model_type!r}."
    )


_TINY_VARIANTS: dict[str, tuple[str, Callable[[], object]]] = {}


def register_tiny_variant(name: str, *, family: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
    """Decorator: register a zero-argument factory of a tiny seeded adapter of `family` as `name`.

    Tiny variants (2 layers, 2 heads, hidden ~32, built in code) feed the one adapter contract
    test, like timm's ``test_*`` models.
    """

    def decorator(factory: Callable[[], T]) -> Callable[[], T]:
        if name in _TINY_VARIANTS:
            raise ValueError(f"Expected a new tiny variant name, but {name!r} is already registered.")
        _TINY_VARIANTS[name] = (family, factory)
        return factory

    return decorator


def list_tiny_variants(family: str | None = None) -> list[str]:
    """Sorted names of the registered tiny variants, of every family or of one."""
    return sorted(name for name, (owner, _) in _TINY_VARIANTS.items() if family is None or owner == family)


def create_tiny_adapter(name: str) -> object:
    """A fresh adapter around the tiny seeded model registered as `name`; an unknown name lists the valid ones."""
    if name not in _TINY_VARIANTS:
        raise ValueError(f"Expected `name` to be one of {', '.join(list_tiny_variants())}, but got {name!r}.")
    return _TINY_VARIANTS[name][1]()
