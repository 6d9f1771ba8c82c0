"""torchvision's MobileNetV3-Small (squeeze-excitation attention), as a user's file.py:callable.

It declares no input_specs: the test passes ``--input x:batch,3,224,224`` (forward's argument is ``x``).
"""
from __future__ import annotations

from torch import nn
from torchvision.models import mobilenet_v3_small


def build(num_classes: int = 1000) -> nn.Module:
    return mobilenet_v3_small(num_classes=num_classes)
