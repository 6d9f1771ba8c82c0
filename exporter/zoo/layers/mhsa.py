"""Multi-head self attention over a feature map with a 2-D position encoding, as
BoTNet uses in ResNet's last stage (seed 003 "多头自注意力"; Srinivas et al.,
"Bottleneck Transformers", CVPR 2021).

Logits are q·k + q·r with r = rel_h + rel_w learned per (head, position); the
encoding ties the layer to the feature-map size it was built for.
"""
from __future__ import annotations

import torch
from torch import nn

from ._attention import attention, merge_heads, split_heads, to_tokens, from_tokens


class MHSA2d(nn.Module):
    """Multi-head self attention on [B, C, H, W] with content-position logits."""

    def __init__(self, channels: int, size: tuple[int, int], num_heads: int = 4) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = channels // num_heads
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1, bias=False)
        self.rel_h = nn.Parameter(torch.randn(num_heads, size[0], 1, head_dim) * head_dim**-0.5)
        self.rel_w = nn.Parameter(torch.randn(num_heads, 1, size[1], head_dim) * head_dim**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(to_tokens(t), self.num_heads) for t in self.qkv(x).chunk(3, dim=1))
        pos = (self.rel_h + self.rel_w).flatten(1, 2)  # [heads, H*W, D]
        scale = q.shape[-1] ** -0.5
        # q·k + q·pos == q·(k + pos): one attention call covers both logit terms.
        out, _ = attention(q, k + pos, v, scale=scale)
        return from_tokens(merge_heads(out), x)
