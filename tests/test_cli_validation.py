"""Every numeric option and output path is checked before any work: exit 2 and one line naming it."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from exporter.cli import main as attn_export
from runtimes.cli import main as attn_bench

EXPORT_CASES = [
    (["--num-classes", "0"], "'--num-classes': 0 is not in the range x>=1"),
    (["--num-classes", "-3"], "'--num-classes': -3 is not in the range x>=1"),
    (["--seed", "-1"], "'--seed': -1 is not in the range"),
    (["--rtol", "-1"], "'--rtol': -1.0 is not in the range x>0"),
    (["--min-cosine", "nan"], "'--min-cosine': 'nan' is not a finite number"),
    (["--min-cosine", "1.5"], "'--min-cosine': 1.5 is not in the range"),
    (["--atol", "inf"], "'--atol': 'inf' is not a finite number"),
    (["--workspace", "0"], "'--workspace': 0.0 is not in the range x>0"),
    (["--calib-size", "0"], "'--calib-size': 0 is not in the range"),
    (["--calib-method", "minmax"], "'--calib-method': 'minmax' is not one of"),
]
BENCH_CASES = [
    (["--iters", "0"], "'--iters': 0 is not in the range x>=1"),
    (["--iters", "-5"], "'--iters': -5 is not in the range x>=1"),
    (["--threads", "-1"], "'--threads': -1 is not in the range x>=1"),
    (["--seconds", "-1"], "'--seconds': -1.0 is not in the range x>0"),
    (["--warmup", "-1"], "'--warmup': -1 is not in the range x>=0"),
    (["--engine", "onnx"], "engine must be one of"),
    (["--engine", "ort:int4"], "no precision 'int4'"),
]


@pytest.mark.parametrize("args,phrase", EXPORT_CASES, ids=[" ".join(a) for a, _ in EXPORT_CASES])
def test_attn_export_rejects_bad_numbers_before_work(args, phrase, tmp_path) -> None:
    result = CliRunner().invoke(attn_export, ["c2f_ca", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and phrase in result.output, result.output
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("args,phrase", BENCH_CASES, ids=[" ".join(a) for a, _ in BENCH_CASES])
def test_attn_bench_rejects_bad_numbers_before_work(args, phrase, tmp_path) -> None:
    result = CliRunner().invoke(attn_bench, ["c2f_ca", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and phrase in result.output, result.output
    assert "exporting" not in result.output


@pytest.mark.parametrize("option", ["--plot", "--json"])
def test_attn_bench_unwritable_output_fails_before_the_benchmark(option, tmp_path) -> None:
    result = CliRunner().invoke(attn_bench, ["c2f_ca", "--out", str(tmp_path), option, "/nonexistent/dir/x.png"])
    assert result.exit_code == 2 and "cannot write /nonexistent/dir/x.png" in result.output
    assert "exporting" not in result.output and not any(tmp_path.iterdir())
