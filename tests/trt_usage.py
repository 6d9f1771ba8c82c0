"""Every TensorRT attribute and call the project's TensorRT code makes, read from its source (AST), so a
new TensorRT call cannot escape the check against the real bindings (test_trt_api.py).

An attribute chain is attributed to a TensorRT class by the name of the variable it starts from
(``config.set_flag`` → ``IBuilderConfig.set_flag``; ``self.context.x`` → ``IExecutionContext.x``) or by
the call that returned it (``config.get_timing_cache().serialize`` → ``ITimingCache.serialize``). Every
variable an attribute is read from must be classified here, TensorRT or not: an unknown one fails the
check, so a new variable holding a TensorRT object must be added to ``RECEIVERS``.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
TRT_FILES = ("exporter/formats/trt_build.py", "runtimes/engines/trt_rt.py", "runtimes/engines/trt_common.py")
RECEIVERS = {
    "trt": "", "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
    "config": "IBuilderConfig", "profile": "IOptimizationProfile", "engine": "ICudaEngine",
    "cuda_engine": "ICudaEngine", "context": "IExecutionContext", "runtime": "Runtime", "cache": "ITimingCache",
    "logger": "Logger",
}
RETURNS = {("IBuilderConfig", "get_timing_cache"): "ITimingCache"}
NOT_TENSORRT = {
    "self", "np", "time", "torch", "cudart", "props", "path", "spec", "s", "timing_cache", "plan", "stream", "out",
    "tmp", "batch", "printer", "array", "onnx_files", "err", "staged", "exc", "built", "version", "trt_version",
    "dims", "feeds", "name", "sizes",
}

Usage = tuple[set[tuple[str, str]], list[tuple[str, str, int, list[str]]], set[str]]


def _chain(node: ast.Attribute) -> tuple[str, list[str]] | None:
    """(receiver, attribute names) of an attribute chain, or None when it starts elsewhere."""
    names: list[str] = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        names.insert(0, value.attr)
        value = value.value
    if isinstance(value, ast.Name):
        names.insert(0, value.id)
        if names[0] == "self" and len(names) > 2:
            names = names[1:]
        return names[0], names[1:]
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
        inner = _chain(value.func)
        if inner and inner[0] in RECEIVERS:
            returned = RETURNS.get((RECEIVERS[inner[0]], ".".join(inner[1])))
            if returned:
                return f"<{returned}>", names
    return None


def unclassified(receivers: set[str]) -> set[str]:
    """Receivers that are neither known TensorRT objects nor known non-TensorRT names."""
    return {r for r in receivers if r not in RECEIVERS and r not in NOT_TENSORRT and not r.startswith("<")}


def _owner(receiver: str) -> str | None:
    if receiver.startswith("<"):
        return receiver[1:-1]
    return RECEIVERS.get(receiver)


def usages(source: str) -> Usage:
    """(attributes, calls, receivers) of TensorRT in ``source``."""
    tree = ast.parse(source)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    attributes: set[tuple[str, str]] = set()
    receivers: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            found = _chain(node)
            if found is None:
                continue
            receiver, names = found
            receivers.add(receiver)
            owner = _owner(receiver)
            if owner is not None and names:
                attributes.add((owner, ".".join(names)))
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            found = _chain(node.func)
            owner = _owner(found[0]) if found else None
            if found and owner is not None:
                dotted = ".".join(found[1])
                explicit_self = dotted.endswith("__init__")  # Base.__init__(self, ...) passes self itself
                calls.append((owner, dotted, len(node.args) - explicit_self, [k.arg for k in node.keywords if k.arg]))
    return attributes, calls, receivers


def project_usages() -> Usage:
    """Usages over every file of the project's TensorRT code."""
    attributes: set[tuple[str, str]] = set()
    calls: list[tuple[str, str, int, list[str]]] = []
    receivers: set[str] = set()
    for file in TRT_FILES:
        a, c, r = usages((ROOT / file).read_text())
        attributes |= a
        calls += c
        receivers |= r
    return attributes, calls, receivers
