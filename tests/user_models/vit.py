"""A small ViT on ``F.scaled_dot_product_attention`` over a dynamic number of patches (``seq``), reached
as ``tests.user_models.vit:tiny_vit`` (package.module:callable). Returns class logits and the token
features, so one output has the dynamic ``seq`` axis too."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm encoder block: multi-head SDPA self-attention, then an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Patch vectors [batch, seq, patch_dim] → (logits [batch, classes], tokens [batch, seq, dim])."""

    def __init__(self, patch_dim: int = 48, dim: int = 64, depth: int = 2, heads: int = 4, max_patches: int = 64,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(patch_dim, dim)
        self.position = nn.Parameter(torch.randn(1, max_patches, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(patches) + self.position[:, : patches.shape[1]]
        tokens = self.norm(self.blocks(x))
        return self.head(tokens.mean(1)), tokens


def tiny_vit(**kwargs: object) -> nn.Module:
    return TinyViT(**kwargs)  # type: ignore[arg-type]
