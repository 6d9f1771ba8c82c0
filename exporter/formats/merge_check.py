"""A faster cycle check while ExecuTorch's partitioner merges XNNPACK's groups of nodes.

Before merging two candidate partitions, ``GroupBasedPartitioner._can_merge_partitions`` (ExecuTorch 1.5.1) asks,
for every node outside them that uses one of their nodes, whether a node downstream of it lies inside them, and
asks by walking the whole downstream set (``any(n in combined for n in downstream)``): thousands of nodes on a
large graph, for every such user of every candidate pair, 13 s of coat_tiny's INT8 lowering. :func:`can_merge`
asks the same question from the partition's side (``combined.isdisjoint(downstream)`` walks the smaller set) and
keeps the original's last check (``validate_partition``), so it gives the same answers.
"""
from __future__ import annotations

import contextlib
from typing import Any

from exporter.formats.upstream_patch import replaced_if_present


def can_merge(partitioner: Any, first: int, second: int, partitions_by_id: dict[int, Any]) -> bool:
    """Whether merging partitions ``first`` and ``second`` leaves the graph without a cycle: no outside user of
    either reaches back into them, and torch.fx's own check of the merged nodes agrees."""
    from torch.fx.passes.utils.fuser_utils import validate_partition

    combined = set(partitions_by_id[first].nodes) | set(partitions_by_id[second].nodes)
    downstream_of = partitioner.dependency_viewer.downstreams_of
    for node in combined:
        for user in node.users:
            if user not in combined and not combined.isdisjoint(downstream_of(user)):
                return False
    return bool(validate_partition(list(combined)))


def fast_merge_checks() -> contextlib.AbstractContextManager[None]:
    """Within the block, ExecuTorch's ``GroupBasedPartitioner`` checks merges with :func:`can_merge`. An
    ExecuTorch without that method is left as it is."""
    from executorch.exir.backend.canonical_partitioners import group_partitioner

    return replaced_if_present(group_partitioner.GroupBasedPartitioner, "_can_merge_partitions", can_merge)
