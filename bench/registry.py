"""The strict variant registry: duplicates raise, unknown names suggest the closest match.

Variants come from three places: the modules under variants/, installed packages that declare
an entry point in the group `gan_bench.variants`, and `module.path:ClassName` given where a
variant name is expected (imported on use, by the driver and by every trial's worker).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import BenchError, did_you_mean

if TYPE_CHECKING:
    from bench.variant import Variant

ENTRY_POINT_GROUP = "gan_bench.variants"
_REGISTRY: dict[str, type[Variant]] = {}
_LOADED = False


def register(cls: type[Variant]) -> type[Variant]:
    """Class decorator: `@register` adds a variant under its `name`."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"variant {name!r} is registered twice ({_REGISTRY[name].__module__} and {cls.__module__})")
    _REGISTRY[name] = cls
    return cls


def _checked(obj: object, where: str) -> type[Variant]:
    from bench.variant import Variant

    if not (isinstance(obj, type) and issubclass(obj, Variant)):
        raise BenchError(f"{where} is {obj!r}, not a subclass of bench.variant.Variant; see variants/cgan.py "
                         "for the shape of one")
    if getattr(obj, "__abstractmethods__", None):
        raise BenchError(f"{where} does not implement {', '.join(sorted(obj.__abstractmethods__))}")
    if not isinstance(getattr(obj, "name", None), str) or not obj.name:
        raise BenchError(f"{where} has no `name`; give the class a name = '...' attribute")
    return obj


def _load_all() -> None:
    # Importing every module under variants/ runs its @register line; then the installed plugins.
    global _LOADED
    if _LOADED:
        return
    import variants

    for mod in pkgutil.iter_modules(variants.__path__):
        importlib.import_module(f"variants.{mod.name}")
    _LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name!r} ({ep.value}) of {ep.dist.name if ep.dist else 'a package'}"
        try:
            cls = ep.load()
        except Exception as e:  # a broken plugin must not hide the others: name it and go on
            raise BenchError(f"{where} failed to import: {e}") from None
        register(_checked(cls, where))


def _from_path(spec: str) -> type[Variant]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BenchError(f"variant {spec!r}: cannot import {module_name!r} ({e}); is it installed or on "
                         "PYTHONPATH?") from None
    if not hasattr(module, attr):
        raise BenchError(f"variant {spec!r}: module {module_name!r} has no {attr!r}")
    try:
        return register(_checked(getattr(module, attr), f"variant {spec!r}"))
    except ValueError as e:  # its name is taken by another variant
        raise BenchError(f"variant {spec!r}: {e}; give the class another name") from None


def is_path(name: str) -> bool:
    """'pkg.module:Class' names a variant by import path rather than by registered name."""
    return ":" in name


def source_dir(name: str) -> Path | None:
    """The folder of a path-named variant's top-level package (shipped to a cluster's workers), or None."""
    if not is_path(name):
        return None
    top = importlib.import_module(name.partition(":")[0].split(".")[0])
    path = Path(top.__file__)
    return path.parent if path.name == "__init__.py" else path


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> type[Variant]:
    _load_all()
    if is_path(name):
        return _from_path(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise BenchError(f"unknown variant {name!r}{did_you_mean(name, _REGISTRY)}; available: {', '.join(names())} "
                     "(or module.path:ClassName)")


def parse_list(text: str) -> list[str]:
    """'cgan,acgan' → ['cgan', 'acgan'], each checked, order kept, duplicates refused."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise BenchError(f"no variant named in {text!r}; available: {', '.join(names())}")
    classes = [get(item) for item in items]
    if len(set(classes)) != len(classes):
        raise BenchError(f"variant listed twice in {text!r}; name each once")
    return items
