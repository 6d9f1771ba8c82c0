"""``ExportOptions``: everything an export can be told (the CLI's flags, the Python API's argument)."""
from __future__ import annotations

from dataclasses import dataclass, field

from exporter.checks.parity import Tolerance
from runtimes.manifest import BatchProfile


@dataclass
class ExportOptions:
    """Everything ``attn-export`` can be told; defaults are the CLI's."""

    opset: int = 18  # the coverage sweep's choice: docs/coverage.md#the-default-opset
    batch: BatchProfile = field(default_factory=lambda: BatchProfile(1, 8, 32))
    num_classes: int = 1000  # zoo and plugin builders only; a callable gets --model-arg num_classes=N
    weights: str | None = None  # a state_dict file (strict), or torchvision weights for a zoo backbone
    seed: int = 0
    redraw_zero_weights: bool = False  # random init: re-draw all-zero weight matrices (zero-init heads), seeded
    tolerance: Tolerance = field(default_factory=Tolerance.fp32)
    simplify: bool = True
    external_data: bool = False  # ONNX weights in FILE.onnx.data at any size (always above 2 GiB)
    exporter: str = "auto"
    photos: bool = True
    sample_inputs: str | None = None  # the user's .npz of inputs: one more parity set, and calibration data
    fp16: bool = False
    fp16_tolerance: Tolerance = field(default_factory=Tolerance.fp16)
    ort_format: bool = False  # also write model.ort + required_operators.config (ONNX Runtime Mobile)
    ort_fusion: bool = False  # try onnxruntime's attention fusions; keep model.fused.onnx if it passes and is faster
    executorch: bool = False  # also write model.pte (XNNPACK; with int8 also model.int8.pte) and check it
    openvino: bool = False  # also write the OpenVINO IR and check it (FP32, and BF16 where the CPU has it)
    int8: bool = False  # also write model.int8.onnx (ModelOpt Q/DQ) and check it with INT8 tolerances
    int8_tolerance: Tolerance = field(default_factory=Tolerance.int8)
    eval_data: str | None = None  # an ImageFolder: top-1/top-5 of every artifact on its labels (--eval)
    max_accuracy_drop: float | None = None  # points of top-1 a reduced precision may lose against FP32 (exit 3)
    calib: str | None = None  # INT8 calibration: a folder of images or an .npz (default: samples, else photos)
    calib_method: str = "max"
    calib_size: int = 32
    engine: str | None = None  # "trt" (--engine): also build model.engine (implies fp16); with int8 model.int8.engine
    workspace_gib: float = 4.0
    timing_cache: str | None = None
    keep_going: bool = False  # a failed artifact stage is recorded (manifest "failures"), the others still run
    verbose: bool = False  # third-party output (ModelOpt, onnxslim, torch, OpenVINO) on the console, not export.log

    @property
    def builds_tensorrt(self) -> bool:
        """``--engine`` was given (its one choice is TensorRT): build and check the engines."""
        return self.engine is not None
