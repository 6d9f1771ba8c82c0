"""A/B of ExecuTorch's XNNPACK lowering: one model's program lowered with every work-around of
``exporter.formats.executorch_pte.LOWERING_WORKAROUNDS`` and without some, alternating, on the same program; prints
each lowering's seconds and its ``.pte``'s SHA-256 (a work-around must not change a byte). The numbers of
docs/coverage.md's "Faster" sections come from it, for example:

    python scripts/lowering_ab.py timm:coat_tiny --step 3 --leave-out unchanged_retraces,merge_check --repeat 2

``--step 0`` lowers the FP32 program; ``--step N`` (1-3) the PT2E INT8 program of widening step N, calibrated on 8
random samples (seeded), as the sweep's random-init runs are. Time is the CPU's: run it on an idle machine.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.export_model import infer_output_specs  # noqa: E402
from exporter.formats import executorch_pte  # noqa: E402
from exporter.sources.model_source import build_source  # noqa: E402
from runtimes.specs import BATCH  # noqa: E402

MAX_BATCH = 4  # the sweep's batch profile 1:2:4


def program_of(model: str, step: int) -> tuple[torch.export.ExportedProgram, tuple, tuple]:
    """The bounded program of ``model`` at random init (seed 0): FP32 (``step`` 0) or INT8 at widening ``step``."""
    torch.manual_seed(0)
    source = build_source(model)
    specs = source.input_specs or source.module.input_specs
    outputs = infer_output_specs(source.module, specs, None)
    example = tuple(torch.randn(*[2 if d == BATCH else d for d in s.shape]) for s in specs)
    if step == 0:
        return executorch_pte.float_program(source.module, specs, example, MAX_BATCH), specs, outputs
    rng = np.random.default_rng(0)
    calibration = {s.name: rng.standard_normal((8, *e.shape[1:])).astype(np.float32) for s, e in zip(specs, example)}
    program = executorch_pte.quantize_pt2e(source.module, specs, example, MAX_BATCH, calibration,
                                           executorch_pte.WIDENING_STEPS[step - 1])
    return program, specs, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model as attn-export takes it (timm:NAME, torchvision:NAME, zoo name)")
    parser.add_argument("--step", type=int, default=0, choices=range(len(executorch_pte.WIDENING_STEPS) + 1),
                        help="0: the FP32 program; 1-3: the INT8 program of that widening step")
    parser.add_argument("--leave-out", required=True,
                        help="comma-separated work-arounds the B lowering goes without; known: "
                             + ", ".join(executorch_pte.LOWERING_WORKAROUNDS))
    parser.add_argument("--repeat", type=int, default=1, help="A/B pairs to run, alternating (default 1)")
    args = parser.parse_args()
    leave_out = tuple(n for n in args.leave_out.split(",") if n)
    unknown = set(leave_out) - set(executorch_pte.LOWERING_WORKAROUNDS)
    if unknown:
        known = ", ".join(executorch_pte.LOWERING_WORKAROUNDS)
        parser.error(f"unknown work-around(s) {sorted(unknown)}; known: {known}")
    program, specs, outputs = program_of(args.model, args.step)
    with tempfile.TemporaryDirectory() as folder:
        for pair in range(args.repeat):
            for label, left_out in (("all work-arounds", ()), (f"without {','.join(leave_out)}", leave_out)):
                path = Path(folder) / "model.pte"
                candidate = copy.deepcopy(program)
                start = time.perf_counter()
                info = executorch_pte.lower_to_pte(candidate, path, specs, outputs, left_out)
                seconds = time.perf_counter() - start
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                print(f"{args.model} step {args.step} pair {pair + 1} {label}: {seconds:.1f} s, "
                      f"{info['xnnpack_ops']} operators on XNNPACK in {info['xnnpack_subgraphs']} partitions, "
                      f"sha256 {digest}", flush=True)


if __name__ == "__main__":
    main()
