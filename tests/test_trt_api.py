"""The TensorRT API check: every TensorRT attribute and call of exporter/formats/trt_build.py, runtimes/engines/trt_rt.py
and runtimes/engines/trt_common.py exists, with a compatible signature, in the real bindings of TensorRT 11.4,
10.16 and 10.3 (JetPack 6), imported over stub libraries (tests/trt_bindings.py) — no GPU needed."""
from __future__ import annotations

import pytest

from .trt_bindings import VERSIONS, probe
from .trt_usage import project_usages, unclassified, usages


def _request(attributes, calls) -> dict:
    return {"attributes": sorted(attributes), "calls": calls}


@pytest.fixture(scope="module")
def project() -> tuple:
    return project_usages()


def test_every_receiver_is_classified(project) -> None:
    """A new variable holding a TensorRT object must be mapped, or its calls would escape the check."""
    attributes, calls, receivers = project
    assert not unclassified(receivers), unclassified(receivers)
    assert len(attributes) > 30 and len(calls) > 25  # the check sees the whole TensorRT surface


@pytest.mark.parametrize("version", list(VERSIONS))
def test_project_code_matches_the_real_bindings(version, project) -> None:
    attributes, calls, _ = project
    answer = probe(version, _request(attributes, calls))
    assert answer["version"] == version
    assert answer["missing"] == [], f"TensorRT {version} lacks {answer['missing']}"
    assert answer["bad_calls"] == [], f"TensorRT {version}: {answer['bad_calls']}"
    # the project's IProgressMonitor, called by TensorRT's own trampoline with TensorRT's argument order
    assert answer["monitor"] == ["  TensorRT: Building engine (3 steps)", "step_complete -> True"]


WRONG = '''
def build(trt, builder, config, profile, context, logger):
    network = builder.create_network(0)
    config.set_flag(trt.BuilderFlag.FP16)                 # gone in TensorRT 11
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)   # one argument short
    profile.set_shape("image", (1, 3), (2, 3))            # one shape short
    context.execute_async_v4(0)                           # no such method
    return network.mark_everything_fp16                   # no such attribute
'''


def test_the_check_catches_a_wrong_attribute_and_a_wrong_call() -> None:
    attributes, calls, receivers = usages(WRONG)
    answer = probe("11.4.0.106", _request(attributes, calls))
    assert "BuilderFlag.FP16" in " ".join(answer["missing"])
    assert "IExecutionContext.execute_async_v4" in answer["missing"]
    assert "INetworkDefinition.mark_everything_fp16" in answer["missing"]
    bad = " ".join(answer["bad_calls"])
    assert "IBuilderConfig.set_memory_pool_limit: 1 positional" in bad and "IOptimizationProfile.set_shape: 3" in bad
    on_10 = probe("10.16.1.11", _request(attributes, calls))
    assert not any("BuilderFlag.FP16" in m for m in on_10["missing"])  # it still exists on 10.x
    assert unclassified(usages("def f(mystery):\n    mystery.build_serialized_network(1, 2)\n")[2]) == {"mystery"}
