"""Cross attention: queries from one feature set, keys/values from another.

Seed 000 §1.2 (single head, ``CrossAttentionLayer``) and §5.1
(``MultiHeadCrossAttention``). Fix: the listing of §1.2 omits the 1/sqrt(d_k)
scale that the article's own formula has; it is applied here.
"""
from __future__ import annotations

import torch
from torch import nn

from ._attention import attention, merge_heads, split_heads


class CrossAttention(nn.Module):
    """Single-head cross attention, softmax(Q Kᵀ/√d) V with Q=x1·Wq, K=x2·Wk, V=x2·Wv."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x1 [B, N, E] attends over x2 [B, M, E]; returns (output [B, N, E], weights [B, N, M])."""
        return attention(self.query(x1), self.key(x2), self.value(x2))


class MultiHeadCrossAttention(nn.Module):
    """Multi-head cross attention with an output projection (seed 000 §5.1)."""

    def __init__(self, embed_dim: int, num_heads: int = 8) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output [B, N, E], weights [B, heads, N, M])."""
        q = split_heads(self.q_proj(x1), self.num_heads)
        k = split_heads(self.k_proj(x2), self.num_heads)
        v = split_heads(self.v_proj(x2), self.num_heads)
        out, weights = attention(q, k, v)
        return self.out_proj(merge_heads(out)), weights
