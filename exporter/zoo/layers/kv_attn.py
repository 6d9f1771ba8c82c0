"""Key-value attention (seed 004): q/k/v/o projections, scaled softmax, multi-head.

Fix: the listing reshapes k and v with the query's ``seq_len``; keys and values
use their own length here (and no length is baked into the graph).
"""
from __future__ import annotations

import torch
from torch import nn

from ._attention import attention, merge_heads, split_heads


class KeyValueAttention(nn.Module):
    """``o_proj(MHA(q_proj(q), k_proj(k), v_proj(v)))``; k and v may be longer or shorter than q."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.o_proj = nn.Linear(embed_dim, embed_dim)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output [B, N, E], attention weights [B, heads, N, M])."""
        heads = self.num_heads
        out, weights = attention(
            split_heads(self.q_proj(q), heads), split_heads(self.k_proj(k), heads), split_heads(self.v_proj(v), heads)
        )
        return self.o_proj(merge_heads(out)), weights

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.attend(q, k, v)[0]
