"""A program functionalized and decomposed in one trace before ExecuTorch lowers it, instead of two.

For a partitioner that checks operators (XNNPACK's), ``to_edge_transform_and_lower`` first calls
``run_decompositions({})`` to turn the training IR into functional ATen, then ``run_decompositions(table)`` with the
default table less the operators the partitioner keeps. Each call re-traces the whole graph: ~21 s each on
timm's coat_tiny at INT8 (4,192 nodes), the two together 30 % of its lowering. torch.export's own way is one call
that does both; :func:`decompose_once` makes that call, with the same table, before ExecuTorch's, and ExecuTorch's
two then have nothing left to do and are skipped by ``needless_decompositions`` (which must be active with it).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import torch

from exporter.formats.upstream_patch import replaced_if_present


def decomposition_table(program: torch.export.ExportedProgram, partitioner: Any) -> Mapping[Any, Any]:
    """ExecuTorch's default decomposition table less the operators ``partitioner`` keeps from decomposition,
    filtered as ExecuTorch filters them: the table of its second call."""
    from executorch.exir.program._program import _default_decomposition_table, _remove_invalid_ops_for_not_decompose

    table = _default_decomposition_table()
    for op in _remove_invalid_ops_for_not_decompose(partitioner.ops_to_not_decompose(program)[0]):
        table.pop(op, None)
    return table


def applies(program: torch.export.ExportedProgram, partitioners: Sequence[Any]) -> bool:
    """Whether ExecuTorch would functionalize ``program`` and then decompose it with one partitioner's table: a
    training-IR program, one partitioner that filters the operators it keeps (ExecuTorch's EDGE_DO_NOT_DECOMP
    path) and changes nothing before decomposition."""
    from executorch.exir.backend.partitioner import Partitioner

    if program.verifier.dialect == "ATEN" or len(partitioners) != 1:
        return False
    partitioner = partitioners[0]
    hook = type(partitioner).transform_for_pre_decomposition
    filters = partitioner.ops_to_not_decompose(program)[1] is not None
    return hook is Partitioner.transform_for_pre_decomposition and filters


@contextlib.contextmanager
def decompose_once() -> Iterator[list[int]]:
    """Within the block, each program ``to_edge_transform_and_lower`` takes is first run through
    ``run_decompositions`` with its partitioner's table where :func:`applies`; the yielded list counts them."""
    from executorch.exir.program import _program

    original = _program._gen_edge_manager_for_partitioners
    decomposed: list[int] = []

    def generate(partitioner: Mapping[str, list[Any]], aten_programs: Mapping[str, torch.export.ExportedProgram],
                 *args: Any, **kwargs: Any) -> Any:
        programs = {}
        for name, program in aten_programs.items():
            partitioners = partitioner.get(name, []) if partitioner else []
            if applies(program, partitioners):
                program = program.run_decompositions(decomposition_table(program, partitioners[0]))
                decomposed.append(1)
            programs[name] = program
        return original(partitioner, programs, *args, **kwargs)

    with replaced_if_present(_program, "_gen_edge_manager_for_partitioners", generate):
        yield decomposed
