"""ResNet50 backbones with attention (seeds 002, 003, 004). torchvision ``resnet50``
is kept whole as ``backbone`` so ImageNet weights load under ``backbone.*``."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.resnet import ResNet

from ._base import ZooModel
from ._registry import register_model
from .layers import AxialAttention2d, KeyValueAttention, MHSA2d, SelfAttention2d
from .layers._attention import to_tokens


def resnet_trunk(backbone: ResNet, x: torch.Tensor) -> torch.Tensor:
    """conv1 … layer4 of a torchvision ResNet: [B, 3, 224, 224] → [B, 2048, 7, 7]."""
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    return backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(x))))


class ResNetWithAttention(ZooModel):
    """A torchvision ResNet50 whose inside was changed by a builder; forward is the backbone's."""

    torchvision_arch = "resnet50"
    torchvision_prefixes = ("backbone.",)

    def __init__(self, num_classes: int, modify: Callable[[ResNet], None]) -> None:
        super().__init__(num_classes)
        self.backbone = resnet50(num_classes=num_classes)
        modify(self.backbone)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.backbone(image)


class ResNetParallelSelfAttention(ZooModel):
    """Seed 002 example 2: SAGAN attention beside the layer4 map, both concatenated,
    pooled, fc 4096 → classes. Fix: the listing applied the attention to the
    1000-way logits; here it sees the 2048×7×7 feature map."""

    torchvision_arch = "resnet50"
    torchvision_prefixes = ("backbone.",)

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.backbone = resnet50()
        self.backbone.fc = nn.Identity()
        self.attention = SelfAttention2d(2048, 2048)
        self.fc = nn.Linear(2 * 2048, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = resnet_trunk(self.backbone, image)
        combined = torch.cat([features, self.attention(features)], dim=1)
        return self.fc(combined.mean(dim=(2, 3)))


class ResNetKeyValueAttention(ZooModel):
    """Seed 004: the layer4 map as 7×7 patch tokens, projected to ``embed_dim``, plus a
    learned position encoding (§ optimisation 2), multi-head key-value attention,
    mean-pooled, classifier."""

    torchvision_arch = "resnet50"
    torchvision_prefixes = ("backbone.",)

    def __init__(self, num_classes: int, embed_dim: int, num_heads: int) -> None:
        super().__init__(num_classes)
        self.backbone = resnet50()
        self.backbone.fc = nn.Identity()
        self.proj = nn.Linear(2048, embed_dim)
        self.pos_embed = nn.Parameter(torch.randn(1, 49, embed_dim) * 0.02)
        self.attention = KeyValueAttention(embed_dim, num_heads)
        self.fc = nn.Linear(embed_dim, num_classes)

    def tokens(self, image: torch.Tensor) -> torch.Tensor:
        """The attention's input: the 7×7 layer4 map as 49 tokens, projected, plus the position encoding."""
        return self.proj(to_tokens(resnet_trunk(self.backbone, image))) + self.pos_embed

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(image)
        return self.fc(self.attention(tokens, tokens, tokens).mean(dim=1))


def replace_layer4_conv2(make_attention: Callable[[int, tuple[int, int]], nn.Module]) -> Callable[[ResNet], None]:
    """BoTNet surgery: each layer4 bottleneck's 3×3 conv becomes ``make_attention(512, size)``;
    the first block (stride 2) runs it at 14×14 and average-pools 2×2 after it."""

    def modify(backbone: ResNet) -> None:
        for i, block in enumerate(backbone.layer4):
            if i == 0:
                block.conv2 = nn.Sequential(make_attention(512, (14, 14)), nn.AvgPool2d(2, 2))
            else:
                block.conv2 = make_attention(512, (7, 7))

    return modify


def append_to_layer1(backbone: ResNet) -> None:
    """Seed 002 example 1: SAGAN attention appended to layer1 (256 channels, 56×56)."""
    backbone.layer1.add_module("self_attention", SelfAttention2d(256, 256))


@register_model(seed="002 ex.1", summary="ResNet50 + SAGAN self attention after layer1")
def resnet50_sa(num_classes: int = 1000) -> ZooModel:
    """Fix: the listing pooled the 1000-way logits again into a second fc; one classifier here."""
    return ResNetWithAttention(num_classes, append_to_layer1)


@register_model(seed="002 ex.2", summary="ResNet50 ‖ SAGAN attention on layer4, concat, fc")
def resnet50_sa_parallel(num_classes: int = 1000) -> ZooModel:
    return ResNetParallelSelfAttention(num_classes)


@register_model(seed="003 MHSA", summary="ResNet50, layer4 3×3 convs → MHSA + 2-D pos. (BoTNet)")
def resnet50_mhsa(num_classes: int = 1000, num_heads: int = 4) -> ZooModel:
    return ResNetWithAttention(num_classes, replace_layer4_conv2(lambda c, size: MHSA2d(c, size, num_heads)))


@register_model(seed="003 separable", summary="ResNet50, layer4 3×3 convs → row+column attention")
def resnet50_axial(num_classes: int = 1000, num_heads: int = 8) -> ZooModel:
    return ResNetWithAttention(num_classes, replace_layer4_conv2(lambda c, size: AxialAttention2d(c, num_heads)))


@register_model(seed="004", summary="ResNet50 layer4 tokens → 8-head key-value attention")
def resnet50_kv(num_classes: int = 1000, embed_dim: int = 512, num_heads: int = 8) -> ZooModel:
    return ResNetKeyValueAttention(num_classes, embed_dim, num_heads)
