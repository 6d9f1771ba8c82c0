"""``convert_pt2e`` for post-training quantization, without the QAT conv-bn folding it always attempts.

torchao's ``convert_pt2e`` calls ``_fold_conv_bn_qat`` whenever the graph still holds a batch norm. That pass
looks for the conv-bn patterns ``prepare_qat_pt2e`` builds, and finds them by exporting each candidate pattern
(conv1d, conv2d and both transposes, several variants each): 23 s per call on timm's fastvit_sa12, whose
RepMixer keeps batch norms with no convolution before them, out of 42 s for the whole PT2E quantization. A
graph from ``prepare_pt2e`` (post-training) holds none of those patterns, so the pass returns it unchanged;
:func:`convert_ptq` skips it (a test checks that the converted graph and its outputs are the same).
"""
from __future__ import annotations

from unittest import mock

import torch


def convert_ptq(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``convert_pt2e(prepared)`` for a ``prepare_pt2e`` (not QAT) graph, without the QAT conv-bn folding."""
    from torchao.quantization.pt2e import quantize_pt2e

    with mock.patch.object(quantize_pt2e, "_fold_conv_bn_qat", lambda model: model):
        return quantize_pt2e.convert_pt2e(prepared)
