"""The strict variant registry: duplicates raise, unknown names suggest the closest match."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from bench.errors import BenchError, did_you_mean

if TYPE_CHECKING:
    from bench.variant import Variant

_REGISTRY: dict[str, type[Variant]] = {}
_LOADED = False


def register(cls: type[Variant]) -> type[Variant]:
    """Class decorator: `@register` adds a variant under its `name`."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"variant {name!r} is registered twice ({_REGISTRY[name].__module__} and {cls.__module__})")
    _REGISTRY[name] = cls
    return cls


def _load_all() -> None:
    # Importing every module under variants/ runs its @register line.
    global _LOADED
    if _LOADED:
        return
    import variants

    for mod in pkgutil.iter_modules(variants.__path__):
        importlib.import_module(f"variants.{mod.name}")
    _LOADED = True


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> type[Variant]:
    _load_all()
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise BenchError(f"unknown variant {name!r}{did_you_mean(name, _REGISTRY)}; available: {', '.join(names())}")


def parse_list(text: str) -> list[str]:
    """'cgan,acgan' → ['cgan', 'acgan'], each checked, order kept, duplicates refused."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise BenchError(f"no variant named in {text!r}; available: {', '.join(names())}")
    for item in items:
        get(item)
    if len(set(items)) != len(items):
        raise BenchError(f"variant listed twice in {text!r}; name each once")
    return items
