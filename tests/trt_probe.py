"""Runs inside one TensorRT version's real bindings (see trt_bindings.py); answers on stdout as JSON.

Request (stdin): ``{"attributes": [[owner, dotted_name], ...], "calls": [[owner, name, n_positional,
[keywords]], ...]}`` where ``owner`` is a binding class name or "" for the module. Answer:
``version``, ``missing`` (attributes that do not exist), ``bad_calls`` (calls whose argument count or
keywords disagree with the binding's documented signature), ``monitor`` (what the project's
IProgressMonitor printed when TensorRT's own trampoline dispatched to it).
"""
from __future__ import annotations

import inspect
import json
import re
import sys
from typing import Any

import tensorrt_bindings as trt

sys.modules["tensorrt"] = trt  # the project's code imports "tensorrt"


def resolve(owner: str, dotted: str) -> Any:
    obj: Any = getattr(trt, owner) if owner else trt
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def split_params(text: str) -> list[str]:
    """Top-level comma split of a signature's parameter list (types hold brackets with commas)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def signatures(obj: Any, name: str) -> list[list[tuple[str, bool]]]:
    """Each documented overload of ``obj`` as [(parameter, has_default)], ``self`` dropped."""
    doc = getattr(obj, "__doc__", "") or ""
    found = []
    for match in re.finditer(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) ->", doc, re.M):
        params = [(p.split(":")[0].split("=")[0].strip(), "=" in p) for p in split_params(match.group(1))]
        found.append([p for p in params if p[0] not in ("self", "*args", "**kwargs")])
    if not found and inspect.isfunction(obj):  # a Python function of the package (e.g. trt.nptype)
        sig = inspect.signature(obj)
        found.append([(p.name, p.default is not inspect.Parameter.empty) for p in sig.parameters.values()])
    return found


def call_ok(obj: Any, name: str, n_positional: int, keywords: list[str]) -> bool:
    if inspect.isclass(obj):
        obj, name = obj.__init__, "__init__"
    for params in signatures(obj, name):
        names = [p for p, _ in params]
        required = [p for p, has_default in params if not has_default]
        if n_positional <= len(params) and all(k in names[n_positional:] for k in keywords) \
                and n_positional + len(keywords) >= len(required):
            return True
    return False


def monitor_output() -> list[str]:
    """Drive the project's monitor through TensorRT's IProgressMonitor trampoline (C++ → Python)."""
    from exporter.formats.trt_build import progress_monitor

    printed: list[str] = []
    monitor = progress_monitor(trt, printed.append)
    trt.IProgressMonitor.phase_start(monitor, "Building engine", None, 3)
    trt.IProgressMonitor.phase_start(monitor, "Tactic search", "Building engine", 7)
    keep_going = trt.IProgressMonitor.step_complete(monitor, "Building engine", 1)
    trt.IProgressMonitor.phase_finish(monitor, "Building engine")
    return printed + [f"step_complete -> {keep_going}"]


def main() -> None:
    request = json.load(sys.stdin)
    missing, bad_calls = [], []
    for owner, dotted in request["attributes"]:
        try:
            resolve(owner, dotted)
        except AttributeError:
            missing.append(f"{owner + '.' if owner else 'tensorrt.'}{dotted}")
    for owner, name, n_positional, keywords in request["calls"]:
        try:
            obj = resolve(owner, name)
        except AttributeError:
            continue  # reported as missing
        short = name.split(".")[-1]
        if not call_ok(obj, short, n_positional, keywords):
            documented = signatures(obj.__init__, "__init__") if inspect.isclass(obj) else signatures(obj, short)
            bad_calls.append(f"{owner or 'tensorrt'}.{name}: {n_positional} positional + {keywords}; "
                             f"documented: {documented}")
    json.dump({"version": trt.__version__, "missing": missing, "bad_calls": bad_calls,
               "monitor": monitor_output()}, sys.stdout)


if __name__ == "__main__":
    main()
