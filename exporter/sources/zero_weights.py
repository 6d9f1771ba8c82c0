"""Re-draw zero-initialised weight tensors, so that a randomly initialised model's outputs depend on its input.

Many architectures zero their classifier head at init (torchvision's ViT, timm's Hiera and gMLP): at random init
their logits are the same for every image, and parity compares constants, proving nothing about the graph
between input and head. ``attn-export --redraw-zero-weights`` (the coverage sweep's setting) fills each
all-zero weight of two or more dimensions with seeded N(0, 0.02²), timm's init for linear layers. Vectors (biases,
LayerScale gammas, zero-init norm scales) are left alone: one drawn matrix is enough to make the output move.
"""
from __future__ import annotations

import torch
from torch import nn

REDRAW_STD = 0.02


def redraw_zero_weights(module: nn.Module, seed: int) -> list[str]:
    """Fill every all-zero floating-point parameter with ``ndim >= 2`` of ``module`` with seeded N(0, 0.02²), in
    place; returns their names (empty when there were none)."""
    generator = torch.Generator().manual_seed(seed)
    redrawn = []
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2 and param.is_floating_point() and param.numel() and not param.any():
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * REDRAW_STD)
                redrawn.append(name)
    return redrawn
