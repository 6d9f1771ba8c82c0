"""Cross attention: queries from one feature set, keys/values from another.

Seed 000 §1.2 (single head, ``CrossAttentionLayer``) and §5.1
(``MultiHeadCrossAttention``). Fix: the listing of §1.2 omits the 1/sqrt(d_k)
scale that the article's own formula has; it is applied here.
"""
from __future__ import annotations

import torch
from torch import nn

from ._attention import attention
from .kv_attn import KeyValueAttention


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


class MultiHeadCrossAttention(KeyValueAttention):
    """Multi-head cross attention with an output projection (seed 000 §5.1): key-value
    attention whose keys and values both come from the context ``x2``."""

    def __init__(self, embed_dim: int, num_heads: int = 8) -> None:
        super().__init__(embed_dim, num_heads)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """Returns (output [B, N, E], weights [B, heads, N, M])."""
        return self.attend(x1, x2, x2)
