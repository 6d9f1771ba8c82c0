"""ONNX → OpenVINO IR (``model.xml`` + ``model.bin``), weights kept in FP32.

The IR saves OpenVINO's ONNX import at load time and is what OpenVINO's own
tools (benchmark_app, OVMS) take. Both files are written under temporary names
and renamed ``.bin`` first, so a crash never leaves an XML whose weights are
missing or stale.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import ModuleType

from exporter.errors import tool_failure
from runtimes.optional import require


def require_openvino() -> ModuleType:
    """The ``openvino`` module; exit 2 naming the extra when it is missing."""
    return require("openvino", "--openvino", "openvino")


def write_ir(onnx_path: Path, xml_path: Path) -> tuple[Path, Path]:
    """Convert ``onnx_path`` and save it as ``xml_path`` and its ``.bin``; returns both paths."""
    ov = require_openvino()
    bin_path = xml_path.with_suffix(".bin")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO's frontends raise several exception types for unsupported graphs
        raise tool_failure(f"OpenVINO's conversion of {onnx_path.name}", exc) from exc
    with tempfile.TemporaryDirectory(prefix=".openvino.", dir=xml_path.parent) as tmp:
        tmp_xml = Path(tmp) / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), bin_path)
        os.replace(tmp_xml, xml_path)
    return xml_path, bin_path
