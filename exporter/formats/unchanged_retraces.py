"""ExecuTorch graph passes that edited nothing, not re-traced.

XNNPACK runs 17 passes over every partition it lowers (``XNNPACKPassManager``). Most of them edit the graph in
place in ``call`` and then re-trace it whole through fake tensors (``ExportPass.call``) to refresh its metadata,
whether or not they edited anything, and report it modified, so ExecuTorch also rebuilds the program after each.
On coat_tiny's INT8 lowering (187 partitions) the re-traces took 52 s of 212. A pass that overrides none of
``ExportPass``'s per-node hooks (so its re-trace is a plain copy of the graph) and that left every node as it
was gets its graph back as it is and reports it unmodified: the re-trace would have given the same nodes with
fresh copies of the same metadata. A pass that also rewrites operator by operator (overrides ``call_operator``) is
not re-traced where a dry run of it on the graph's recorded values (``rewrite_dry_run``) finds nothing to rewrite.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from exporter.formats.rewrite_dry_run import overridden, rewrites_nothing


def may_skip_retrace(pass_type: type) -> bool:
    """Whether ``pass_type`` is a subclass of ``ExportPass`` that overrides none of its methods or nested classes but
    ``call`` (and its constructor and pre/post checks) and ``call_operator``: with ``call`` alone its re-trace
    copies the graph; with ``call_operator`` a dry run (``rewrite_dry_run``) tells whether it would rewrite any
    operator. ``ExportPass`` itself is run for its re-trace alone (``SpecPropPass`` refreshes metadata with it)."""
    from executorch.exir.pass_base import ExportPass

    hooks = overridden(pass_type)
    return pass_type is not ExportPass and hooks is not None and hooks <= {"call", "call_operator"}


def graph_fingerprint(graph: torch.fx.Graph) -> tuple[tuple[Any, ...], ...]:
    """Every node's name, kind, target and arguments, in order: equal before and after a pass that edited none."""
    return tuple((n.name, n.op, n.target, repr(n.args), repr(n.kwargs)) for n in graph.nodes)


@contextlib.contextmanager
def skip_unchanged_retraces() -> Iterator[list[str]]:
    """Within the block, a pass that :func:`may_skip_retrace`, left its graph as its ``call`` found it and, if it
    overrides ``call_operator``, ``rewrites_nothing`` on it, is not re-traced and reports ``modified=False``. Yields
    the names of the passes answered so, one per skip."""
    from executorch.exir.pass_base import _ExportPassBase
    from torch.fx.passes.infra.pass_base import PassBase, PassResult

    skipped: list[str] = []
    started: dict[int, list[Any]] = {}  # id(pass) -> [fingerprint when it began, whether its re-trace was skipped]
    run_pass, retrace = PassBase.__call__, _ExportPassBase.call

    def run_watched(self: Any, graph_module: torch.fx.GraphModule) -> Any:
        if not may_skip_retrace(type(self)) or id(self) in started:
            return run_pass(self, graph_module)
        started[id(self)] = state = [graph_fingerprint(graph_module.graph), False]
        try:
            result = run_pass(self, graph_module)
        finally:
            del started[id(self)]
        if state[1] and result.graph_module is graph_module and graph_fingerprint(graph_module.graph) == state[0]:
            skipped.append(type(self).__name__)
            return PassResult(graph_module, False)
        return result

    def retrace_if_edited(self: Any, graph_module: torch.fx.GraphModule) -> Any:
        state = started.get(id(self))
        if state is not None and graph_fingerprint(graph_module.graph) == state[0] and (
                "call_operator" not in overridden(type(self)) or rewrites_nothing(self, graph_module)):
            state[1] = True
            return PassResult(graph_module, False)
        return retrace(self, graph_module)

    PassBase.__call__, _ExportPassBase.call = run_watched, retrace_if_edited  # type: ignore[method-assign]
    try:
        yield skipped
    finally:
        PassBase.__call__, _ExportPassBase.call = run_pass, retrace  # type: ignore[method-assign]
