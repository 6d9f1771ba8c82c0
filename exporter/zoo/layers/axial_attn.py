"""Separable (axial) self attention: attention along rows, then along columns
(seed 003 "可分离自注意力"; Ho et al., "Axial Attention", 2019), each followed by a
residual. Cost O(HW·(H+W)) instead of O((HW)²)."""
from __future__ import annotations

import torch
from torch import nn

from ._attention import attention, merge_heads, split_heads


class AxialAttention1d(nn.Module):
    """Multi-head self attention along the last axis of tokens [N, L, C]."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.proj = nn.Linear(channels, channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(tokens).chunk(3, dim=-1))
        out, _ = attention(q, k, v)
        return tokens + self.proj(merge_heads(out))


class AxialAttention2d(nn.Module):
    """Row attention (along W) then column attention (along H) on [B, C, H, W]."""

    def __init__(self, channels: int, num_heads: int = 8) -> None:
        super().__init__()
        self.row = AxialAttention1d(channels, num_heads)
        self.col = AxialAttention1d(channels, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1)  # [B, H, W, C]
        y = self.row(y.flatten(0, 1)).reshape_as(y)  # rows: sequences along W
        y = y.transpose(1, 2)  # [B, W, H, C]
        y = self.col(y.flatten(0, 1)).reshape_as(y)  # columns: sequences along H
        return y.permute(0, 3, 2, 1)  # [B, C, H, W]
