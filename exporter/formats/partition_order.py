"""A faster re-ordering of the graph while ExecuTorch cuts out its XNNPACK partitions.

After cutting each partition out of the program, ExecuTorch's ``create_submodule_from_nodes`` calls torch.fx's
``legalize_graph`` on the *whole* graph: a Kahn sort that copies every node into a new graph and regenerates
its code. That is paid once per partition: on timm's coat_tiny (1,932 operators, 181 XNNPACK partitions) the
lowering took 244 s, 54 s of it in these calls. Half of those graphs are already in order, and the others
need a few nodes moved. :func:`sort_in_place` gives the same guarantee (every node after its inputs) by moving
only the nodes that are out of order, keeping the rest where they are; the lowering then took 145 s, with the
same ``.pte`` error against PyTorch (docs/coverage.md, "ExecuTorch's lowering time"). Inside the partitioning
the sort also leaves the code alone (:func:`sort_for_partitioning`): regenerating the whole graph's code after
every partition took 18 s of a profile of coat_tiny's INT8 lowering, for code nothing runs (one A/B run of this
change alone measured no gain: docs/coverage.md).
"""
from __future__ import annotations

import contextlib

import torch

from exporter.formats.upstream_patch import replaced_if_present


def sort_in_place(module: torch.fx.GraphModule, regenerate_code: bool = True) -> torch.fx.GraphModule:
    """Put every node of ``module``'s graph after its inputs, moving only the nodes that are not (a stable
    topological sort), and, with ``regenerate_code``, regenerate the code when a node moved, as ``legalize_graph``
    does."""
    graph = module.graph
    pending = list(reversed(graph.nodes))
    ready: set[torch.fx.Node] = set()
    waiting: dict[torch.fx.Node, list[torch.fx.Node]] = {}
    cursor: torch.fx.Node | None = None
    moved = False
    while pending:
        node = pending.pop()
        missing = [arg for arg in node.all_input_nodes if arg not in ready]
        if missing:  # revisit once the last missing input is placed
            waiting.setdefault(missing[-1], []).append(node)
            continue
        ready.add(node)
        if cursor is not None and cursor.next is not node:
            cursor.append(node)
            moved = True
        cursor = node
        pending.extend(reversed(waiting.pop(node, [])))
    if waiting or len(ready) != len(graph.nodes):
        raise RuntimeError(f"the graph has a cycle through {sorted(n.name for n in graph.nodes if n not in ready)[:5]}")
    if moved and regenerate_code:
        module.recompile()
    return module


def sort_for_partitioning(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """:func:`sort_in_place` without regenerating the code. ExecuTorch sorts the whole graph after cutting out each
    partition, but runs none of its code until the partitioned program is built, and building an
    ``ExportedProgram`` makes a new ``GraphModule``, whose code is generated then: the code it would regenerate
    after each partition (already stale once the next partition is cut out) is never run."""
    return sort_in_place(module, regenerate_code=False)


def in_place_partition_order() -> contextlib.AbstractContextManager[None]:
    """Within the block, ExecuTorch's per-partition ``legalize_graph`` is :func:`sort_for_partitioning`. An ExecuTorch
    that no longer calls it from ``executorch.exir.lowered_backend_module`` is left as it is."""
    from executorch.exir import lowered_backend_module

    return replaced_if_present(lowered_backend_module, "legalize_graph", sort_for_partitioning)
