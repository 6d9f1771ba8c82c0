"""The attention zoo: ``create_model(name, ...)`` and ``list_models()``.

Importing this package registers every model (one thin builder each); installed plugins
register theirs through the ``attn_export.models`` entry points (``_registry``).
"""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from . import c2f_net, resnet, transformer, vgg  # noqa: F401  (registration side effect)
from ._base import ZooModel
from ._registry import ModelEntry, get_entry, list_models, register_model
from ._registry import build as _build
from .weights import load_weights

__all__ = ["ModelEntry", "ZooModel", "create_model", "get_entry", "list_models", "register_model"]


def create_model(
    name: str, *, num_classes: int = 1000, weights: str | os.PathLike[str] | None = None, **options: Any
) -> nn.Module:
    """Build zoo (or plugin) model ``name`` in eval mode.

    ``weights``: a local state_dict/checkpoint file (loaded strictly: missing,
    unexpected or mis-shaped keys raise ``WeightsError`` listing them), or a
    torchvision weights name such as ``IMAGENET1K_V1`` for the backbone part
    (read from torch hub's cache only). ``options`` go to the builder.
    """
    model = _build(name, num_classes, options)
    if weights is not None:
        load_weights(model, weights)
    return model.eval()
