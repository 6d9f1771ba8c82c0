"""``timm:NAME`` and ``torchvision:NAME``: the libraries most users' backbones come from, by name.

Each builds the module (``timm.create_model`` / ``torchvision.models.get_model``, with ``--model-arg``
keyword arguments) and reads, from the model's own configuration, what the user would otherwise spell
out: the image input spec (timm's ``pretrained_cfg`` ``input_size``; torchvision's weights' crop size, 224
where the weights say nothing) and the preprocessing it was trained with (timm's data config:
interpolation, crop_pct, crop_mode, mean and std; torchvision's weights' transforms). No hub is contacted
unless the user asks for pretrained weights (``--model-arg pretrained=True``); ``--weights FILE`` loads
them offline.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from exporter.errors import ModelSourceError
from runtimes.errors import first_line
from runtimes.images import CROP_MODES, INTERPOLATIONS, Preprocess
from runtimes.specs import BATCH, TensorSpec

TORCHVISION_DEFAULT_SIZE = 224


@dataclass(frozen=True)
class SourceModel:
    """A built module and what its source knows about it: input specs and preprocessing (``None``: not known,
    the module's own ``input_specs`` or ``--input`` must say)."""

    module: nn.Module
    input_specs: tuple[TensorSpec, ...] | None = None
    preprocess: Preprocess | None = None


def image_spec(module: nn.Module, height: int, width: int, channels: int = 3) -> tuple[TensorSpec, ...]:
    """The one image input, named as ``forward``'s first parameter (``x`` in timm and torchvision)."""
    first = next(iter(inspect.signature(module.forward).parameters), "x")
    return (TensorSpec(first, (BATCH, channels, height, width)),)


def _call(builder: Callable[..., Any], call: str, arguments: dict[str, Any]) -> nn.Module:
    """``builder(**arguments)``, every failure one ``ModelSourceError`` line that shows the call as ``call(...)``."""
    try:
        module = builder(**arguments)
    except Exception as exc:  # unknown names, bad kwargs, a hub that cannot be reached: one line each
        shown = f"{call}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
        raise ModelSourceError(f"{shown} failed: {type(exc).__name__}: {first_line(exc)}; check the name and "
                               "--model-arg") from exc
    if not isinstance(module, nn.Module):
        raise ModelSourceError(f"{call} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def _interpolation(name: Any) -> str:
    """timm / torchvision interpolation names (``bicubic``, ``InterpolationMode.BICUBIC``) → ours."""
    text = str(getattr(name, "value", name)).lower().rpartition(".")[2]
    return text if text in INTERPOLATIONS else "bilinear"


def build_timm(name: str, kwargs: dict[str, Any]) -> SourceModel:
    """``timm.create_model(name, **kwargs)``; input size and preprocessing from its data config."""
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError as exc:
        raise ModelSourceError(f"timm:{name} needs timm: pip install 'attn-export[export]' ({exc})") from exc
    if name.partition(".")[0] not in timm.list_models():  # NAME or NAME.pretrained_tag
        close = timm.list_models(f"*{name.partition('.')[0][:6]}*")[:8]
        raise ModelSourceError(f"timm has no model {name!r}{f' (similar: {close})' if close else ''}; "
                               "timm.list_models() lists them")
    module = _call(timm.create_model, "timm.create_model", {"model_name": name, **kwargs})
    config = resolve_data_config({}, model=module)
    channels, height, width = (int(v) for v in config["input_size"])
    size = kwargs.get("img_size")  # create_model(img_size=…) does not update the pretrained_cfg
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mode = config.get("crop_mode") or "center"
    preprocess = Preprocess(height, width, _interpolation(config.get("interpolation", "bilinear")),
                            float(config.get("crop_pct") or 1.0), mode if mode in CROP_MODES else "center",
                            tuple(float(v) for v in config["mean"]), tuple(float(v) for v in config["std"]))
    return SourceModel(module, image_spec(module, height, width, channels), preprocess)


def _torchvision_weights(name: str, kwargs: dict[str, Any]) -> Any:
    """The weights enum member whose transforms describe the model: ``weights=`` if given, else DEFAULT."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(name)
    except (ValueError, KeyError):
        return None
    chosen = kwargs.get("weights") or "DEFAULT"
    try:
        return enum[str(chosen).rpartition(".")[2]] if isinstance(chosen, str) else chosen
    except KeyError:
        return None


def build_torchvision(name: str, kwargs: dict[str, Any]) -> SourceModel:
    """``torchvision.models.get_model(name, **kwargs)``; ``pretrained=True`` means ``weights="DEFAULT"``.
    Input size and preprocessing from the weights' transforms (224, bilinear, resize 256 where they say
    nothing)."""
    import torchvision

    if name not in torchvision.models.list_models():
        raise ModelSourceError(f"torchvision has no model {name!r}; torchvision.models.list_models() lists them")
    if kwargs.pop("pretrained", False):
        kwargs.setdefault("weights", "DEFAULT")
    module = _call(torchvision.models.get_model, "torchvision.models.get_model", {"name": name, **kwargs})
    weights = _torchvision_weights(name, kwargs)
    keywords = dict(getattr(getattr(weights, "transforms", None), "keywords", {}) or {})
    crop = int(keywords.get("crop_size", TORCHVISION_DEFAULT_SIZE))
    resize = int(keywords.get("resize_size", round(crop * 256 / 224)))
    preprocess = Preprocess(crop, crop, _interpolation(keywords.get("interpolation", "bilinear")),
                            min(1.0, crop / resize), "center",
                            tuple(float(v) for v in keywords.get("mean", (0.485, 0.456, 0.406))),
                            tuple(float(v) for v in keywords.get("std", (0.229, 0.224, 0.225))))
    return SourceModel(module, image_spec(module, crop, crop), preprocess)


HUBS: dict[str, Callable[[str, dict[str, Any]], SourceModel]] = {"timm": build_timm, "torchvision": build_torchvision}


def hub_reference(model: str) -> tuple[str, str] | None:
    """``("timm", NAME)`` for ``timm:NAME`` (likewise torchvision), else ``None``. These prefixes win over
    ``package.module:callable``: a module literally named ``timm`` is reached as ``path/to/timm.py:fn``."""
    prefix, sep, name = model.partition(":")
    return (prefix, name) if sep and prefix in HUBS and name else None


def build_hub_model(model: str, kwargs: dict[str, Any]) -> SourceModel:
    prefix, name = hub_reference(model) or ("", "")
    return HUBS[prefix](name, dict(kwargs))
