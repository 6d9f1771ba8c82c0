"""onnxruntime backend: CPU, or CUDA with I/O binding where the CUDA provider really loads."""
from __future__ import annotations

from typing import Any

import numpy as np

from runtimes.base import Runtime
from runtimes.dtypes import convert
from runtimes.engines.providers import CUDA, create_session
from runtimes.errors import AttnExportError
from runtimes.specs import TensorSpec


def spec_from_ort(node: Any) -> TensorSpec:
    """A TensorSpec from an onnxruntime NodeArg (symbolic dims keep their names)."""
    shape = tuple(d if isinstance(d, int) else (d or f"dim{i}") for i, d in enumerate(node.shape))
    return TensorSpec(node.name, shape, convert(node.type, "ort", "numpy"))


class OrtRuntime(Runtime):
    """``engine="ort"``. Options: ``threads`` (intra-op), ``optimization`` (disable/basic/extended/all)."""

    engine = "ort"
    concurrent = True  # InferenceSession.run is thread-safe

    def __init__(self, path: Any, *, threads: int | None = None, optimization: str = "all", **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.threads, self.optimization = threads, optimization
        self.session: Any = None
        self._output_names: list[str] = []
        self._io_binding = False

    def _open(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        try:
            self.session = create_session(str(self.path), self.device, threads=self.threads,
                                          optimization=self.optimization, spin_wait=self.spin_wait)
        except AttnExportError:
            raise
        except Exception as exc:  # onnxruntime raises InvalidProtobuf/Fail/NoSuchFile for bad files
            raise self.unreadable("onnxruntime", exc) from None
        self._output_names = [o.name for o in self.session.get_outputs()]
        self._io_binding = CUDA in self.session.get_providers()
        return (tuple(spec_from_ort(i) for i in self.session.get_inputs()),
                tuple(spec_from_ort(o) for o in self.session.get_outputs()))

    @property
    def providers(self) -> list[str]:
        """Providers the session really runs with."""
        self.open()
        return list(self.session.get_providers())

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self._output_names
        if not self._io_binding:
            return dict(zip(names, self.session.run(names, feeds)))
        binding = self.session.io_binding()  # one per call: bindings are not shared across threads
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        for name in names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu()))

    def _close(self) -> None:
        self.session = None
