"""ExecuTorch backend: runs ``model.pte`` / ``model.int8.pte`` through ExecuTorch's own Python runtime.

ExecuTorch's Python runtime links libtorch, so this backend needs torch on the host (on a phone the
app loads the same ``.pte`` with ExecuTorch's C++, Java/Kotlin or Swift runtime). The specs come
from the file itself (the ``IO_METHOD`` constant attn-export writes); the batch bound is the
memory-planned size of the first input, and larger batches are chunked by ``Runtime`` so that
ExecuTorch's raw ``0x10`` resize error never reaches the caller.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from runtimes.base import Runtime
from runtimes.engines.torch_rt import from_numpy
from runtimes.errors import ArtifactError, BackendUnavailableError
from runtimes.optional import require
from runtimes.specs import TensorSpec

IO_METHOD = "attn_export_io"  # constant method in the .pte: JSON {"inputs": [...], "outputs": [...]} as uint8


def _runtime() -> Any:
    runtime = require("executorch.runtime", "engine 'executorch'", "executorch",
                      note="ExecuTorch; its Python runtime links torch")
    return require("torch", "engine 'executorch'", "executorch"), runtime.Runtime.get()


class ExecutorchRuntime(Runtime):
    """``engine="executorch"``: the XNNPACK-delegated program on CPU (``fp32`` or ``int8`` file)."""

    engine = "executorch"
    concurrent = False  # one loaded Method holds its planned buffers: calls are serialised

    def __init__(self, path: Any, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.method: Any = None
        self._torch: Any = None

    def _open(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        if self.device != "cpu":
            raise BackendUnavailableError(f"engine 'executorch' runs on the CPU here, not {self.device!r}")
        self._torch, runtime = _runtime()
        try:
            program = runtime.load_program(self.path)
            method = program.load_method("forward")
            io = (json.loads(bytes(program.load_method(IO_METHOD).execute([])[0].numpy()).decode())
                  if IO_METHOD in program.method_names else None)
        except Exception as exc:  # ExecuTorch raises RuntimeError/ValueError for missing or bad files
            raise self.unreadable("ExecuTorch", exc, "attn-export --executorch") from None
        if io is None:
            raise ArtifactError(f"{self.path} has no {IO_METHOD!r} method: it was not written by attn-export; "
                                "re-run attn-export --executorch")
        bound = int(method.metadata.input_tensor_meta(0).sizes()[0])
        self.max_batch = min(self.max_batch or bound, bound)
        self.method = method
        return (tuple(TensorSpec.from_json(s) for s in io["inputs"]),
                tuple(TensorSpec.from_json(s) for s in io["outputs"]))

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        specs, outputs = self._opened_specs()
        results = self.method.execute([from_numpy(self._torch, feeds[s.name]) for s in specs])
        return {spec.name: out.numpy().copy() for spec, out in zip(outputs, results)}

    def _close(self) -> None:
        self.method = None
