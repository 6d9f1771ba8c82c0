"""One module per artifact format, each called by one stage of ``exporter.stages``: the ONNX export itself
(``onnx_export``), FP16 (``fp16``), INT8 Q/DQ (``int8``), OpenVINO IR (``openvino_ir``), ExecuTorch
(``executorch_pte``), ONNX Runtime's mobile format (``ort_format``) and fused attention (``ort_fusion``),
TensorRT (``trt_build``, with ``trt_readiness`` and the ``trtexec`` cross-check beside it), and the two helpers
of the third-party conversions, ``isolation`` (a child process) and ``activation_memory`` (bounded
calibration memory).

A format is given its inputs as arguments and returns its files; it never imports the pipeline modules
(``cli``, ``pipeline``, ``stages``, ``context``, ``options``): tests/test_layering.py checks it. Adding one is
CONTRIBUTING.md's "Add an artifact format".
"""
