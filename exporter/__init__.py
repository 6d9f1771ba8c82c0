"""attn-export: the zoo and the export pipeline (everything that needs torch).

    from exporter import ExportOptions, export_module
    manifest = export_module(my_module, "artifacts", inputs=[TensorSpec(...)], name="mine",
                             options=ExportOptions(fp16=True))

Layering: ``exporter`` sits on ``runtimes`` (its public modules: errors, specs, manifest, selection,
fileio, optional, cli_support) and never on ``serving``, except that ``attn-export --triton-repo`` calls
``serving.triton_repo`` lazily. The names below are imported on first use, so ``exporter.cli`` can tell a slim install which
command adds the export stack before anything imports torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ExportOptions", "export", "export_module"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'exporter' has no attribute {name!r}")
