"""Does an artifact compute the same on an AVX2-only CPU? Checked on this (AVX-512) host with QEMU.

The folder's artifact runs through ``runtimes`` twice on the same seeded inputs: natively, and under
QEMU's user-mode emulation of ``--cpu`` (default EPYC-Milan-v1: AMD Zen 3, AVX2 and FMA, no AVX-512,
VNNI or BF16). onnxruntime (MLAS), OpenVINO and XNNPACK pick their kernels from CPUID, so the emulated
run takes their AVX2 paths — INT8 among them, where AVX2 has no VNNI. The two outputs are compared:
worst per-sample cosine, max error relative to max|native| and top-1 agreement. Correctness only:
emulated time says nothing about speed. Needs Debian's qemu-user (``apt-get install qemu-user``).

Usage: python scripts/emulated_cpu_parity.py FOLDER [--engine ort] [--precision int8] [--batch 4]
       [--cpu EPYC-Milan-v1]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import runtimes
from exporter.checks import parity
from runtimes.specs import random_inputs


def run_child(folder: Path, engine: str, precision: str | None, batch: int, io: Path) -> None:
    """Outputs of ``folder`` on the given inputs (``io`` holds ``in.*``; written when absent), saved as ``out.*``."""
    with runtimes.load(folder, engine=engine, precision=precision) as rt:
        arrays = (random_inputs(rt.input_specs, batch, seed=0) if not io.exists()
                  else {k[3:]: v for k, v in np.load(io).items() if k.startswith("in.")})
        outputs = rt(arrays)
    from numpy._core._multiarray_umath import __cpu_features__ as simd
    print(f"  {'AVX512F' if simd['AVX512F'] else 'no AVX512F'}, {'AVX2' if simd['AVX2'] else 'no AVX2'} "
          f"(numpy's CPUID); {engine} {rt.precision}", flush=True)
    np.savez(io, **{f"in.{k}": v for k, v in arrays.items()}, **{f"out.{k}": v for k, v in outputs.items()})


def compare(native: dict[str, np.ndarray], emulated: dict[str, np.ndarray]) -> list[str]:
    """One line per output, in ``exporter.checks.parity``'s metrics: worst per-sample cosine, max error relative
    to max|native| over the batch and, for [B, classes] logits, top-1 agreement."""
    lines = []
    for key in sorted(k for k in native if k.startswith("out.")):
        a, b = native[key], emulated[key]
        batch = parity.compare(key[4:], "batch", a, b)
        cosine = min(parity.compare(key[4:], f"sample {i}", a[i:i + 1], b[i:i + 1]).cosine for i in range(len(a)))
        top1 = "" if batch.top1 is None else f", top-1 agreement {round(batch.top1 * len(a))}/{len(a)}"
        lines.append(f"{batch.output}: worst cosine {cosine:.6f}, max rel {batch.max_rel:.3e}{top1}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--engine", default="ort")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cpu", default="EPYC-Milan-v1", help="a QEMU x86 CPU model (qemu-x86_64 -cpu help)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: one run, outputs to this .npz
    args = parser.parse_args()
    if args.child:
        run_child(args.folder, args.engine, args.precision, args.batch, args.child)
        return 0
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("emulated_cpu_parity: qemu-x86_64 not found; install it with: apt-get install qemu-user")
    with tempfile.TemporaryDirectory() as tmp:
        native, emulated = Path(tmp) / "native.npz", Path(tmp) / "emulated.npz"
        child = [sys.executable, __file__, str(args.folder), "--engine", args.engine, "--batch", str(args.batch),
                 *(["--precision", args.precision] if args.precision else [])]
        print(f"native ({args.folder}):", flush=True)
        subprocess.run([*child, "--child", str(native)], check=True)
        shutil.copy(native, emulated)  # the same inputs; the emulated run replaces the outputs
        print(f"emulated {args.cpu} (qemu user mode; minutes):", flush=True)
        done = subprocess.run([qemu, "-cpu", args.cpu, *child, "--child", str(emulated)], stderr=subprocess.PIPE,
                              text=True)
        # QEMU warns once per CPUID bit it cannot emulate: only the child's own errors are worth showing
        sys.stderr.write("".join(line for line in done.stderr.splitlines(keepends=True) if "TCG doesn't" not in line))
        if done.returncode:
            return done.returncode
        print("\n".join(compare(dict(np.load(native)), dict(np.load(emulated)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
