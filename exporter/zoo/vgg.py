"""VGG16 backbones with attention (seeds 000 and 001); torchvision ``vgg16`` supplies
``features``/``classifier`` so ImageNet weights load under their own names."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models import vgg16
from torchvision.models.vgg import cfgs, make_layers

from runtimes.specs import BATCH, TensorSpec

from ._base import IMAGE, ZooModel
from ._registry import register_model
from .layers import CrossAttention, MultiHeadCrossAttention, MultiScaleAttention
from .layers._attention import from_tokens, to_tokens

VGG16_POOL_INDICES = (4, 9, 16, 23, 30)
VGG16_CLASSIFIER_WIDTH = 4096  # torchvision's (and the articles') fc6/fc7 width: 120 M of VGG16's 138 M parameters


def vgg16_parts(num_classes: int, classifier_width: int) -> tuple[nn.Sequential, nn.Module, nn.Sequential]:
    """torchvision VGG16's (features, avgpool, classifier); a ``classifier_width`` other than 4096 swaps
    fc6/fc7 for narrower ones under the same keys and init (a slim head: VGG16 drops from 528 MB to ~70 MB
    at 256, the attention and the convolutions unchanged)."""
    vgg = vgg16(num_classes=num_classes)
    if classifier_width != VGG16_CLASSIFIER_WIDTH:
        vgg.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, classifier_width), nn.ReLU(True), nn.Dropout(),
            nn.Linear(classifier_width, classifier_width), nn.ReLU(True), nn.Dropout(),
            nn.Linear(classifier_width, num_classes))
        for layer in vgg.classifier:
            if isinstance(layer, nn.Linear):  # torchvision VGG's init, so random-weight logits keep their scale
                nn.init.normal_(layer.weight, 0, 0.01)
                nn.init.zeros_(layer.bias)
    return vgg.features, vgg.avgpool, vgg.classifier


class VGG16CrossAttention(ZooModel):
    """VGG16 → 7×7 map as 49 tokens of 512 → cross attention with a context map → classifier.

    Seed 000 §2.3/§3.2 (single head) and §5.1 (multi-head). Fixes: the listing
    fed 25088 flattened features to a 512-wide Linear, and threw the attention
    output away; here the 7×7 map is 49 tokens of 512 channels and the attended
    tokens feed the classifier.
    """

    input_specs = (IMAGE, TensorSpec("context", (BATCH, 512, 7, 7)))
    torchvision_arch = "vgg16"

    def __init__(self, num_classes: int, attention: nn.Module, classifier_width: int) -> None:
        super().__init__(num_classes)
        self.features, self.avgpool, self.classifier = vgg16_parts(num_classes, classifier_width)
        self.context_pool = nn.AdaptiveAvgPool2d((7, 7))
        self.cross_attention = attention

    def forward_with_attention(
        self, image: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(logits, (attention weights,)) — seed 000 §3.5 plots these."""
        x = self.avgpool(self.features(image))
        attended, weights = self.cross_attention(to_tokens(x), to_tokens(self.context_pool(context)))
        return self.classifier(torch.flatten(from_tokens(attended, x), 1)), (weights,)

    def forward(self, image: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(image, context)[0]


class VGG16MultiLevelCrossAttention(ZooModel):
    """Seed 000 §5.2: cross attention after the 128-, 256- and 512-channel stages, the
    context image running through its own VGG stream. The listing stops at
    "後續層"; completed with VGG16's last block, avgpool and classifier."""

    input_specs = (IMAGE, TensorSpec("context", (BATCH, 3, 224, 224)))
    torchvision_arch = "vgg16"
    torchvision_prefixes = ("", "context_")
    STAGE_ENDS = (10, 17, 24)  # after the pools closing the 128-, 256-, 512-channel blocks

    def __init__(self, num_classes: int, classifier_width: int) -> None:
        super().__init__(num_classes)
        self.features, self.avgpool, self.classifier = vgg16_parts(num_classes, classifier_width)
        self.context_features = make_layers(cfgs["D"])[: self.STAGE_ENDS[-1]]
        self.attentions = nn.ModuleList(CrossAttention(c) for c in (128, 256, 512))

    def forward_with_attention(
        self, image: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(logits, attention weights of the three levels)."""
        x, ctx, start, weights = image, context, 0, []
        for end, attn in zip(self.STAGE_ENDS, self.attentions):
            x, ctx = self.features[start:end](x), self.context_features[start:end](ctx)
            attended, w = attn(to_tokens(x), to_tokens(ctx))
            x, start = from_tokens(attended, x), end
            weights.append(w)
        x = self.avgpool(self.features[start:](x))
        return self.classifier(torch.flatten(x, 1)), tuple(weights)

    def forward(self, image: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(image, context)[0]


class VGG16MultiScaleAttention(ZooModel):
    """Seed 001: torchvision VGG16 with a multi-scale attention module inserted before
    the layers at ``attention_positions`` of ``features``.

    Fix: the listing counted conv layers against positions meant as layer
    indices, so only two modules were inserted; the defaults (4, 9, 16, 23, 30)
    are the five max-pool indices, one module per block (64…512 channels).
    Each module wraps the layer it precedes, so torchvision's keys are unchanged.
    """

    torchvision_arch = "vgg16"

    def __init__(self, num_classes: int, attention_positions: Sequence[int], reduction_ratio: int,
                 classifier_width: int) -> None:
        super().__init__(num_classes)
        features, self.avgpool, self.classifier = vgg16_parts(num_classes, classifier_width)
        channels, convs_before = 3, {}
        for i, layer in enumerate(features):
            convs_before[i] = channels
            if isinstance(layer, nn.Conv2d):
                channels = layer.out_channels
        for pos in attention_positions:
            if pos not in convs_before:
                raise ValueError(f"attention position {pos} is outside vgg16.features (0..{len(features) - 1})")
            features[pos] = nn.Sequential(MultiScaleAttention(convs_before[pos], reduction_ratio), features[pos])
        self.features = features

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(image)), 1))


@register_model(seed="000 §1-§3", summary="VGG16 + single-head cross attention with a context map")
def vgg16_cross(num_classes: int = 1000, classifier_width: int = VGG16_CLASSIFIER_WIDTH) -> ZooModel:
    return VGG16CrossAttention(num_classes, CrossAttention(512), classifier_width)


@register_model(seed="000 §5.1", summary="VGG16 + 8-head cross attention with a context map")
def vgg16_cross_mh(num_classes: int = 1000, num_heads: int = 8,
                   classifier_width: int = VGG16_CLASSIFIER_WIDTH) -> ZooModel:
    return VGG16CrossAttention(num_classes, MultiHeadCrossAttention(512, num_heads), classifier_width)


@register_model(seed="000 §5.2", summary="VGG16 + cross attention at 3 levels, context VGG stream")
def vgg16_cross_ml(num_classes: int = 1000, classifier_width: int = VGG16_CLASSIFIER_WIDTH) -> ZooModel:
    return VGG16MultiLevelCrossAttention(num_classes, classifier_width)


@register_model(seed="001", summary="VGG16 + multi-scale attention before each pool")
def vgg16_msa(
    num_classes: int = 1000, attention_positions: Sequence[int] = VGG16_POOL_INDICES, reduction_ratio: int = 16,
    classifier_width: int = VGG16_CLASSIFIER_WIDTH,
) -> ZooModel:
    return VGG16MultiScaleAttention(num_classes, attention_positions, reduction_ratio, classifier_width)
