"""onnxruntime execution providers that actually load, not just the ones listed.

onnxruntime-gpu lists CUDA (and TensorRT) as available on machines where the
CUDA libraries or the GPU are missing; a session then silently falls back to
CPU. We create the session and keep only providers it really got.
"""
from __future__ import annotations

import functools

import onnxruntime as ort

from runtimes.errors import BackendUnavailableError, OptionError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# graph rewrites of onnxruntime that change what a file computes, left out of every session: "Pad_Fusion" (1.31)
# folds a constant Pad of zeros into a following MaxPool's pads, which MaxPool fills with -inf, so a window whose
# values are all negative gives its maximum instead of 0 (BiT's stem: conv, pad, max-pool; timm's resnetv2_50x1_bit
# rel 3.5e-3 on random inputs, 0.16 on photos; microsoft/onnxruntime PR 18136 added it, onnx/optimizer PR 318
# fixes the same fold there)
MISCOMPILING_REWRITES = ("Pad_Fusion",)


def requested_providers(device: str) -> list[str]:
    """Provider list to ask for on ``device`` ("cpu" or "cuda")."""
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if CUDA not in ort.get_available_providers():
            raise BackendUnavailableError("this onnxruntime build has no CUDA provider: "
                                          "pip install 'attn-export[ort-gpu]'")
        return [CUDA, CPU]
    raise OptionError(f"device must be 'cpu' or 'cuda', got {device!r}")


def session_options(threads: int | None = None, optimization: str = "all", spin_wait: bool = True
                    ) -> ort.SessionOptions:
    """SessionOptions with ``threads`` intra-op threads, a graph optimisation level, and (``spin_wait=False``)
    intra-op threads that sleep between calls instead of spinning."""
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise OptionError(f"optimization must be one of {sorted(levels)}, got {optimization!r}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[optimization]
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if not spin_wait:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def create_session(
    path: str, device: str = "cpu", *, threads: int | None = None, optimization: str = "all", spin_wait: bool = True
) -> ort.InferenceSession:
    """An InferenceSession on ``device``; asking for CUDA where it cannot load raises."""
    providers = requested_providers(device)
    session = ort.InferenceSession(path, sess_options=session_options(threads, optimization, spin_wait),
                                   providers=providers, disabled_optimizers=list(MISCOMPILING_REWRITES))
    if device == "cuda" and CUDA not in session.get_providers():
        raise BackendUnavailableError(
            "onnxruntime could not load its CUDA provider (no GPU, or CUDA/cuDNN libraries missing); use device='cpu'"
        )
    return session


@functools.lru_cache(maxsize=1)
def cuda_usable() -> bool:
    """True when a CUDA session can really be created here (probed once per process)."""
    if CUDA not in ort.get_available_providers():
        return False
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), sess_options=session_options(optimization="disable"), providers=[CUDA, CPU]
        )
    except Exception:  # any load failure means "not usable", which is the answer sought
        return False
    return CUDA in session.get_providers()
