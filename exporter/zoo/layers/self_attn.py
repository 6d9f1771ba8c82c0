"""SAGAN-style self attention over the spatial positions of a feature map (seed 002,
examples 1 and 2; Zhang et al., "Self-Attention GANs", 2019).

q, k from 1×1 convs to ``out_channels``, v from a 1×1 conv back to the input
channels, a learnable ``gamma`` starting at 0 and a residual, so the layer
starts as the identity. Unscaled scores, as in SAGAN and the seed listing.
"""
from __future__ import annotations

import torch
from torch import nn

from ._attention import attention, from_tokens, to_tokens


class SelfAttention2d(nn.Module):
    """``gamma * attention(x) + x`` over the H*W positions of ``x`` [B, C, H, W]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = to_tokens(self.query_conv(x)), to_tokens(self.key_conv(x)), to_tokens(self.value_conv(x))
        out, _ = attention(q, k, v, scale=1.0)
        return self.gamma * from_tokens(out, x) + x
