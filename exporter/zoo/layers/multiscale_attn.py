"""Multi-scale attention (seed 001 §2): 1×1/3×3/5×5 branches fused by a 1×1 conv,
gated by SE-style channel attention and by spatial attention computed from the
channel-wise max, mean and standard deviation; residual output."""
from __future__ import annotations

import torch
from torch import nn


class MultiScaleAttention(nn.Module):
    """``x + fusion(cat(b1, b3, b5)) * channel_att(x) * spatial_att(x)``."""

    def __init__(self, in_channels: int, reduction_ratio: int = 16) -> None:
        super().__init__()
        mid = in_channels // reduction_ratio
        if mid < 1:
            raise ValueError(f"reduction_ratio {reduction_ratio} leaves no channels of {in_channels}")
        self.conv1x1 = nn.Conv2d(in_channels, mid, kernel_size=1)
        self.conv3x3 = nn.Conv2d(in_channels, mid, kernel_size=3, padding=1)
        self.conv5x5 = nn.Conv2d(in_channels, mid, kernel_size=5, padding=2)
        self.channel_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, mid, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, in_channels, kernel_size=1),
            nn.Sigmoid(),
        )
        self.spatial_attention = nn.Sequential(nn.Conv2d(3, 1, kernel_size=7, padding=3), nn.Sigmoid())
        self.fusion_conv = nn.Conv2d(mid * 3, in_channels, kernel_size=1)

    def spatial_descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W]: channel max, mean and (unbiased) std — the std is FP16-sensitive."""
        return torch.cat(
            [x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True), x.std(dim=1, keepdim=True)], dim=1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fusion_conv(torch.cat([self.conv1x1(x), self.conv3x3(x), self.conv5x5(x)], dim=1))
        gate = self.channel_attention(x) * self.spatial_attention(self.spatial_descriptor(x))
        return x + fused * gate
