"""``transformer_encoder`` (seed 002 example 3): attention as the whole model — token
and position embeddings, then post-norm encoder layers with multi-head attention.

Fixes: the key mask [B, S] is broadcast to [B, heads, q, k]; masked scores use
-1e4 (FP16 holds it) instead of -1e20 (-inf in FP16); no batch or length is
baked into a reshape; positions come from a cumulative sum, so the sequence
axis stays dynamic in ONNX. As in the listing, each head shares one
head_dim×head_dim projection and scores are scaled by 1/sqrt(embed_size).
"""
from __future__ import annotations

import torch
from torch import nn

from runtimes.specs import BATCH, TensorSpec

from ._base import ZooModel
from ._registry import register_model
from .layers._attention import attention, merge_heads

SEQ = "seq"


class EncoderSelfAttention(nn.Module):
    """The listing's ``SelfAttention``: per-head shared q/k/v Linear(head_dim, head_dim), fc_out."""

    def __init__(self, embed_size: int, heads: int) -> None:
        super().__init__()
        if embed_size % heads:
            raise ValueError(f"embed_size {embed_size} is not divisible by heads {heads}")
        self.heads, self.embed_size = heads, embed_size
        head_dim = embed_size // heads
        self.values = nn.Linear(head_dim, head_dim, bias=False)
        self.keys = nn.Linear(head_dim, head_dim, bias=False)
        self.queries = nn.Linear(head_dim, head_dim, bias=False)
        self.fc_out = nn.Linear(embed_size, embed_size)

    def _heads(self, x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        return proj(x.unflatten(-1, (self.heads, -1))).transpose(1, 2)  # [B, H, S, D]

    def forward(
        self, values: torch.Tensor, keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output [B, S, E], attention weights [B, heads, S, S])."""
        key_mask = None if mask is None else mask[:, None, None, :]
        out, weights = attention(
            self._heads(query, self.queries),
            self._heads(keys, self.keys),
            self._heads(values, self.values),
            scale=self.embed_size**-0.5,
            mask=key_mask,
        )
        return self.fc_out(merge_heads(out)), weights


class EncoderLayer(nn.Module):
    """Attention + residual + LayerNorm, feed-forward + residual + LayerNorm (post-norm)."""

    def __init__(self, embed_size: int, heads: int, dropout: float, forward_expansion: int) -> None:
        super().__init__()
        self.attention = EncoderSelfAttention(embed_size, heads)
        self.norm1 = nn.LayerNorm(embed_size)
        self.norm2 = nn.LayerNorm(embed_size)
        self.feed_forward = nn.Sequential(
            nn.Linear(embed_size, forward_expansion * embed_size),
            nn.ReLU(),
            nn.Linear(forward_expansion * embed_size, embed_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attention(x, x, x, mask)
        x = self.dropout(self.norm1(attended + x))
        return self.dropout(self.norm2(self.feed_forward(x) + x)), weights


class TransformerEncoder(ZooModel):
    """tokens int64 [B, S] (ids < vocab) and mask int64 [B, S] (1 keep, 0 pad) → hidden [B, S, E].

    There is no classifier head.
    """

    MAX_LENGTH = 100
    input_specs = (
        TensorSpec("tokens", (BATCH, SEQ), "int64", value_range=(0, 1000), example_dims={SEQ: 16},
                   max_dims={SEQ: 100}),
        TensorSpec("mask", (BATCH, SEQ), "int64", value_range=(0, 2), example_dims={SEQ: 16},
                   max_dims={SEQ: 100}),
    )

    def __init__(
        self, vocab_size: int, embed_size: int, num_layers: int, heads: int, forward_expansion: int, dropout: float
    ) -> None:
        super().__init__(num_classes=0)
        self.embed_size = embed_size
        self.word_embedding = nn.Embedding(vocab_size, embed_size)
        self.position_embedding = nn.Embedding(self.MAX_LENGTH, embed_size)
        self.layers = nn.ModuleList(
            EncoderLayer(embed_size, heads, dropout, forward_expansion) for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("hidden", (BATCH, SEQ, self.embed_size)),)

    def forward_with_attention(
        self, tokens: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(hidden states, attention weights of every layer)."""
        positions = torch.ones_like(tokens).cumsum(dim=1) - 1
        out = self.dropout(self.word_embedding(tokens) + self.position_embedding(positions))
        weights = []
        for layer in self.layers:
            out, w = layer(out, mask)
            weights.append(w)
        return out, tuple(weights)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(tokens, mask)[0]


@register_model(seed="002 ex.3", summary="Transformer encoder over token ids (6 layers, 8 heads)")
def transformer_encoder(
    num_classes: int = 1000,
    vocab_size: int = 1000,
    embed_size: int = 256,
    num_layers: int = 6,
    heads: int = 8,
    forward_expansion: int = 4,
    dropout: float = 0.2,
) -> ZooModel:
    """``num_classes`` is accepted for the zoo's uniform API; the encoder has no head."""
    return TransformerEncoder(vocab_size, embed_size, num_layers, heads, forward_expansion, dropout)
