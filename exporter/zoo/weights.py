"""Load weights into zoo models: a local state_dict/checkpoint, or torchvision ImageNet
weights for the backbone part — offline only, never a download at run time."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torchvision.models import get_model_weights

from runtimes.errors import WeightsError, first_line

from torch import nn

_LIST_LIMIT = 8


def _short(keys: list[str]) -> str:
    more = f" … (+{len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else ""
    return ", ".join(keys[:_LIST_LIMIT]) + more


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from ``path``: ``.safetensors``, or a torch file (``.pt``/``.pth``/``.bin``: plain, or under
    'state_dict'/'model' in a checkpoint), read without executing code."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for corrupt/unsafe files
        raise WeightsError(f"cannot read weights file {path}: {first_line(exc)}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state_dict (a mapping of names to tensors)")
    return dict(obj)


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` so that every key and shape fits, else raise naming what does not."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"missing keys: {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short(unexpected)}")
    if mismatched:
        problems.append(
            "shape mismatch: "
            + _short([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched])
        )
    if problems:
        raise WeightsError(
            f"weights {source} do not fit {type(model).__name__}: {'; '.join(problems)} "
            "(was it saved from the same model and num_classes?)"
        )
    model.load_state_dict(state)


def torchvision_weights_file(arch: str, name: str) -> tuple[Path, str]:
    """(cache path, download URL) for torchvision weights ``name`` of ``arch``."""
    enum = get_model_weights(arch)
    try:
        weights = enum[name.split(".")[-1]]
    except KeyError:
        valid = ", ".join(w.name for w in enum)
        raise WeightsError(
            f"{name!r} is neither a file nor a torchvision weights name for {arch} (valid: {valid}, DEFAULT)"
        ) from None
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    return cache, weights.url


def load_backbone_weights(model: nn.Module, name: str) -> int:
    """Load torchvision ImageNet weights ``name`` into the backbone part; returns tensors loaded.

    Keys load where name (under each of ``model.torchvision_prefixes``) and shape
    match; a classifier whose ``num_classes`` differs from 1000 keeps its init.
    """
    arch = getattr(model, "torchvision_arch", None)
    if arch is None:
        raise WeightsError(f"{type(model).__name__} has no torchvision backbone; pass a state_dict file instead")
    path, url = torchvision_weights_file(arch, name)
    if not path.is_file():
        raise WeightsError(
            f"torchvision weights {name} for {arch} are not on this machine and "
            f"attn-export never downloads at run time: fetch {url} and save it as {path}"
        )
    source = read_state_dict(path)
    own = model.state_dict()
    loaded = {
        prefix + key: tensor
        for prefix in getattr(model, "torchvision_prefixes", ("",))
        for key, tensor in source.items()
        if prefix + key in own and own[prefix + key].shape == tensor.shape
    }
    if not loaded:
        raise WeightsError(f"no tensor of {path.name} fits {type(model).__name__}")
    model.load_state_dict(loaded, strict=False)
    return len(loaded)


def load_weights(model: nn.Module, weights: str | os.PathLike[str]) -> None:
    """A path to a state_dict/checkpoint loads strictly; otherwise ``weights`` names torchvision weights
    (zoo models with a torchvision backbone only)."""
    path = Path(weights)
    if path.is_file():
        load_state_dict_strict(model, read_state_dict(path), str(path))
    elif path.suffix in {".pt", ".pth", ".bin", ".ckpt", ".safetensors"} or os.sep in str(weights):
        raise WeightsError(f"weights file {path} does not exist")
    else:
        load_backbone_weights(model, str(weights))
