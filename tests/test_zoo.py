"""The zoo: every model runs at its real size, matches SEEDS.md, and exports with torch.export."""
from __future__ import annotations

import pytest
import torch

from exporter.zoo import create_model, get_entry, list_models
from runtimes.errors import UnknownModelError, WeightsError

from .conftest import FAMILIES, TEST_CLASSES, small_model, torch_inputs

SEED_PARAMETER_COUNTS = {
    "vgg16_cross": 139_145_512,
    "vgg16_cross_mh": 139_408_168,
    "vgg16_msa": 139_887_356,
    "resnet50_sa": 25_754_409,
    "resnet50_sa_parallel": 40_194_089,
}


def test_zoo_has_the_eleven_models() -> None:
    assert list_models() == sorted(
        [
            "vgg16_cross", "vgg16_cross_mh", "vgg16_cross_ml", "vgg16_msa", "resnet50_sa",
            "resnet50_sa_parallel", "transformer_encoder", "resnet50_mhsa", "resnet50_axial",
            "c2f_ca", "resnet50_kv",
        ]
    )


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_shape_and_finite(model_name: str, batch: int) -> None:
    model = small_model(model_name)
    with torch.inference_mode():
        out = model(*torch_inputs(model, batch))
    expected = model.output_specs[0].concrete_shape(batch, {"seq": 16})
    assert tuple(out.shape) == expected
    if model_name != "transformer_encoder":
        assert expected == (batch, TEST_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,count", sorted(SEED_PARAMETER_COUNTS.items()))
def test_parameter_counts_match_seeds(name: str, count: int) -> None:
    model = create_model(name)  # the SEEDS.md figures are for 1000 classes
    assert sum(p.numel() for p in model.parameters()) == count


def test_slim_vgg_head_keeps_keys_and_drops_the_fc_weights() -> None:
    """``classifier_width`` (what the suite exports) narrows fc6/fc7 only: same keys, 117 M fewer weights."""
    full, slim = create_model("vgg16_cross").state_dict(), small_model("vgg16_cross").state_dict()
    assert list(full) == list(slim)
    changed = {k for k in full if full[k].shape != slim[k].shape}
    assert changed == {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    assert slim["classifier.0.weight"].shape == (256, 512 * 7 * 7)
    dropped = sum(full[k].numel() for k in changed) - sum(slim[k].numel() for k in changed)
    assert dropped == (25088 + 4096 + 1000) * 4096 + 4096 * 2 + 1000 - ((25088 + 256 + 10) * 256 + 256 * 2 + 10)


def test_batch_rows_are_independent(model_name: str) -> None:
    """Row i of a batch-3 run equals a batch-1 run on row i: nothing mixes or bakes the batch."""
    model = small_model(model_name)
    inputs = torch_inputs(model, 3, seed=1)
    with torch.inference_mode():
        full = model(*inputs)
        single = model(*[t[1:2] for t in inputs])
    torch.testing.assert_close(full[1:2], single, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_torch_export_with_dynamic_batch(name: str) -> None:
    """The exporter's guard, per family (every model goes through it in its shared export, whose file's
    symbolic batch test_export reads back): torch.export keeps dim 0 symbolic at an example batch of 2."""
    model = small_model(name)
    inputs = tuple(torch_inputs(model, 2))
    batch = torch.export.Dim("batch", min=1, max=64)
    shapes = tuple({0: batch, **({1: torch.export.Dim.AUTO} if t.dim() == 2 and t.dtype == torch.int64 else {})}
                   for t in inputs)
    program = torch.export.export(model, inputs, dynamic_shapes=shapes)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in {s.name for s in model.input_specs}:
            assert not isinstance(node.meta["val"].shape[0], int), f"{node.name}: batch was specialised"
    check = tuple(torch_inputs(model, 5, seed=2))
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(*check), model(*check), rtol=1e-4, atol=1e-4)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownModelError) as err:
        create_model("vgg17")
    assert "vgg17" in str(err.value) and "resnet50_sa" in str(err.value) and "c2f_ca" in str(err.value)


def test_registry_entries_name_their_seed() -> None:
    assert all(get_entry(n).seed for n in list_models())


def test_weights_file_round_trip_and_mismatch(tmp_path) -> None:
    model = small_model("c2f_ca")
    path = tmp_path / "w.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = create_model("c2f_ca", num_classes=TEST_CLASSES, weights=path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(WeightsError, match=r"shape mismatch: fc\.bias \(10,\) vs \(7,\)"):
        create_model("c2f_ca", num_classes=7, weights=path)
    state = model.state_dict()
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing keys: fc\.bias.*unexpected keys: extra\.weight"):
        create_model("c2f_ca", num_classes=TEST_CLASSES, weights=path)


def test_missing_weights_file_and_offline_torchvision(tmp_path, monkeypatch) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        create_model("c2f_ca", weights=tmp_path / "nope.pt")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match=r"never downloads.*save it as .*checkpoints/vgg16-.*\.pth"):
        create_model("vgg16_cross", weights="IMAGENET1K_V1")
    with pytest.raises(WeightsError, match="valid: IMAGENET1K_V1"):
        create_model("vgg16_cross", weights="IMAGENET9K")
    with pytest.raises(WeightsError, match="no torchvision backbone"):
        create_model("c2f_ca", weights="IMAGENET1K_V1")


def test_torchvision_weights_load_into_backbone(tmp_path, monkeypatch) -> None:
    """A (locally made) torchvision resnet50 checkpoint in the hub cache loads into backbone.*."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from exporter.zoo.weights import torchvision_weights_file

    path, _ = torchvision_weights_file("resnet50", "IMAGENET1K_V2")
    path.parent.mkdir(parents=True)
    torch.manual_seed(3)
    reference = torchvision.models.resnet50()
    torch.save(reference.state_dict(), path)
    model = create_model("resnet50_sa", num_classes=TEST_CLASSES, weights="IMAGENET1K_V2")
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.backbone.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    assert model.backbone.fc.weight.shape == (TEST_CLASSES, 2048)  # 1000-way head not forced in
