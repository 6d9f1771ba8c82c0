"""Serve exported models through torch, onnxruntime or TensorRT with numpy in and out."""
