"""MODEL on the command line → a built ``nn.Module`` (with what its source knows of its inputs and
preprocessing) and the folder name it exports under.

MODEL is a zoo or plugin name (``exporter.zoo``'s registry), ``timm:NAME``, ``torchvision:NAME``
(``exporter.sources.model_hubs``; these two prefixes win over a module of that name),
``path/to/file.py:callable`` or ``package.module:callable``. The builder gets ``--model-arg KEY=VALUE``
keyword arguments (values parsed as Python literals) and must return an ``nn.Module``; registered builders
also get ``num_classes``. Weights are loaded later, by the pipeline, for every kind of source alike.
Everything wrong here is a ``ModelSourceError`` (exit 2) that says what to change.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from exporter.errors import ModelSourceError
from exporter.sources.model_hubs import SourceModel, build_hub_model, hub_reference
from exporter.zoo import create_model, get_entry

MODEL_FORMS = ("a zoo or plugin name (attn-export --list), timm:NAME, torchvision:NAME, path/to/file.py:callable "
               "or package.module:callable")


def is_callable_reference(model: str) -> bool:
    """``file.py:fn``, ``pkg.mod:fn``, ``timm:NAME`` or ``torchvision:NAME`` (anything with a ``:``), as opposed
    to a registered name."""
    return ":" in model


def parse_model_args(items: Sequence[str]) -> dict[str, Any]:
    """``["num_classes=10", "name='small'"]`` → ``{"num_classes": 10, "name": "small"}`` (Python literals)."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ModelSourceError(f"--model-arg {item!r}: expected KEY=VALUE, e.g. --model-arg num_classes=10")
        try:
            parsed[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise ModelSourceError(
                f"--model-arg {item!r}: {text!r} is not a Python literal (numbers, True/False/None, "
                f"quoted strings, lists, dicts); quote a string like {key}=\"'{text}'\""
            ) from None
    return parsed


def _import_file(path: Path) -> Any:
    """Import ``path`` as a module of its own (a unique name, so two files called model.py never collide)."""
    if not path.is_file():
        raise ModelSourceError(f"model file {path} does not exist")
    name = f"attn_export_user_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"{path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModelSourceError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> Any:
    """Import ``name`` as uvicorn/gunicorn do: the current folder is searched first, then sys.path."""
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ModelSourceError(f"module {name!r} cannot be imported: {exc} (is it installed, or on PYTHONPATH?)") \
            from exc
    except Exception as exc:
        raise ModelSourceError(f"importing module {name!r} failed: {type(exc).__name__}: {exc}") from exc


def load_callable(reference: str) -> Callable[..., Any]:
    """The callable ``reference`` names: ``path/to/file.py:fn`` or ``package.module:fn`` (``fn`` may be dotted)."""
    where, _, attribute = reference.rpartition(":")
    if not where or not attribute:
        raise ModelSourceError(f"model {reference!r}: expected {MODEL_FORMS}")
    module = _import_file(Path(where)) if where.endswith(".py") else _import_module(where)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelSourceError(f"{where} has no callable {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelSourceError(f"{where}:{attribute} is a {type(target).__name__}, not a callable returning a module")
    return target


def default_name(model: str) -> str:
    """The folder name for ``model``: the registered name, a timm/torchvision model's name, or the callable's
    last name part."""
    hub = hub_reference(model)
    if hub:
        return hub[1]
    return model.rpartition(":")[2].rpartition(".")[2] if is_callable_reference(model) else model


def build_source(model: str, model_args: dict[str, Any] | None = None, num_classes: int = 1000) -> SourceModel:
    """Build ``model`` in eval mode without weights (the pipeline loads ``--weights``), with the input specs
    and preprocessing a timm or torchvision model's configuration gives."""
    if hub_reference(model):
        source = build_hub_model(model, dict(model_args or {}))
        source.module.eval()
        return source
    return SourceModel(build_module(model, model_args, num_classes))


def build_module(model: str, model_args: dict[str, Any] | None = None, num_classes: int = 1000) -> nn.Module:
    """Build a zoo, plugin or callable ``model`` in eval mode without weights."""
    kwargs = dict(model_args or {})
    if not is_callable_reference(model):
        get_entry(model)  # unknown names raise listing the valid ones
        kwargs.setdefault("num_classes", num_classes)
        factory: Callable[..., Any] = lambda **kw: create_model(model, **kw)  # noqa: E731
    else:
        factory = load_callable(model)
    try:
        module = factory(**kwargs)
    except TypeError as exc:  # wrong or missing keyword arguments
        raise ModelSourceError(f"{model}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {exc}; "
                               "check --model-arg") from exc
    if not isinstance(module, nn.Module):
        raise ModelSourceError(f"{model} returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval()
