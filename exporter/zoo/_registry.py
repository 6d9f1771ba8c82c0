"""Model registry: thin builders register under a public name (timm/torchvision style)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from runtimes.errors import UnknownModelError

from ._base import ZooModel


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder and where it comes from."""

    name: str
    builder: Callable[..., ZooModel]
    seed: str
    summary: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(seed: str, summary: str) -> Callable[[Callable[..., ZooModel]], Callable[..., ZooModel]]:
    """Decorator registering ``builder`` under its function name; duplicates raise."""

    def wrap(builder: Callable[..., ZooModel]) -> Callable[..., ZooModel]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, seed, summary)
        return builder

    return wrap


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; unknown names raise with the valid list."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        ) from None


def build(name: str, num_classes: int, options: dict[str, Any]) -> ZooModel:
    """Call the builder of ``name`` (no weights)."""
    return get_entry(name).builder(num_classes=num_classes, **options)
