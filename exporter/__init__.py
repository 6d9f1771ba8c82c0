"""attn-export: the zoo and the export pipeline (everything that needs torch).

    from exporter import ExportOptions, export_module
    manifest = export_module(my_module, "artifacts", inputs=[TensorSpec(...)], name="mine",
                             options=ExportOptions(fp16=True))

Layout: the pipeline at the top (``pipeline``, the stage table ``stages``, ``context``, ``options``,
``staging``, ``progress``, ``quiet``, ``errors``, ``export_model``, ``tracing``, ``flops``, ``onnx_files``,
the ``cli``); where models come from in ``exporter.sources``; one module per artifact in
``exporter.formats``; the proofs against PyTorch in ``exporter.checks``; the articles' models in
``exporter.zoo``; training on offline data in ``exporter.training``.

Layering (tests/test_layering.py checks each rule): ``exporter`` sits on ``runtimes`` and never on
``serving``, except that ``attn-export --triton-repo`` calls ``serving.triton_repo`` lazily; ``sources``,
``formats``, ``checks`` and ``training`` import none of the pipeline modules (``cli``, ``pipeline``,
``stages``, ``context``, ``options``). The names below are imported on first use, so ``exporter.cli`` can
tell a slim install which command adds the export stack before anything imports torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ExportOptions", "export", "export_module"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from exporter import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'exporter' has no attribute {name!r}")
