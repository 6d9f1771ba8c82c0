"""Hostile input, table-driven: corrupt artifacts, bad re-exports, bad values, a lying manifest and bad
CLI options. Each case asserts the exception class (or exit code), a key phrase of the message, and
that no previously good artifact was altered."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from click.testing import CliRunner

import runtimes
from exporter.cli import main as attn_export
from runtimes.bench.cli import main as attn_bench
from runtimes.errors import ArtifactError, AttnExportError, InputSpecError, OptionError
from runtimes.specs import random_inputs

from .exports import exported
from .conftest import ENGINES

ROOT = Path(__file__).parents[1]


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in ``folder`` (names included), to prove nothing was altered."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def still_loads(folder: Path) -> bool:
    """The folder opens and answers one batch (the runtime closed again)."""
    with runtimes.load(folder) as rt:
        arrays = random_inputs(rt.input_specs, 1)
        return all(np.isfinite(v).all() for v in rt(arrays).values())


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


def _device(engine: str) -> str:
    return "cuda" if engine == "trt" else "cpu"


def _copy(name: str, artifacts_root: Path, tmp_path: Path) -> Path:
    folder, _ = exported(name, artifacts_root)
    return Path(shutil.copytree(folder, tmp_path / name))


def _edit_manifest(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    change(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def _flip(path: Path, offset_fraction: float = 0.5, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * offset_fraction)
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


ENGINE_FILE = {"ort": "model.onnx", "openvino": "model.onnx", "torch": "model.pt2", "trt": "model.engine",
               "executorch": "model.pte"}

# ----- group 1: corrupt or swapped bytes are never served --------------------------------------------
CORRUPTIONS: list[tuple[str, Callable[[Path], None], str]] = [
    ("flip 64 bytes mid-file", lambda p: _flip(p, 0.5), "does not match its SHA-256"),
    ("flip one byte at the start", lambda p: _flip(p, 0.0, 1), "does not match its SHA-256"),
    ("flip the last byte", lambda p: _flip(p, 0.999999, 1), "does not match its SHA-256"),
    ("truncate to half", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated or was replaced"),
    ("append garbage", lambda p: p.write_bytes(p.read_bytes() + b"\0" * 16), "truncated or was replaced"),
    ("delete", lambda p: p.unlink(), "listed in the manifest but missing"),
]


@pytest.mark.parametrize("label,damage,phrase", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_artifact_is_refused_at_load(label, damage, phrase, engine, artifacts_root, tmp_path) -> None:
    if engine == "trt":
        pytest.skip("trt folders need a GPU export")
    folder = _copy("c2f_ca", artifacts_root, tmp_path)
    damage(folder / ENGINE_FILE[engine])
    before = snapshot(folder)
    with pytest.raises(ArtifactError, match=phrase) as info:
        runtimes.load(folder, engine=engine)
    assert info.value.exit_code == 2 and "re-export" in str(info.value) and ENGINE_FILE[engine] in str(info.value)
    assert snapshot(folder) == before


def test_every_recorded_file_is_covered(artifacts_root, tmp_path) -> None:
    """A flipped byte in any file the manifest records (weights and parity report included) is found."""
    folder = _copy("c2f_ca", artifacts_root, tmp_path)
    names = runtimes.verify(folder)
    assert set(names) == {"weights.pt", "model.pt2", "model.onnx", "model.fp16.onnx", "model.ort",
                          "required_operators.config", "model.pte", "parity.json"}
    for name in names:
        bad = Path(shutil.copytree(folder, tmp_path / f"bad-{name}"))
        _flip(bad / name, 0.5, 1)
        with pytest.raises(ArtifactError, match=f"{name} does not match its SHA-256"):
            runtimes.verify(bad)


def test_another_models_file_is_refused_at_open(engine, artifacts_root, tmp_path) -> None:
    """The encoder's file in c2f_ca's folder, with the manifest's record updated to match it: the
    hash passes, the engine's own I/O names and dtypes do not."""
    if engine == "trt":
        pytest.skip("trt folders need a GPU export")
    folder = _copy("c2f_ca", artifacts_root, tmp_path)
    other, _ = exported("transformer_encoder", artifacts_root)
    name = ENGINE_FILE[engine]
    shutil.copyfile(other / name, folder / name)
    from runtimes.manifest import fingerprint

    _edit_manifest(folder, lambda m: m["files"].__setitem__(name, fingerprint(folder / name)))
    with pytest.raises(ArtifactError, match="the file belongs to another model; re-export"):
        runtimes.load(folder, engine=engine)


