"""torchao's ``HistogramObserver`` with the same min/max search, computed in a few binary searches.

``convert_pt2e`` asks every activation observer for its quantization parameters, and
``HistogramObserver._non_linear_param_search`` walks the histogram's quantiles in steps of 1e-5 (up to 100,000
loop turns), each turn indexing float32 tensors from Python. Profiled on timm's swinv2_tiny_window8_256 (276
observers, asked 421 times since an observer feeding several nodes is asked once per node): 23 of the 32 s of
``convert_pt2e``, once per widening step of the ExecuTorch INT8 stage.

:class:`FastHistogramObserver` gives the same (min, max), so bit-identical scales and zero points (the tests
compare it with torchao's on edge-case histograms and on a whole quantized program; swinv2_tiny's 276
observers were compared once by hand, docs/coverage.md): the quantile thresholds are the loop's own float64
sums rounded to float32 as torch rounds a Python scalar compared with a float32 tensor, the bins each turn
would reach come from a binary search of the (non-decreasing) cumulative histogram, and a run of turns
that changes no bin is skipped with one more binary search. The quantization error, which decides when the
search stops, is still torchao's own. It also answers a repeated question from a cache that the next
calibration batch clears.
"""
from __future__ import annotations

import dataclasses
import struct
from bisect import bisect_left, bisect_right
from typing import Any, Callable

import numpy as np
import torch
from torchao.quantization.pt2e.observer import HistogramObserver

STEP = 1e-5  # torchao's granularity
TURNS = 100_005  # alpha and beta each move at most ~1/STEP times before they meet


def _accumulated(start: float, step: float) -> np.ndarray:
    """``start``, then ``start + step`` added again and again, in float64 and in order, as the loop adds."""
    return np.add.accumulate(np.concatenate([[start], np.full(TURNS - 1, step)]))


ALPHAS: list[float] = _accumulated(0.0, STEP).tolist()
BETAS: list[float] = _accumulated(1.0, -STEP).tolist()


def _clamp(index: int, start: int, end: int) -> int:
    return min(max(index, start), end)


def _float32(value: float) -> float:
    """``value`` rounded to float32 (to nearest even), as torch casts a Python scalar compared with a float32
    tensor."""
    return struct.unpack("f", struct.pack("f", value))[0]


class FastHistogramObserver(HistogramObserver):
    """``HistogramObserver`` whose ``calculate_qparams`` is torchao's, found in binary searches and cached."""

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        self._qparams = None
        return super().forward(x_orig)

    def calculate_qparams(self) -> Any:
        if getattr(self, "_qparams", None) is None:
            self._qparams = super().calculate_qparams()
        return tuple(t.clone() for t in self._qparams)

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.histogram.size()[0] == self.bins, "bins mismatch"
        cumulative = torch.cumsum(self.histogram, dim=0)
        if cumulative.dtype != torch.float32 or not bool((cumulative[1:] >= cumulative[:-1]).all()):
            return super()._non_linear_param_search()
        csum: list[float] = cumulative.tolist()
        total = torch.sum(self.histogram).item()

        # the bins the loop's `while cSum[l] < next_alpha * total` and `while cSum[r] > next_beta * total` reach
        # after k steps, before clamping to the current [start, end]
        def lefts(k: int) -> int:
            return bisect_left(csum, _float32(ALPHAS[k] * total))

        def rights(k: int) -> int:
            return bisect_right(csum, _float32(BETAS[k] * total)) - 1

        i = j = 0  # steps alpha and beta have taken
        start, end = 0, self.bins - 1
        norm_min = float("inf")
        while ALPHAS[i] < BETAS[j]:
            left, right = _clamp(lefts(i + 1), start, end), _clamp(rights(j + 1), start, end)
            if left - start > end - right:
                i += 1
                next_start, next_end = left, end
            else:
                j += 1
                next_start, next_end = start, right
            if next_start == start and next_end == end:
                # nothing moved (left == start, right == end): beta steps on until its bin moves or it meets alpha
                j = self._skip_to(j, start, end, i, rights)
                continue
            norm = self._compute_quantization_error(next_start, next_end)
            if norm > norm_min:
                break
            norm_min, start, end = norm, next_start, next_end
        bin_width = (self.max_val - self.min_val) / self.bins
        return self.min_val + bin_width * start, self.min_val + bin_width * (end + 1)

    @staticmethod
    def _skip_to(j: int, start: int, end: int, i: int, rights: Callable[[int], int]) -> int:
        """The first beta step ≥ ``j`` at which the loop changes something: where the right bin falls below
        ``end`` (``rights`` does not increase with j) or where beta meets alpha (the loop ends)."""
        lo, hi = j, TURNS - 2
        while lo < hi:  # first j' in [j, TURNS-2] with rights(j'+1) < end (clamped at start) or BETAS[j'] <= ALPHAS[i]
            mid = (lo + hi) // 2
            if _clamp(rights(mid + 1), start, end) < end or BETAS[mid] <= ALPHAS[i]:
                hi = mid
            else:
                lo = mid + 1
        return lo


def with_fast_histograms(config: Any) -> Any:
    """A PT2E ``QuantizationConfig`` whose activation specs observe with :class:`FastHistogramObserver` (same
    arguments) where they used ``HistogramObserver``; other specs unchanged."""
    def swap(spec: Any) -> Any:
        ctor = getattr(spec, "observer_or_fake_quant_ctr", None)
        partial = getattr(ctor, "p", None)
        if partial is None or partial.func is not HistogramObserver:
            return spec
        return dataclasses.replace(spec, observer_or_fake_quant_ctr=FastHistogramObserver.with_args(**partial.keywords))

    return dataclasses.replace(config, input_activation=swap(config.input_activation),
                               output_activation=swap(config.output_activation))
