"""Coordinate attention (Hou et al., CVPR 2021), the "CA" of seed 003's CA-C2f.

The seed listing is only a conv + sigmoid gate; this is the published design:
pool along W and along H (ReduceMean, which exports with any input size, unlike
``AdaptiveAvgPool2d((None, 1))``), a shared 1×1 conv + BN + h-swish on the two
concatenated descriptors, then two 1×1 convs giving sigmoid gates along H and W.
"""
from __future__ import annotations

import torch
from torch import nn


class CoordAttention(nn.Module):
    """``x * gate_h [B,C,H,1] * gate_w [B,C,1,W]``; both gates lie in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 32, min_mid: int = 8) -> None:
        super().__init__()
        mid = max(min_mid, channels // reduction)
        self.shared = nn.Sequential(
            nn.Conv2d(channels, mid, kernel_size=1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish()
        )
        self.conv_h = nn.Conv2d(mid, channels, kernel_size=1)
        self.conv_w = nn.Conv2d(mid, channels, kernel_size=1)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gate along H [B,C,H,1], gate along W [B,C,1,W])."""
        h = x.shape[2]
        pooled_h = x.mean(dim=3, keepdim=True)  # [B, C, H, 1]
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # [B, C, W, 1]
        y = self.shared(torch.cat([pooled_h, pooled_w], dim=2))
        y_h, y_w = y[:, :, :h], y[:, :, h:]
        return torch.sigmoid(self.conv_h(y_h)), torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_h, gate_w = self.gates(x)
        return x * gate_h * gate_w
