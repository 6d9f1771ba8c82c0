"""Model registry: thin builders register under a public name (timm/torchvision style).

The zoo registers its own builders at import; installed packages add theirs through the
``attn_export.models`` entry-point group (each entry point names a module whose import runs
``@register_model``), loaded once, on the first look-up. A name registered twice — zoo or
plugin — is an error naming both packages.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterator

from torch import nn

from runtimes.errors import AttnExportError, UnknownModelError

PLUGIN_GROUP = "attn_export.models"
ZOO_PACKAGE = "attn-export"


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder, and the package that registered it (``attn-export`` for the zoo)."""

    name: str
    builder: Callable[..., nn.Module]
    seed: str
    summary: str
    package: str = ZOO_PACKAGE


class PluginError(AttnExportError):
    """A plugin that cannot be imported, or a model name registered twice (exit 2)."""


_REGISTRY: dict[str, ModelEntry] = {}
_registering_package = ZOO_PACKAGE
_plugins_loaded = False


def register_model(seed: str, summary: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``builder`` under its function name; a name taken already raises,
    naming both packages. Builders take ``num_classes`` and return a module with ``input_specs``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise PluginError(f"model {name!r} of {_registering_package} clashes with {name!r} of "
                              f"{_REGISTRY[name].package}; rename one of them")
        _REGISTRY[name] = ModelEntry(name, builder, seed, summary, _registering_package)
        return builder

    return wrap


@contextmanager
def _registering(package: str) -> Iterator[None]:
    global _registering_package
    previous, _registering_package = _registering_package, package
    try:
        yield
    finally:
        _registering_package = previous


def load_plugins() -> None:
    """Import every ``attn_export.models`` entry point once (their ``@register_model`` calls run)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in metadata.entry_points(group=PLUGIN_GROUP):
        package = point.dist.name if point.dist is not None else point.value
        with _registering(package):
            try:
                point.load()
            except PluginError:
                raise
            except Exception as exc:  # a broken plugin names itself instead of a bare traceback
                raise PluginError(f"plugin {package} ({point.value}) failed to import: "
                                  f"{type(exc).__name__}: {exc}") from exc


def list_models() -> list[str]:
    """Every registered model name (zoo and plugins), sorted."""
    load_plugins()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; unknown names raise with the valid list."""
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())} "
            "(or give path/to/file.py:callable or package.module:callable)"
        ) from None


def build(name: str, num_classes: int, options: dict[str, Any]) -> nn.Module:
    """Call the builder of ``name`` (no weights)."""
    return get_entry(name).builder(num_classes=num_classes, **options)
