"""``c2f_ca``: a small YOLOv8-style classification backbone whose C2f stages are each
followed by coordinate attention (seed 003 "CA-C2f"). No torchvision backbone."""
from __future__ import annotations

import torch
from torch import nn

from ._base import ZooModel
from ._registry import register_model
from .layers import C2f, ConvBNAct, CoordAttention


class C2fCoordAttentionNet(ZooModel):
    """stem (2 strided convs) → 4 × [strided conv → C2f(n) → CoordAttention] → mean → fc."""

    def __init__(self, num_classes: int, widths: tuple[int, ...], depths: tuple[int, ...]) -> None:
        super().__init__(num_classes)
        stem = widths[0] // 2
        layers: list[nn.Module] = [ConvBNAct(3, stem, 3, 2)]
        channels = stem
        for width, depth in zip(widths, depths):
            layers += [ConvBNAct(channels, width, 3, 2), C2f(width, width, depth), CoordAttention(width)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision-style init (PyTorch's default conv init fades activations to ~0 over 30 layers)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(image).mean(dim=(2, 3)))


@register_model(seed="003 CA-C2f", summary="YOLOv8-style C2f stages + coordinate attention")
def c2f_ca(
    num_classes: int = 1000, widths: tuple[int, ...] = (64, 128, 256, 512), depths: tuple[int, ...] = (1, 2, 2, 1)
) -> ZooModel:
    return C2fCoordAttentionNet(num_classes, tuple(widths), tuple(depths))
