"""FastHistogramObserver (exporter/formats/histogram_search.py) must give torchao's HistogramObserver's
quantization parameters bit for bit, on the histograms that stress the search and on a whole PT2E program."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")
pytest.importorskip("executorch")

from torchao.quantization.pt2e.observer import HistogramObserver  # noqa: E402

from exporter.formats.histogram_search import FastHistogramObserver, with_fast_histograms  # noqa: E402

OBSERVER = dict(dtype=torch.int8, qscheme=torch.per_tensor_affine, quant_min=-128, quant_max=127, eps=2**-12)


def _batches(name: str, generator: torch.Generator) -> list[torch.Tensor]:
    make = {
        "normal": lambda: torch.randn(4, 197, 64, generator=generator),
        "gelu": lambda: torch.nn.functional.gelu(2 * torch.randn(4, 197, 96, generator=generator)),
        "softmax": lambda: torch.softmax(3 * torch.randn(2, 3, 50, 50, generator=generator), -1),
        "heavy tails": lambda: torch.randn(20000, generator=generator) ** 5,
        "relu": lambda: torch.relu(torch.randn(2, 16, 28, 28, generator=generator)),
        "zeros and two outliers": lambda: torch.cat([torch.zeros(5000), torch.tensor([5.0, -3.0])]),
        "constant": lambda: torch.full((1000,), 2.5),
        "two values": lambda: torch.tensor([0.0, 1.0]).repeat(500),  # torchao's search: ~100,000 loop turns
        "three numbers": lambda: torch.randn(3, generator=generator),
        "uniform": lambda: torch.rand(50000, generator=generator),
    }[name]
    return [make(), make() * 1.5, make()]  # a wider second batch makes the histogram rescale


@pytest.mark.parametrize("name", ["normal", "gelu", "softmax", "heavy tails", "relu", "zeros and two outliers",
                                  "constant", "two values", "three numbers", "uniform"])
def test_the_same_scale_and_zero_point_as_torchao(name: str) -> None:
    stock, fast = HistogramObserver(**OBSERVER), FastHistogramObserver(**OBSERVER)
    for batch in _batches(name, torch.Generator().manual_seed(7)):
        stock(batch)
        fast(batch)
        scale, zero_point = fast.calculate_qparams()
        stock_scale, stock_zero_point = stock.calculate_qparams()
        assert torch.equal(scale, stock_scale) and torch.equal(zero_point, stock_zero_point)
    assert fast.calculate_qparams()[0] is not fast.calculate_qparams()[0]  # the cache hands out copies


def test_only_histogram_observers_are_swapped() -> None:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    stock = get_symmetric_quantization_config(is_per_channel=True)
    config = with_fast_histograms(stock)
    for spec in (config.input_activation, config.output_activation):
        assert spec.observer_or_fake_quant_ctr.p.func is FastHistogramObserver
        stock_ctr = stock.input_activation.observer_or_fake_quant_ctr
        assert spec.observer_or_fake_quant_ctr.p.keywords == stock_ctr.p.keywords
        assert (spec.dtype, spec.quant_min, spec.quant_max) == (torch.int8, -128, 127)
    assert config.weight == stock.weight and config.bias == stock.bias


class _ConvAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.qkv = torch.nn.Linear(16, 48)
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.relu(self.stem(x)).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).chunk(3, -1)
        attention = torch.softmax(q @ k.transpose(1, 2) / 4.0, -1) @ v
        return self.head((tokens + attention).mean(1))


def test_a_quantized_program_is_bit_equal_with_either_observer() -> None:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from exporter.formats.ptq_convert import convert_ptq

    torch.manual_seed(0)
    model, calibration = _ConvAttention().eval(), torch.randn(8, 3, 16, 16)
    stock_config = get_symmetric_quantization_config(is_per_channel=True)
    outputs, observers = [], []
    for config in (stock_config, with_fast_histograms(stock_config)):
        prepared = prepare_pt2e(torch.export.export(model, (calibration,)).module(),
                                XNNPACKQuantizer().set_global(config))
        observers.append({type(m) for m in prepared.modules() if isinstance(m, HistogramObserver)})
        with torch.no_grad():
            prepared(calibration)
            outputs.append(convert_ptq(prepared)(calibration))
    assert observers == [{HistogramObserver}, {FastHistogramObserver}]
    assert torch.equal(outputs[0], outputs[1])
