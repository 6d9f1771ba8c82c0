"""Whether an ExecuTorch pass that rewrites operator by operator would rewrite any, found without re-tracing.

Such a pass (an ``ExportPass`` overriding ``call_operator``) re-traces the whole graph through fake tensors and
hands each operator to ``call_operator``, which passes it on unchanged or emits others. On coat_tiny's INT8 program
(4,192 nodes) each re-trace takes ~4 s, and six of ExecuTorch's passes over the whole graph (transposes,
symbolic sizes, broken operators, mixed types, scalars, portable dim orders) and ours for negative pads found
nothing to rewrite: ~30 s for an equal graph, and ~7 s more in two passes per partition. :func:`rewrites_nothing`
calls the pass's ``call_operator`` on every node as the re-trace would, with the values the graph already
records, and answers whether every call handed its own operator, arguments and metadata on unchanged, once.
Anything else (a second call, a different argument, an exception, a node kind it cannot replay) answers no, and
the pass re-traces as before.
"""
from __future__ import annotations

import functools
import operator
from typing import Any

import torch

# members of ExportPass a pass may override without changing what its re-trace computes
OUTSIDE_THE_RETRACE = frozenset({"__init__", "call", "requires", "ensures"})


@functools.lru_cache(maxsize=None)
def overridden(pass_type: type) -> frozenset[str] | None:
    """The members of ``ExportPass`` (methods, nested classes) that ``pass_type`` overrides, but those in
    ``OUTSIDE_THE_RETRACE`` other than ``call``; ``None`` if it is no ``ExportPass``. Cached: asked at every pass
    call of a lowering."""
    from executorch.exir.pass_base import ExportPass

    if not issubclass(pass_type, ExportPass):
        return None
    inherited = set(dir(ExportPass)) - (OUTSIDE_THE_RETRACE - {"call"})
    names: set[str] = set()
    for cls in pass_type.__mro__[:pass_type.__mro__.index(ExportPass)]:
        names |= {name for name, value in vars(cls).items() if name in inherited
                  and (callable(value) or isinstance(value, (staticmethod, classmethod, property)))}
    return frozenset(names)


def _kind(value: Any) -> type:
    """The container kind a graph node keeps: torch.fx stores a list or dict as its immutable subclass."""
    return list if isinstance(value, list) else dict if isinstance(value, dict) else type(value)


def _same(a: Any, b: Any) -> bool:
    """Equal arguments: the same objects for values and tensors, equal constants, element by element."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return _kind(a) is _kind(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return _kind(a) is _kind(b) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (torch.Tensor, torch.fx.Node)) or type(a).__name__ == "ProxyValue":
        return a is b
    return type(a) is type(b) and bool(a == b)


class _Replayed(Exception):
    """Raised inside the replay when a call differs from the node it replays."""


def rewrites_nothing(pass_: Any, graph_module: torch.fx.GraphModule) -> bool:
    """Whether re-tracing ``graph_module`` with ``pass_`` (an ``ExportPass`` overriding no per-node hook but
    ``call_operator``: :func:`overridden`) would hand every operator on unchanged: ``call_operator`` replayed on
    each node with the recorded values (``meta["val"]``, attributes for ``get_attr``) as the re-trace's arguments,
    ``ExportPass.call_operator`` standing in to check that it is called once with the node's own operator,
    arguments, keyword arguments and metadata."""
    from executorch.exir import memory
    from executorch.exir.delegate import executorch_call_delegate
    from executorch.exir.dialects.edge._ops import EdgeOpOverload
    from executorch.exir.pass_base import NodeMetadata, ProxyValue, _ExportPassBase

    values: dict[torch.fx.Node, Any] = {}
    expected: list[Any] = []
    calls: list[int] = []

    def stand_in(self: Any, op: Any, args: Any, kwargs: Any, meta: Any) -> Any:
        node_target, node_args, node_kwargs, node_meta, value = expected
        calls.append(1)
        if len(calls) > 1 or op is not node_target or meta is not node_meta \
                or not (_same(args, node_args) and _same(kwargs, node_kwargs)):
            raise _Replayed
        return value

    original = _ExportPassBase.call_operator
    _ExportPassBase.call_operator = stand_in  # type: ignore[method-assign]
    try:
        for node in graph_module.graph.nodes:
            if node.op == "get_attr":  # the re-trace hands the attribute itself, as torch.fx's interpreter does
                values[node] = functools.reduce(getattr, node.target.split("."), graph_module)
                continue
            if node.op == "output":
                continue
            if "val" not in node.meta:
                return False
            value = values[node] = ProxyValue(node.meta["val"], node)
            if node.op != "call_function" or node.target in (operator.getitem, executorch_call_delegate, memory.alloc) \
                    or getattr(node.target, "__module__", None) in {"_operator", "builtins", "math"}:
                continue  # placeholders, item reads, delegates, allocations, size arithmetic: hooks not overridden
            if not isinstance(node.target, (torch._ops.OpOverload, EdgeOpOverload)):
                return False  # control flow: its branches would call the pass in turn, not replayed
            args = torch.fx.node.map_arg(node.args, values.__getitem__)
            kwargs = torch.fx.node.map_arg(node.kwargs, values.__getitem__)
            meta = NodeMetadata(node.meta)
            expected[:] = [node.target, args, kwargs, meta, value]
            calls.clear()
            if pass_.call_operator(node.target, args, kwargs, meta) is not value or len(calls) != 1:
                return False
            if meta.data.keys() != node.meta.keys() or any(meta.data[key] is not node.meta[key] for key in meta.data):
                return False
        return True
    except Exception:  # the replay is not the re-trace: any surprise means "let it re-trace"
        return False
    finally:
        _ExportPassBase.call_operator = original  # type: ignore[method-assign]
