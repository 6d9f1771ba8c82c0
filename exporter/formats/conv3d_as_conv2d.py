"""A 3-D convolution whose kernel is 1 along one spatial axis, run as the 2-D convolution it is.

ExecuTorch 1.5.1 runs ``nn.Conv3d`` nowhere: XNNPACK does not take it, and the portable convolution kernel
refuses a 5-D input at run time ("Expect input tensor to be 3-D or 4-D, but got, 5", error 0x12). timm's
lambda layer (lambda_resnet26t) computes its position term with ``nn.Conv3d(1, dim_qk, (r, r, 1))``. With a
kernel, stride 1 and no padding along one axis, that axis is only a batch of independent 2-D convolutions:
:func:`conv3d_as_conv2d` moves it into the batch, runs an ``nn.Conv2d`` with the same weights, and moves it
back, before the ``.pte``'s torch.export.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def _depth_one_axis(conv: nn.Conv3d) -> int | None:
    """The spatial axis (2, 3 or 4 of the input) along which ``conv`` is a 1-wide kernel with stride 1 and no
    padding, or None."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    for offset in range(3):
        if conv.kernel_size[offset] == 1 and conv.stride[offset] == 1 and conv.padding[offset] == 0:
            return offset + 2
    return None


class AxisBatchedConv2d(nn.Module):
    """``conv``'s computation with input axis ``axis`` moved into the batch: the same output, bit for bit up to
    the convolution kernel's summation order."""

    def __init__(self, conv: nn.Conv3d, axis: int) -> None:
        super().__init__()
        kept = [i for i in range(3) if i != axis - 2]
        self.axis = axis
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(conv.kernel_size[i] for i in kept),
                              tuple(conv.stride[i] for i in kept), tuple(conv.padding[i] for i in kept),
                              tuple(conv.dilation[i] for i in kept), conv.groups, conv.bias is not None,
                              device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.squeeze(axis))
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        order = [0, self.axis, *(i for i in range(1, 5) if i != self.axis)]
        moved = x.permute(order)
        batch, length = moved.shape[0], moved.shape[1]
        out = self.conv(moved.reshape(batch * length, *moved.shape[2:]))
        out = out.reshape(batch, length, *out.shape[1:])
        back = [0, *(i + 1 for i in range(1, self.axis)), 1, *(i + 1 for i in range(self.axis, 4))]
        return out.permute(back)


def conv3d_as_conv2d(module: nn.Module) -> nn.Module:
    """``module`` itself when it holds no ``nn.Conv3d`` that :class:`AxisBatchedConv2d` can replace; else a copy
    with each such layer replaced (the caller's module is left as it is)."""
    axes = {name: _depth_one_axis(child) for name, child in module.named_modules() if isinstance(child, nn.Conv3d)}
    replaceable = {name: axis for name, axis in axes.items() if axis is not None}
    if not replaceable:
        return module
    converted = copy.deepcopy(module)
    for name, axis in replaceable.items():
        parent_name, _, attribute = name.rpartition(".")
        parent = converted.get_submodule(parent_name) if parent_name else converted
        setattr(parent, attribute, AxisBatchedConv2d(getattr(parent, attribute), axis))
    return converted
