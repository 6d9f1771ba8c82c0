"""TensorRT helpers shared by the builder and the runtime: the lazy import that fails
loudly, version parsing, and the checks that need no GPU (tested on CPU)."""
from __future__ import annotations

from typing import Any, Mapping

from runtimes.errors import ArtifactError, BackendUnavailableError
from runtimes.optional import require

NVIDIA_INDEX = "https://pypi.nvidia.com"


def import_tensorrt() -> Any:
    """``import tensorrt`` or raise one line naming the install command (never pip at run time)."""
    return require("tensorrt", "TensorRT", "trt", index_url=NVIDIA_INDEX, note="needs an NVIDIA GPU")


def trt_major(version: str) -> int:
    """``"10.13.3.9"`` → 10; the builder picks its FP16 path from this."""
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise BackendUnavailableError(f"cannot read a TensorRT version from {version!r}") from None


def check_engine_compatible(built: Mapping[str, Any], trt_version: str, compute_capability: str) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU architecture.

    ``built`` is the manifest's ``engine`` record (``tensorrt``, ``compute_capability``).
    By default TensorRT deserialises a plan only in the exact version that built
    it (version-compatible plans are an opt-in this project does not use), and
    never across SM architectures; the error says so and how to rebuild,
    instead of a deserialisation failure.
    """
    if str(built.get("tensorrt")) != trt_version:
        raise ArtifactError(
            f"engine was built with TensorRT {built.get('tensorrt')} but this is TensorRT {trt_version}; "
            "TensorRT loads a plan only in the exact version that built it: rebuild it here with "
            "attn-export MODEL --engine trt"
        )
    if str(built.get("compute_capability")) != compute_capability:
        raise ArtifactError(
            f"engine was built for compute capability {built.get('compute_capability')} "
            f"({built.get('gpu', 'another GPU')}) but this GPU is {compute_capability}; "
            "rebuild it here: attn-export MODEL --engine trt"
        )


def cuda_device_info() -> tuple[str, str]:
    """(GPU name, compute capability "8.9") of device 0 via cuda-python or torch; raises without a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise BackendUnavailableError("no CUDA GPU found (neither torch nor cuda-python sees one)") from None
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise BackendUnavailableError("no CUDA GPU found: TensorRT needs an NVIDIA GPU")
    err, props = cudart.cudaGetDeviceProperties(0)
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00"), f"{props.major}.{props.minor}"
