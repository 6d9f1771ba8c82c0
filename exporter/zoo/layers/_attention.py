"""The one scaled-dot-product attention used by every attention layer of the zoo.

Written with explicit MatMul/Softmax (not ``F.scaled_dot_product_attention``)
so that every exporter and opset writes the same, inspectable ONNX pattern and
the FP16 pass can keep the softmax in FP32 by name.
"""
from __future__ import annotations

import math

import torch


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ · scale [masked]) v over the last two dims; returns (output, weights).

    ``scale`` defaults to 1/sqrt(d_k). ``mask`` broadcasts to the score tensor;
    positions where it is 0 get a large negative score that FP16 can hold
    (-1e4, not -1e20, which becomes -inf in FP16 and NaN after softmax).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(mask == 0, MASK_VALUE)
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, v), weights


MASK_VALUE = -1.0e4


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, N, H*D] -> [B, H, N, D] without baking B or N into the graph."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, N, D] -> [B, N, H*D]."""
    return x.transpose(1, 2).flatten(2)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """Feature map [B, C, H, W] -> tokens [B, H*W, C]."""
    return x.flatten(2).transpose(1, 2)


def from_tokens(tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Tokens [B, H*W, C] -> feature map shaped like ``like`` ([B, C, H, W])."""
    return tokens.transpose(1, 2).reshape_as(like)
