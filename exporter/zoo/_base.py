"""What every zoo model declares so the exporter needs no per-model special case."""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from runtimes.specs import BATCH, TensorSpec

IMAGE = TensorSpec("image", (BATCH, 3, 224, 224))


class ZooModel(nn.Module):
    """A zoo model: ``input_specs`` in ``forward`` argument order, ``output_specs``,
    and ``torchvision_prefixes`` — where torchvision backbone weights load
    (a torchvision key ``k`` loads into ``prefix + k`` when names and shapes match)."""

    input_specs: ClassVar[tuple[TensorSpec, ...]] = (IMAGE,)
    torchvision_arch: ClassVar[str | None] = None
    torchvision_prefixes: ClassVar[tuple[str, ...]] = ("",)

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("logits", (BATCH, self.num_classes)),)
