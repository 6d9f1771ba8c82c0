"""attn-export: exact opset, symbolic batch read back from the file, parity, failure modes."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from exporter import cli, context
from exporter.formats import onnx_export
from exporter.errors import ExportError
from exporter.pipeline import export
from exporter.checks.references import parity_batches
from exporter.zoo import ZooModel, list_models
from runtimes import manifest as mf
from runtimes.errors import ArtifactError
from runtimes.manifest import BatchProfile
from runtimes.specs import BATCH, TensorSpec

from .conftest import FAMILIES, ROOT, slim_model_args
from .exports import exported, small_options


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def assert_export_ok(folder, manifest, opset: int, photos: bool = True) -> None:
    assert manifest["status"] == "ok"
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    assert onnx_export.default_opset(model) == opset
    onnx.checker.check_model(str(folder / "model.onnx"), full_check=True)
    for value in [*model.graph.input, *model.graph.output]:
        assert _dims(value)[0] == BATCH, (value.name, _dims(value))
    if manifest["model"] == "transformer_encoder":
        assert all(_dims(v)[1] == "seq" for v in model.graph.input)
        assert _dims(model.graph.output[0])[1] == "seq"
    report = json.loads((folder / "parity.json").read_text())["onnx"]
    assert report["passed"] and report["worst"]["max_rel"] <= 1e-4 and report["worst"]["min_cosine"] >= 0.99999
    batches = {r["batch"] for r in report["rows"] if r["inputs"].startswith("random")}
    assert len(batches) >= 3 and {1, 2, 4} <= batches
    if photos and manifest["inputs"][0]["name"] == "image":
        assert any(r["inputs"].startswith("photos") for r in report["rows"])
    assert mf.read_manifest(folder)["opset"] == opset


def test_every_model_exports_at_opset_17(model_name, artifacts_root) -> None:
    folder, manifest = exported(model_name, artifacts_root)
    assert_export_ok(folder, manifest, 17)
    assert manifest["exporter"] == "torchscript"
    assert set(manifest["artifacts"]) >= {"weights", "torch", "onnx", "parity"}
    state = torch.load(folder / "weights.pt", weights_only=True)
    assert sum(t.numel() for k, t in state.items() if "running" not in k and "num_batches" not in k) > 0


# One model per family through the dynamo exporter (the families share their layers' export paths);
# ./scripts/export_sweep.sh runs every registered model at opset 18.
@pytest.mark.parametrize("model_name", FAMILIES)
def test_family_exports_at_opset_18(model_name, tmp_path) -> None:
    manifest = export(model_name, tmp_path, model_args=slim_model_args(model_name),
                      options=small_options(opset=18, photos=False))
    assert_export_ok(tmp_path / model_name, manifest, 18, photos=False)
    assert manifest["exporter"] == "dynamo"


# 17 and 18 are resnet50_sa's shared export and its dynamo export above: the rest of 13..20 here
@pytest.mark.parametrize("opset", [13, 14, 15, 16, 19, 20])
def test_opset_matrix_on_resnet(opset: int, tmp_path) -> None:
    manifest = export("resnet50_sa", tmp_path, options=small_options(opset=opset, photos=False))
    assert_export_ok(tmp_path / "resnet50_sa", manifest, opset, photos=False)


def test_dynamo_asked_for_17_is_converted_not_silently_18(tmp_path) -> None:
    """The dynamo exporter writes 18 when asked for 17: its file is taken to 17 by onnx's version converter,
    recorded as converted, and checked by parity like any other (never written as 18 and called 17)."""
    manifest = export("c2f_ca", tmp_path, options=small_options(exporter="dynamo", photos=False))
    assert_export_ok(tmp_path / "c2f_ca", manifest, 17, photos=False)
    assert manifest["exporter_attempts"] == [{"exporter": "dynamo", "passed": True, "written_at": 18,
                                              "converted_to": 17, "converter": "onnx.version_converter"}]


class BakedBatch(ZooModel):
    """Bakes the batch: ``.view(int(batch), -1)``."""

    input_specs = (TensorSpec("pixels", (BATCH, 3, 8, 8)),)

    def __init__(self) -> None:
        super().__init__(num_classes=4)
        self.fc = torch.nn.Linear(3 * 8 * 8, 4)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc(pixels.view(int(pixels.shape[0]), -1))


def test_baked_batch_is_caught_naming_the_input(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"input 'pixels'.*batch.*\.view\(batch_size"):
        export(BakedBatch(), tmp_path, name="baked", options=small_options())


def test_symbolic_dim_check_reads_the_file(artifacts_root) -> None:
    """A file whose output batch is a fixed 2 fails the read-back check, naming the tensor."""
    model = onnx.load(str(exported("c2f_ca", artifacts_root)[0] / "model.onnx"))
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 2
    specs = (TensorSpec("image", (BATCH, 3, 224, 224)),)
    with pytest.raises(ExportError, match=r"'logits': dim 0 should be symbolic 'batch' but the file has 2"):
        onnx_export.check_dynamic_axes(model, specs, (TensorSpec("logits", (BATCH, 10)),))


def test_perturbed_weight_fails_parity_with_exit_code_3(tmp_path, monkeypatch) -> None:
    real_simplify = onnx_export.simplify

    def simplify_then_perturb(path, external_data=False):
        counts = real_simplify(path, external_data)
        model = onnx.load(str(path))
        init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        arr = onnx.numpy_helper.to_array(init).copy()
        arr.flat[0] += 10.0 * (np.abs(arr).max() + 1)
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        onnx.save(model, str(path))
        return counts

    monkeypatch.setattr(onnx_export, "simplify", simplify_then_perturb)
    result = CliRunner().invoke(cli.main, ["c2f_ca", "--out", str(tmp_path), "--num-classes", "10",
                                           "--batch", "1:2:4"])
    assert result.exit_code == 3, result.output
    assert "parity" in result.output and "FAILED" in result.output
    manifest = mf.read_manifest(tmp_path / "c2f_ca", require_ok=False)
    assert manifest["status"] == "failed" and manifest["parity"]["onnx"]["passed"] is False
    assert (tmp_path / "c2f_ca" / "model.onnx").is_file()  # files kept for inspection
    with pytest.raises(ArtifactError, match="status 'failed'"):
        mf.read_manifest(tmp_path / "c2f_ca")


def test_interrupted_export_leaves_the_previous_export_untouched(tmp_path, monkeypatch) -> None:
    export("c2f_ca", tmp_path, options=small_options(photos=False))  # a good earlier run
    before = {p.name: p.read_bytes() for p in (tmp_path / "c2f_ca").iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(context, "check_parity", interrupted)
    result = CliRunner().invoke(cli.main, ["c2f_ca", "--out", str(tmp_path), "--num-classes", "10"])
    assert result.exit_code == 130 and "nothing under" in result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "c2f_ca").iterdir()} == before  # byte-identical
    assert mf.read_manifest(tmp_path / "c2f_ca")["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2f_ca"]  # staging folder discarded


@pytest.mark.parametrize(
    "args,message",
    [
        (["vgg17"], "unknown model 'vgg17'; valid names: c2f_ca"),
        (["c2f_ca", "--opset", "12"], "opset 12 is not supported: choose 13..24"),
        (["c2f_ca", "--weights", "/nonexistent/w.pt"], "weights file /nonexistent/w.pt does not exist"),
        (["c2f_ca", "--batch", "8:2:4"], "batch profile needs 1 <= min <= opt <= max"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(args, message, tmp_path) -> None:
    result = CliRunner().invoke(cli.main, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unwritable_output_folder(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli.main, ["c2f_ca", "--out", str(blocker / "sub")])
    assert result.exit_code == 2 and "is not writable" in result.output


def test_weights_that_do_not_fit_exit_2(tmp_path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    result = CliRunner().invoke(cli.main, ["c2f_ca", "--weights", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "missing keys" in result.output and "unexpected keys: fc.weight" not in result.output


def test_cli_json_prints_the_manifest(tmp_path) -> None:
    result = CliRunner().invoke(cli.main, ["transformer_encoder", "--out", str(tmp_path), "--batch", "1:2:3",
                                           "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["status"] == "ok" and manifest["inputs"][0]["shape"] == ["batch", "seq"]
    assert manifest["batch"] == {"min": 1, "opt": 2, "max": 3}


def test_list_prints_the_zoo_with_seed_parameter_counts(monkeypatch) -> None:
    """``--list`` prints every model with the SEEDS.md counts; docs/zoo.md holds the same rows as markdown."""
    from exporter.sources import zoo_table

    rows: list[dict] = []
    real_table = zoo_table.zoo_table
    monkeypatch.setattr(zoo_table, "zoo_table", lambda: rows.extend(real_table()) or rows)  # kept for the docs
    result = CliRunner().invoke(cli.main, ["--list"])
    assert result.exit_code == 0
    for name in list_models():
        assert name in result.output
    assert "139,145,512" in result.output and "25,754,409" in result.output and "40,194,089" in result.output
    assert zoo_table.format_markdown(rows) in (ROOT / "docs" / "zoo.md").read_text()


def test_sample_photos_are_real_normalised_images() -> None:
    from exporter.checks.photos import sample_photos
    from runtimes.images import Preprocess

    photos = sample_photos(Preprocess.default(224, 224))
    assert photos.shape == (5, 3, 224, 224) and photos.dtype == np.float32
    assert -2.2 < photos.min() < -1.0 and 1.5 < photos.max() < 2.7  # ImageNet-normalised [0, 1] pixels
    flat = photos.reshape(5, -1)
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(5) for j in range(i + 1, 5)) > 0.1  # distinct
    assert not photos.flags.writeable


def test_parity_batches() -> None:
    assert parity_batches(BatchProfile(1, 8, 32)) == [1, 2, 7, 32]
    assert parity_batches(BatchProfile(1, 2, 4)) == [1, 2, 3, 4]
    assert parity_batches(BatchProfile(4, 4, 4)) == [4]
