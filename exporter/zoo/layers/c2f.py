"""YOLOv8-style C2f block (seed 003 "C2f"): split, n bottlenecks, concat every
intermediate, fuse with a 1×1 conv. Used with coordinate attention in ``c2f_ca``."""
from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Module):
    """Conv2d (no bias) + BatchNorm + SiLU, as in YOLOv8's ``Conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3×3 ConvBNAct with a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(channels, channels, 3)
        self.cv2 = ConvBNAct(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """cv1 → chunk in two → n bottlenecks on the second half, each output kept → concat → cv2."""

    def __init__(self, in_channels: int, out_channels: int, n: int = 1) -> None:
        super().__init__()
        self.hidden = out_channels // 2
        self.cv1 = ConvBNAct(in_channels, 2 * self.hidden, 1)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden) for _ in range(n))
        self.cv2 = ConvBNAct((2 + n) * self.hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))
