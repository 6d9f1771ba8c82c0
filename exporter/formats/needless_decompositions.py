"""Decomposition passes that would change nothing, skipped while ExecuTorch lowers a program.

``to_edge_transform_and_lower`` runs ``run_decompositions`` three times for the XNNPACK partitioner: once to
functionalize, once with the default table less the operators XNNPACK keeps, and once more with the whole
default table after those operators were swapped for placeholders. That last call often has nothing left to
decompose but ``aten.sym_size.int`` (a shape read, which traces back to itself), yet re-traces the whole graph:
on vit_tiny_patch16_224 its INT8 lowering took 38-40 s without the call against 44-46 s with it, the ``.pte``
the same to the byte (docs/coverage.md). Where operators are left (swinv2's 12 linears that XNNPACK declines)
the call runs as before. ExecuTorch already skips the same call on its other path when no table operator occurs
in the graph; this extends that rule to operators whose decomposition is themselves.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch

# operators of the default table whose decomposition traces back to the same operator (tests/test_mobile.py
# runs the table on them to check)
SELF_DECOMPOSING = (torch.ops.aten.sym_size.int,)


def decomposes_nothing(program: torch.export.ExportedProgram, table: Mapping[Any, Any] | None) -> bool:
    """Whether ``program.run_decompositions(table)`` would give back the same graph: the program is already
    functional ATen (not the training IR that even the empty table converts), and no operator of its graph is in
    ``table`` (``None``: the core ATen table) but those in ``SELF_DECOMPOSING``."""
    if table is None or program.verifier.dialect != "ATEN":
        return False
    return not any(node.op == "call_function" and node.target in table and node.target not in SELF_DECOMPOSING
                   for node in program.graph.nodes)


@contextlib.contextmanager
def skip_needless_decompositions() -> Iterator[list[int]]:
    """Within the block, ``ExportedProgram.run_decompositions`` returns the program itself where
    :func:`decomposes_nothing`; the yielded list counts the skipped calls (one entry each)."""
    export_program = torch.export.ExportedProgram
    original = export_program.run_decompositions
    skipped: list[int] = []

    def run_decompositions(self: torch.export.ExportedProgram, decomp_table: Any = None,
                           *args: Any, **kwargs: Any) -> torch.export.ExportedProgram:
        if not args and not kwargs and decomposes_nothing(self, decomp_table):
            skipped.append(1)
            return self
        return original(self, decomp_table, *args, **kwargs)

    export_program.run_decompositions = run_decompositions  # type: ignore[method-assign]
    try:
        yield skipped
    finally:
        export_program.run_decompositions = original  # type: ignore[method-assign]
