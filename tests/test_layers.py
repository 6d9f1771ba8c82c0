"""Each attention layer against a naive reference written here."""
from __future__ import annotations

import math

import pytest
import torch

from exporter.zoo.layers import (
    AxialAttention2d, C2f, CoordAttention, CrossAttention, KeyValueAttention, MHSA2d,
    MultiHeadCrossAttention, MultiScaleAttention, SelfAttention2d,
)
from exporter.zoo.transformer import EncoderSelfAttention

from .conftest import small_model, torch_inputs

torch.manual_seed(0)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Loop-free but explicit: exp-normalise scores by hand."""
    scores = torch.einsum("...nd,...md->...nm", q, k) * scale
    e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    return torch.einsum("...nm,...md->...nd", e / e.sum(dim=-1, keepdim=True), v)


def test_cross_attention_is_scaled_softmax_qk_v() -> None:
    layer = CrossAttention(32)
    x1, x2 = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    out, weights = layer(x1, x2)
    q, k, v = layer.query(x1), layer.key(x2), layer.value(x2)
    torch.testing.assert_close(out, naive_attention(q, k, v, 1 / math.sqrt(32)))
    assert weights.shape == (2, 5, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))


def test_multihead_cross_attention_matches_per_head_loop() -> None:
    layer = MultiHeadCrossAttention(32, num_heads=4)
    x1, x2 = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    out, weights = layer(x1, x2)
    q, k, v = layer.q_proj(x1), layer.k_proj(x2), layer.v_proj(x2)
    heads = [naive_attention(q[..., h * 8:(h + 1) * 8], k[..., h * 8:(h + 1) * 8], v[..., h * 8:(h + 1) * 8], 8**-0.5)
             for h in range(4)]
    torch.testing.assert_close(out, layer.o_proj(torch.cat(heads, dim=-1)))
    assert weights.shape == (2, 4, 5, 7)


def test_sagan_with_gamma_zero_is_identity_and_nonzero_matches_reference() -> None:
    layer = SelfAttention2d(16, 8)
    x = torch.randn(2, 16, 5, 6)
    torch.testing.assert_close(layer(x), x, rtol=0, atol=0)
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    flat = lambda t: t.flatten(2).transpose(1, 2)  # noqa: E731
    ref = naive_attention(flat(layer.query_conv(x)), flat(layer.key_conv(x)), flat(layer.value_conv(x)), 1.0)
    torch.testing.assert_close(layer(x), 0.7 * ref.transpose(1, 2).reshape(2, 16, 5, 6) + x)


def test_coordinate_attention_gates_in_unit_interval_and_separable() -> None:
    layer = CoordAttention(32).eval()
    x = torch.randn(2, 32, 6, 9)
    gate_h, gate_w = layer.gates(x)
    assert gate_h.shape == (2, 32, 6, 1) and gate_w.shape == (2, 32, 1, 9)
    for gate in (gate_h, gate_w):
        assert (gate > 0).all() and (gate < 1).all()
    assert gate_h.std(dim=2).mean() > 1e-3 and gate_w.std(dim=3).mean() > 1e-3  # they vary along H / W
    torch.testing.assert_close(layer(x), x * gate_h * gate_w)


def test_multiscale_attention_spatial_descriptor_and_residual() -> None:
    layer = MultiScaleAttention(32, reduction_ratio=8)
    x = torch.randn(2, 32, 7, 7)
    desc = layer.spatial_descriptor(x)
    torch.testing.assert_close(desc[:, 2], x.std(dim=1, unbiased=True))
    torch.testing.assert_close(desc[:, 0], x.max(dim=1).values)
    with torch.no_grad():
        layer.fusion_conv.weight.zero_()
        layer.fusion_conv.bias.zero_()
    torch.testing.assert_close(layer(x), x)  # zero fused branch leaves the residual only


def test_kv_attention_keys_have_their_own_length() -> None:
    layer = KeyValueAttention(32, num_heads=4)
    q, kv = torch.randn(2, 3, 32), torch.randn(2, 11, 32)
    out = layer(q, kv, kv)
    assert out.shape == (2, 3, 32)
    qp, kp, vp = layer.q_proj(q), layer.k_proj(kv), layer.v_proj(kv)
    heads = [naive_attention(qp[..., h * 8:(h + 1) * 8], kp[..., h * 8:(h + 1) * 8], vp[..., h * 8:(h + 1) * 8], 8**-0.5)
             for h in range(4)]
    torch.testing.assert_close(out, layer.o_proj(torch.cat(heads, dim=-1)))


def test_mhsa_position_term_is_q_dot_r() -> None:
    layer = MHSA2d(16, (3, 4), num_heads=2)
    x = torch.randn(1, 16, 3, 4)
    q, k, v = (t.flatten(2).transpose(1, 2) for t in layer.qkv(x).chunk(3, dim=1))
    pos = (layer.rel_h + layer.rel_w).flatten(1, 2)
    heads = [naive_attention(q[..., h * 8:(h + 1) * 8], k[..., h * 8:(h + 1) * 8] + pos[h], v[..., h * 8:(h + 1) * 8],
                             8**-0.5) for h in range(2)]
    torch.testing.assert_close(layer(x), torch.cat(heads, -1).transpose(1, 2).reshape(1, 16, 3, 4))


def test_axial_attention_rows_then_columns() -> None:
    layer = AxialAttention2d(16, num_heads=2)
    x = torch.randn(2, 16, 3, 5)
    rows = layer.row(x.permute(0, 2, 3, 1).reshape(6, 5, 16)).reshape(2, 3, 5, 16)
    cols = layer.col(rows.transpose(1, 2).reshape(10, 3, 16)).reshape(2, 5, 3, 16)
    torch.testing.assert_close(layer(x), cols.permute(0, 3, 2, 1))


def test_c2f_concatenates_every_bottleneck_output() -> None:
    block = C2f(16, 32, n=3).eval()
    assert block.cv2.conv.in_channels == (2 + 3) * 16
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 32, 8, 8)


def test_encoder_masked_positions_get_no_attention() -> None:
    layer = EncoderSelfAttention(32, heads=4)
    x = torch.randn(2, 6, 32)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    out, weights = layer(x, x, x, mask)
    assert weights.shape == (2, 4, 6, 6)
    assert weights[0, :, :, 3:].max() < 1e-30 and weights[1, :, :, 5:].max() < 1e-30
    # padding does not change what unmasked queries see
    out_short, _ = layer(x[:1, :3], x[:1, :3], x[:1, :3], mask[:1, :3])
    torch.testing.assert_close(out[:1, :3], out_short)


def test_encoder_mask_survives_fp16() -> None:
    layer = EncoderSelfAttention(32, heads=4).half()
    x = torch.randn(1, 4, 32).half()
    _, weights = layer(x, x, x, torch.tensor([[1, 1, 0, 0]]))
    assert torch.isfinite(weights).all() and weights[..., 2:].max() == 0


@pytest.mark.parametrize("name,levels", [("vgg16_cross", 1), ("vgg16_cross_mh", 1), ("vgg16_cross_ml", 3)])
def test_cross_models_return_attention_weights(name: str, levels: int) -> None:
    model = small_model(name)
    inputs = torch_inputs(model, 2)
    with torch.inference_mode():
        logits, weights = model.forward_with_attention(*inputs)
        torch.testing.assert_close(logits, model(*inputs))
    assert len(weights) == levels
    for w in weights:
        assert w.shape[0] == 2
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    if name == "vgg16_cross_ml":
        assert [w.shape[-1] for w in weights] == [56 * 56, 28 * 28, 14 * 14]