def test_corrupt_single_file_header_is_an_artifact_error(tmp_path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage\xff\xfe" * 50)
    for engine, name in (("ort", "onnxruntime"), ("openvino", "OpenVINO")):
        with pytest.raises(ArtifactError, match=f"{name} cannot load .*corrupt or truncated file"):
            runtimes.load(bad, engine=engine)


def test_verification_can_be_skipped_explicitly(artifacts_root, tmp_path) -> None:
    folder = _copy("c2f_ca", artifacts_root, tmp_path)
    _edit_manifest(folder, lambda m: m.pop("files"))
    with pytest.raises(ArtifactError, match="no size/SHA-256 record"):
        runtimes.load(folder)
    with runtimes.load(folder, verify=False) as rt:
        assert rt(random_inputs(rt.input_specs, 1))["logits"].shape == (1, 10)


# ----- group 3: one input policy for every engine ----------------------------------------------------
def _tokens(batch: int = 2, seq: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"tokens": rng.integers(0, 1000, (batch, seq)).astype(np.int64), "mask": np.ones((batch, seq), np.int64)}


def _set(key: str, index: tuple, value: Any) -> Callable[[], dict[str, np.ndarray]]:
    def make() -> dict[str, np.ndarray]:
        arrays = _tokens()
        arrays[key][index] = value
        return arrays
    return make


def _image(value: float) -> Callable[[], dict[str, np.ndarray]]:
    def make() -> dict[str, np.ndarray]:
        image = np.zeros((2, 3, 224, 224), np.float32)
        image[1, 0, 5, 5] = value
        return {"image": image}
    return make


INPUT_CASES: list[tuple[str, str, Callable[[], Any], dict[str, Any], str]] = [
    ("negative token id", "transformer_encoder", _set("tokens", (0, 3), -1), {}, "value -1 is outside [0, 1000)"),
    ("token id = vocab", "transformer_encoder", _set("tokens", (1, 0), 1000), {}, "value 1000 is outside [0, 1000)"),
    ("huge token id", "transformer_encoder", _set("tokens", (1, 7), 2**40), {}, "is outside [0, 1000)"),
    ("mask value 2", "transformer_encoder", _set("mask", (0, 0), 2), {}, "input 'mask': value 2 is outside {0, 1}"),
    ("mask value -1", "transformer_encoder", _set("mask", (1, 1), -1), {}, "value -1 is outside {0, 1}"),
    ("seq above max_dims", "transformer_encoder", lambda: _tokens(2, 101), {}, "axis 'seq' is 101, above its maximum 100"),
    ("seq of 0", "transformer_encoder", lambda: _tokens(2, 0), {}, "axis 'seq' has size 0"),
    ("batch of 0", "c2f_ca", lambda: {"image": np.zeros((0, 3, 224, 224), np.float32)}, {}, "axis 'batch' has size 0"),
    ("NaN with check_finite", "c2f_ca", _image(np.nan), {"check_finite": True}, "contains NaN or Inf"),
    ("Inf with check_finite", "c2f_ca", _image(np.inf), {"check_finite": True}, "contains NaN or Inf"),
    ("float64 image", "c2f_ca", lambda: {"image": np.zeros((1, 3, 224, 224))}, {}, "expected dtype float32, received float64"),
    ("float tokens", "transformer_encoder", lambda: {**_tokens(), "tokens": _tokens()["tokens"].astype(np.float32)},
     {}, "expected dtype int64, received float32"),
    ("wrong image size", "c2f_ca", lambda: {"image": np.zeros((1, 3, 200, 224), np.float32)}, {}, "expected shape"),
    ("a list, not an array", "c2f_ca", lambda: {"image": [[0.0]]}, {}, "must be a numpy array, got list"),
    ("unknown input name", "c2f_ca", lambda: {"pixels": np.zeros((1, 3, 224, 224), np.float32)}, {},
     "missing ['image'], unexpected ['pixels']"),
]


@pytest.mark.parametrize("label,model,make,options,phrase", INPUT_CASES, ids=[c[0] for c in INPUT_CASES])
def test_bad_input_gives_the_same_error_on_every_engine(label, model, make, options, phrase, engine,
                                                        artifacts_root) -> None:
    folder, _ = exported(model, artifacts_root)
    before = snapshot(folder)
    with runtimes.load(folder, engine=engine, device=_device(engine), **options) as rt:
        with pytest.raises(InputSpecError) as info:
            rt(make())
    assert phrase in str(info.value) and info.value.exit_code == 2
    assert snapshot(folder) == before


def test_nan_passes_through_by_default(engine, artifacts_root) -> None:
    """Documented: without check_finite, NaN reaches the engine and comes back as NaN."""
    folder, _ = exported("c2f_ca", artifacts_root)
    with runtimes.load(folder, engine=engine, device=_device(engine)) as rt:
        assert np.isnan(rt(_image(np.nan)())["logits"][1]).any()


# ----- group 5: the manifest is validated when read --------------------------------------------------
def _outside_symlink(folder: Path) -> None:
    (folder / "model.onnx").unlink()
    (folder.parent / "elsewhere.onnx").write_bytes(b"x")
    os.symlink(folder.parent / "elsewhere.onnx", folder / "model.onnx")


MANIFEST_CASES: list[tuple[str, Callable[[Path], None], type, str]] = [
    ("batch.max 0", lambda f: _edit_manifest(f, lambda m: m["batch"].update(max=0)), ArtifactError,
     "field 'batch'"),
    ("batch.max 'abc'", lambda f: _edit_manifest(f, lambda m: m["batch"].update(max="abc")), ArtifactError,
     "field 'batch'"),
    ("batch {}", lambda f: _edit_manifest(f, lambda m: m.update(batch={})), ArtifactError, "field 'batch'"),
    ("batch min > max", lambda f: _edit_manifest(f, lambda m: m.update(batch={"min": 4, "opt": 2, "max": 1})),
     ArtifactError, "1 <= min <= opt <= max"),
    ("onnx outside the folder", lambda f: _edit_manifest(f, lambda m: m["artifacts"].update(onnx="../x/model.onnx")),
     ArtifactError, "field 'artifacts.onnx' must be a plain file name"),
    ("onnx absolute path", lambda f: _edit_manifest(f, lambda m: m["artifacts"].update(onnx="/etc/passwd")),
     ArtifactError, "field 'artifacts.onnx' must be a plain file name"),
    ("onnx is a symlink out", _outside_symlink, ArtifactError, "is a symlink"),
    ("input dtype complex", lambda f: _edit_manifest(f, lambda m: m["inputs"][0].update(dtype="complex64")),
     ArtifactError, "field 'inputs[0].dtype'"),
    ("input shape negative", lambda f: _edit_manifest(f, lambda m: m["inputs"][0].update(shape=["batch", -3])),
     ArtifactError, "field 'inputs[0].shape'"),
    ("inputs not a list", lambda f: _edit_manifest(f, lambda m: m.update(inputs="image")), ArtifactError,
     "field 'inputs'"),
    ("unknown status", lambda f: _edit_manifest(f, lambda m: m.update(status="great")), ArtifactError,
     "field 'status'"),
    ("sha256 too short", lambda f: _edit_manifest(f, lambda m: m["files"]["model.onnx"].update(sha256="ab")),
     ArtifactError, "field 'files.model.onnx'"),
    ("not JSON", lambda f: (f / "manifest.json").write_text("{oops"), ArtifactError, "is not valid JSON"),
    ("a JSON list", lambda f: (f / "manifest.json").write_text("[1, 2]"), ArtifactError, "is not a JSON object"),
    ("missing keys", lambda f: _edit_manifest(f, lambda m: m.pop("inputs")), ArtifactError, "lacks keys ['inputs']"),
]


@pytest.mark.parametrize("label,damage,error,phrase", MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_lying_manifest_is_refused(label, damage, error, phrase, artifacts_root, tmp_path) -> None:
    folder = _copy("c2f_ca", artifacts_root, tmp_path)
    damage(folder)
    before = snapshot(folder)
    with pytest.raises(error, match=re.escape(phrase)) as info:
        runtimes.load(folder, engine="ort")
    assert info.value.exit_code == 2
    assert snapshot(folder) == before


@pytest.mark.parametrize("max_batch", [-1, 0, "8", 2.5, True])
def test_bad_max_batch_option(max_batch, artifacts_root) -> None:
    folder, _ = exported("c2f_ca", artifacts_root)
    with pytest.raises(OptionError, match="max_batch must be a positive integer"):
        runtimes.load(folder, max_batch=max_batch)


# ----- group 2: a failed, interrupted or killed re-export never breaks a good folder -----------------
@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A good c2f_ca export made through the CLI (what users run)."""
    out = tmp_path_factory.mktemp("good")
    result = CliRunner().invoke(attn_export, ["c2f_ca", "--out", str(out), "--num-classes", "10",
                                              "--batch", "1:2:4", "--no-photos"])
    assert result.exit_code == 0, result.output
    return out


def _sigint_as_in_a_terminal() -> None:
    """A job started with ``&`` by a non-interactive shell (a CI script) inherits SIGINT ignored, and
    Python then never raises KeyboardInterrupt; a user's terminal delivers Ctrl-C to a default handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli_export(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "exporter.cli", "c2f_ca", "--out", str(out), "--num-classes", "10",
                             "--batch", "1:2:4", "--no-photos", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_in_a_terminal)


def _wait_for_staging(out: Path, file: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any((s / file).exists() for s in out.glob(".c2f_ca.staging-*")):
            return
        time.sleep(0.05)
    raise AssertionError(f"no staging {file} appeared; export output: {proc.communicate()}")


def test_bad_weights_reexport_leaves_the_good_folder(good) -> None:
    before = snapshot(good / "c2f_ca")
    result = CliRunner().invoke(attn_export, ["c2f_ca", "--out", str(good), "--num-classes", "10",
                                              "--weights", "typo.pt"])
    assert result.exit_code == 2 and "typo.pt" in result.output and "Traceback" not in result.output
    assert snapshot(good / "c2f_ca") == before and still_loads(good / "c2f_ca")


def test_failed_parity_reexport_goes_to_failed_folder(good) -> None:
    before = snapshot(good / "c2f_ca")
    result = CliRunner().invoke(attn_export, ["c2f_ca", "--out", str(good), "--num-classes", "10", "--batch",
                                              "1:2:4", "--no-photos", "--rtol", "1e-30", "--min-cosine", "1"])
    assert result.exit_code == 3, result.output
    assert "--rtol is deprecated; use --max-rel-error" in result.output
    assert "c2f_ca.failed" in result.output and "still holds the previous good export" in result.output
    assert f"see {good / 'c2f_ca.failed' / 'parity.json'}" in result.output and "staging" not in result.output
    assert snapshot(good / "c2f_ca") == before and still_loads(good / "c2f_ca")
    failed = json.loads((good / "c2f_ca.failed" / "manifest.json").read_text())
    assert failed["status"] == "failed" and failed["parity"]["onnx"]["passed"] is False
    parity = json.loads((good / "c2f_ca.failed" / "parity.json").read_text())
    assert parity["onnx"]["tolerance"]["max_rel"] == 1e-30  # the deprecated alias really set the bound


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 130), (signal.SIGINT, 130)])
def test_terminated_reexport_changes_nothing(sig, code, good) -> None:
    before = snapshot(good / "c2f_ca")
    proc = _cli_export(good)
    _wait_for_staging(good, "model.pt2", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "nothing under" in err and "Traceback" not in err
    assert snapshot(good / "c2f_ca") == before
    assert not list(good.glob(".c2f_ca.*"))


def test_killed_reexport_is_cleaned_by_the_next(good) -> None:
    before = snapshot(good / "c2f_ca")
    proc = _cli_export(good)
    _wait_for_staging(good, "model.pt2", proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert list(good.glob(".c2f_ca.staging-*"))  # SIGKILL cannot clean up ...
    assert snapshot(good / "c2f_ca") == before and still_loads(good / "c2f_ca")  # ... but changes nothing
    result = CliRunner().invoke(attn_export, ["c2f_ca", "--out", str(good), "--num-classes", "10",
                                              "--batch", "1:2:4", "--no-photos"])
    assert result.exit_code == 0 and "left by a killed export" in result.output
    assert not list(good.glob(".c2f_ca.*"))
    assert runtimes.verify(good / "c2f_ca")


def test_published_files_follow_the_umask(good) -> None:
    umask = os.umask(0)
    os.umask(umask)
    folder = good / "c2f_ca"
    assert (folder.stat().st_mode & 0o777) == 0o777 & ~umask
    for path in folder.iterdir():
        assert (path.stat().st_mode & 0o777) == 0o666 & ~umask, path.name


# ----- group 4: CLI options are checked before any work ----------------------------------------------
EXPORT_CASES = [
    (["--num-classes", "0"], "'--num-classes': 0 is not in the range x>=1"),
    (["--num-classes", "-3"], "'--num-classes': -3 is not in the range x>=1"),
    (["--seed", "-1"], "'--seed': -1 is not in the range"),
    (["--max-rel-error", "-1"], "'--max-rel-error': -1.0 is not in the range x>0"),
    (["--rtol", "-1"], "'--rtol': -1.0 is not in the range x>0"),
    (["--min-cosine", "nan"], "'--min-cosine': 'nan' is not a finite number"),
    (["--min-cosine", "1.5"], "'--min-cosine': 1.5 is not in the range"),
    (["--atol", "inf"], "'--atol': 'inf' is not a finite number"),
    (["--workspace", "0"], "'--workspace': 0.0 is not in the range x>0"),
    (["--calib-size", "0"], "'--calib-size': 0 is not in the range"),
    (["--calib-method", "minmax"], "'--calib-method': 'minmax' is not one of"),
    (["--calib", "/nonexistent/photos"], "'--calib': Path '/nonexistent/photos' does not exist"),
    (["--batch", "8:2:1"], "1 <= min <= opt <= max"),
]
BENCH_CASES = [
    (["--iters", "0"], "'--iters': 0 is not in the range x>=1"),
    (["--iters", "-5"], "'--iters': -5 is not in the range x>=1"),
    (["--threads", "-1"], "'--threads': -1 is not in the range x>=1"),
    (["--seconds", "-1"], "'--seconds': -1.0 is not in the range x>0"),
    (["--warmup", "-1"], "'--warmup': -1 is not in the range x>=0"),
    (["--engine", "onnx"], "engine must be one of"),
    (["--engine", "ort:int4"], "no precision 'int4'"),
    (["--plot", "/nonexistent/dir/x.png"], "cannot write /nonexistent/dir/x.png"),
    (["--json", "/nonexistent/dir/x.json"], "cannot write /nonexistent/dir/x.json"),
]


@pytest.mark.parametrize("args,phrase", EXPORT_CASES, ids=[" ".join(a) for a, _ in EXPORT_CASES])
def test_attn_export_rejects_bad_options_before_work(args, phrase, good) -> None:
    before = snapshot(good / "c2f_ca")
    result = CliRunner().invoke(attn_export, ["c2f_ca", "--out", str(good), *args])
    assert result.exit_code == 2 and phrase in result.output, result.output
    assert "build model" not in result.output  # no work started
    assert snapshot(good / "c2f_ca") == before


@pytest.mark.parametrize("args,phrase", BENCH_CASES, ids=[" ".join(a) for a, _ in BENCH_CASES])
def test_attn_bench_rejects_bad_options_before_work(args, phrase, good) -> None:
    result = CliRunner().invoke(attn_bench, [str(good / "c2f_ca"), *args])
    assert result.exit_code == 2 and phrase in result.output, result.output
    assert "batch 1 …" not in result.output  # no timing started


def test_disk_full_is_one_line_exit_2(tmp_path) -> None:
    """A file size limit (as a full disk) while writing artifacts: one line naming the path, exit 2."""
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20)); "
              "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "from exporter.cli import main; sys.argv = ['attn-export', 'c2f_ca', '--out', sys.argv[1], "
              "'--num-classes', '10', '--no-photos']; main()")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "c2f_ca" / "manifest.json").exists() or \
        json.loads((tmp_path / "c2f_ca" / "manifest.json").read_text())["status"] != "ok"


def test_error_classes_carry_exit_code_2() -> None:
    for cls in (ArtifactError, InputSpecError, OptionError):
        assert issubclass(cls, AttnExportError) and cls("x").exit_code == 2
