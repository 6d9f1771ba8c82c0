"""One module per engine, each a ``runtimes.base.Runtime`` subclass, with the helpers only engines use:
onnxruntime (``ort_rt``, ``providers``), OpenVINO (``openvino_rt``, ``bf16_probe``), TensorRT (``trt_rt``,
``trt_common``, ``cuda_mem``), ExecuTorch (``executorch_rt``) and torch (``torch_rt``).

A module is imported only when its engine is opened (``runtimes.selection.BACKENDS``), and imports its
engine inside ``open`` through ``runtimes.optional.require``, so ``import runtimes`` needs numpy alone.
Adding one is CONTRIBUTING.md's "Add an engine".
"""
