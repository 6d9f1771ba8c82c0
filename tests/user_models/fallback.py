"""Two modules that only one exporter takes: what ``--exporter auto``'s fallback is tested on.

- ``GroupedQueryAttention``: ``F.scaled_dot_product_attention(..., enable_gqa=True)`` (fewer key/value heads than
  query heads, as modern ViTs and LLM-style blocks use). The TorchScript exporter rejects it ("not implemented
  if enable_gqa is True"); dynamo exports it. (The issue's example, a *tensor* ``is_causal``, no longer runs
  in eager PyTorch 2.14: "argument 'is_causal' must be bool, not Tensor".)
- ``ContextAttention``: ``nn.MultiheadAttention`` whose keys come from a second input with a dynamic ``seq``.
  The TorchScript exporter writes a file with the example's ``seq`` baked into a Reshape, which onnxruntime
  then refuses at any other ``seq``; dynamo keeps it symbolic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GroupedQueryAttention(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4, kv_heads: int = 2, num_classes: int = 4) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * kv_heads * self.head_dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.query(tokens).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)
        k, v = self.key_value(tokens).unflatten(-1, (2 * self.kv_heads, self.head_dim)).transpose(1, 2).chunk(2, 1)
        mixed = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return self.head(mixed.transpose(1, 2).flatten(2).mean(1))


class ContextAttention(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, num_classes: int = 4) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        mixed, _ = self.attention(query, context, context, need_weights=False)
        return self.head(mixed.mean(1))
