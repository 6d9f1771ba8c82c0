"""A two-input model: an image and int64 token ids with a value range, fused by cross-attention
(image positions attend to the embedded ids). Exported through the Python API with --sample-inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 1000


class ImageText(nn.Module):
    def __init__(self, dim: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 3, stride=4, padding=1), nn.BatchNorm2d(dim), nn.ReLU(),
                                  nn.Conv2d(dim, dim, 3, stride=2, padding=1), nn.ReLU())
        self.words = nn.Embedding(VOCAB, dim)
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, image: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        pixels = self.stem(image).flatten(2).transpose(1, 2)  # [B, HW, D]
        words = self.words(ids)  # [B, S, D]
        fused = F.scaled_dot_product_attention(self.query(pixels), self.key(words), self.value(words))
        return self.head((pixels + fused).mean(1))
