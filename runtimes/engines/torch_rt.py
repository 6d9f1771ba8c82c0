"""torch backend: runs ``model.pt2`` (a torch.export program) — needs torch, not the zoo."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from runtimes.base import Runtime
from runtimes.errors import BackendUnavailableError
from runtimes.optional import require
from runtimes.specs import BATCH, TensorSpec, default_output_name


def _torch() -> Any:
    return require("torch", "engine 'torch'", "export", note="PyTorch")


IO_FILE = "attn_export_io.json"  # written beside the program by attn-export: output names


def _spec(name: str, val: Any) -> TensorSpec:
    """A TensorSpec from a FakeTensor: symbolic dims become ``batch`` (dim 0) or ``dim<i>``."""
    shape = tuple(int(d) if isinstance(d, int) else (BATCH if i == 0 else f"dim{i}") for i, d in enumerate(val.shape))
    return TensorSpec(name, shape, str(val.dtype).removeprefix("torch."))


def from_numpy(torch: Any, array: np.ndarray) -> Any:
    """``torch.from_numpy`` without its "not writable" warning: a read-only array (``np.frombuffer``'s, a
    served request's) is copied, a writable one shared (the torch and ExecuTorch backends)."""
    return torch.from_numpy(np.require(array, requirements="W"))


class TorchRuntime(Runtime):
    """``engine="torch"``: the exported program under ``inference_mode`` on CPU or CUDA."""

    engine = "torch"
    concurrent = True  # a stateless graph under inference_mode

    def __init__(self, path: Any, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.module: Any = None
        self._order: list[str] = []

    def _open(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        torch = _torch()
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("engine 'torch' on device 'cuda': torch sees no CUDA GPU; use device='cpu'")
        extra = {IO_FILE: ""}
        try:
            program = torch.export.load(str(self.path), extra_files=extra)
        except Exception as exc:  # zip/pickle/unsupported-version errors of many types
            raise self.unreadable("torch", exc) from None
        self.module = program.module().to(self.device)
        nodes = {n.name: n for n in program.graph.nodes}
        names = json.loads(extra[IO_FILE]) if extra[IO_FILE] else {}
        signature = program.graph_signature
        inputs = tuple(_spec(name, nodes[name].meta["val"]) for name in signature.user_inputs)
        outputs = tuple(_spec(out_name, nodes[node].meta["val"]) for out_name, node in zip(
            names.get("outputs") or [default_output_name(i) for i in range(len(signature.user_outputs))],
            signature.user_outputs))
        self._order = [s.name for s in (self._input_specs or inputs)]
        return inputs, outputs

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
        with torch.inference_mode():
            out = self.module(*(from_numpy(torch, feeds[n]).to(self.device) for n in self._order))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {spec.name: o.cpu().numpy() for spec, o in zip(self._output_specs or (), outs)}

    def _close(self) -> None:
        self.module = None
