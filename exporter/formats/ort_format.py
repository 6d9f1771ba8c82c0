"""ONNX Runtime's mobile format: ``model.ort`` plus the converter's ``required_operators.config``.

The ``.ort`` file is what ONNX Runtime Mobile (Android, iOS, small boards) loads; the config lists
the operators it uses, so a user can build a reduced ONNX Runtime with only those
(``build.sh --include_ops_by_config required_operators.config``). Both come from ONNX Runtime's own
converter (``python -m onnxruntime.tools.convert_onnx_models_to_ort``), run with the ``Fixed``
optimisation style; a plain ``InferenceSession`` loads the ``.ort`` with the dynamic axes kept,
which is how its parity is checked. The converter's optimisations are baked into the file, so the rewrites
``runtimes`` leaves out of its sessions (``MISCOMPILING_REWRITES``) are left out of the conversion too.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from exporter import onnx_files
from exporter.errors import ExportError, tool_failure
from exporter.formats.upstream_patch import replaced_if_present
from runtimes.engines.providers import MISCOMPILING_REWRITES
from runtimes.fileio import atomic_path

ORT_FILE = "model.ort"
OPERATORS_FILE = "required_operators.config"
FLATBUFFER_LIMIT = 2**31  # a flatbuffer's offsets are signed 32-bit: the whole .ort stays under 2 GiB


@contextlib.contextmanager
def without_miscompiling_rewrites() -> Iterator[None]:
    """Within the block every ``onnxruntime.InferenceSession`` (the converter makes its own, with its own list of
    optimisers to leave out) also leaves out ``MISCOMPILING_REWRITES``."""
    import onnxruntime

    original = onnxruntime.InferenceSession

    def session(*args: Any, disabled_optimizers: list[str] | None = None, **kwargs: Any) -> Any:
        return original(*args, disabled_optimizers=[*(disabled_optimizers or []), *MISCOMPILING_REWRITES], **kwargs)

    with replaced_if_present(onnxruntime, "InferenceSession", session):
        yield


def write_ort(onnx_path: Path, folder: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Convert ``onnx_path`` into ``folder/model.ort`` and ``folder/required_operators.config`` (atomically).
    Refused (class ``format limit``) when the model's weights cannot fit one flatbuffer."""
    import onnxruntime
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    size = onnx_files.total_bytes(onnx_path)
    if size >= FLATBUFFER_LIMIT:
        raise ExportError(f"the .ort format is one flatbuffer, which holds less than 2 GiB; {onnx_path.name} and "
                          f"its data are {size / 2**30:.2f} GiB: ship the ONNX file with its data, or the OpenVINO "
                          "IR, to the device instead", "format limit")
    with tempfile.TemporaryDirectory(prefix=".ort.", dir=folder) as work:
        source = onnx_files.copy(onnx_path, Path(work))
        try:
            with without_miscompiling_rewrites():
                convert_onnx_models_to_ort(source, output_dir=Path(work) / "out",
                                           optimization_styles=[OptimizationStyle.Fixed])
        except Exception as exc:  # the converter raises RuntimeError/ValueError/onnxruntime errors
            raise tool_failure("ONNX Runtime's .ort converter", exc) from exc
        converted = Path(work) / "out" / "model.ort"
        config = Path(work) / "out" / "model.required_operators.config"
        if not converted.is_file() or not config.is_file():
            raise ExportError(f"ONNX Runtime's .ort converter wrote no {converted.name} / {config.name}")
        # the converter names the staging path it read; the published config names the file beside it
        lines = [f"# - {ORT_FILE}" if line.startswith("# - ") else line for line in config.read_text().splitlines()]
        operators = [line for line in lines if line and not line.startswith("#")]
        ort_path, config_path = folder / ORT_FILE, folder / OPERATORS_FILE
        with atomic_path(ort_path) as tmp:
            shutil.copyfile(converted, tmp)
        with atomic_path(config_path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
    info = {"tool": "onnxruntime.tools.convert_onnx_models_to_ort", "optimization_style": "Fixed",
            "onnxruntime": onnxruntime.__version__,
            "operators": sum(len(line.split(";")[2].split(",")) for line in operators)}
    return ort_path, config_path, info
