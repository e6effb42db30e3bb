"""The inception5h model: state_dict keys, shapes, padding, LRN, capture, pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inception_sae.models import inception_v1 as iv1
from inception_sae.models.layers import BLOCK_SPECS, STAGE_NAMES, layer_info, layer_names, tf_same_pad
from inception_sae.models.weights import expected_shapes, public_state_dict

# (channels, size at 224) of the inception5h graph
SPEC_224 = {
    "conv2d0": (64, 112), "maxpool0": (64, 56), "conv2d1": (64, 56), "conv2d2": (192, 56), "maxpool1": (192, 28),
    "mixed3a": (256, 28), "mixed3b": (480, 28), "maxpool4": (480, 14), "mixed4a": (508, 14), "mixed4b": (512, 14),
    "mixed4c": (512, 14), "mixed4d": (528, 14), "mixed4e": (832, 14), "maxpool10": (832, 7), "mixed5a": (832, 7),
    "mixed5b": (1024, 7),
}  # fmt: skip
SPEC_JUMP_RF = {
    "conv2d0": (2, 7), "maxpool0": (4, 11), "conv2d1": (4, 11), "conv2d2": (4, 19), "maxpool1": (8, 27),
    "mixed3a": (8, 59), "mixed3b": (8, 91), "maxpool4": (16, 107), "mixed4a": (16, 171), "mixed4b": (16, 235),
    "mixed4c": (16, 299), "mixed4d": (16, 363), "mixed4e": (16, 427), "maxpool10": (32, 459), "mixed5a": (32, 587),
    "mixed5b": (32, 715),
}  # fmt: skip


def test_public_keys_and_shapes_are_the_116_of_inception5h(model):
    shapes = expected_shapes()
    assert len(shapes) == 116
    assert shapes["conv2d0_pre_relu_conv.weight"] == (64, 3, 7, 7)
    assert shapes["softmax2_pre_activation_matmul.weight"] == (1008, 1024)
    assert shapes["mixed4d_5x5_pre_relu_conv.weight"] == (64, 32, 5, 5)
    assert shapes["mixed4a_3x3_pre_relu_conv.weight"] == (204, 96, 3, 3)
    convs = {k.rsplit(".", 1)[0] for k in shapes if "_pre_relu_conv" in k}
    assert len(convs) == 57
    for block in BLOCK_SPECS:
        for c in ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce"):
            assert f"{block}_{c}_pre_relu_conv.bias" in shapes
    assert set(public_state_dict(model)) == set(shapes)


def test_parameter_count(model):
    assert sum(p.numel() for p in model.parameters()) == 7_066_380
    fc = sum(p.numel() for p in model.fc.parameters())
    assert fc == 1_033_200


@pytest.mark.parametrize("size", [224, 257])
def test_every_layer_shape(model, size):
    x = torch.rand(1, 3, size, size)
    acts = model.capture(x, layer_names())
    for name, (channels, s224) in SPEC_224.items():
        expect = s224 if size == 224 else layer_info(name, size).size
        assert acts[name].shape == (1, channels, expect, expect), name
        assert (acts[name] >= 0).all(), f"{name} is post-ReLU"
    for block in BLOCK_SPECS:
        for b in layer_info(block).branches:
            assert acts[b.layer].shape[1] == b.channels
    assert acts["logits"].shape == (1, 1008)
    if size == 257:  # TF SAME: ceil(n / stride) at every stride-2 op
        assert acts["conv2d0"].shape[-1] == 129 and acts["mixed5b"].shape[-1] == 9


def test_geometry_matches_spec():
    for name, (jump, rf) in SPEC_JUMP_RF.items():
        info = layer_info(name)
        assert (info.jump, info.rf) == (jump, rf), name
    # branch receptive fields of the inception5h graph
    assert [b.rf for b in layer_info("mixed3a").branches] == [27, 43, 59, 43]
    assert [b.rf for b in layer_info("mixed4a").branches] == [107, 139, 171, 139]
    assert [b.slice for b in layer_info("mixed4d").branches] == [(0, 112), (112, 400), (400, 464), (464, 528)]
    assert [b.slice for b in layer_info("mixed5b").branches][-1] == (896, 1024)


def _tf_lrn_numpy(x: np.ndarray, radius=5, alpha=1e-4, beta=0.5, bias=2.0) -> np.ndarray:
    """TF's formula, written independently: x / (bias + alpha * sum_{c' in [c-r, c+r]} x^2)^beta."""
    out = np.empty_like(x)
    c = x.shape[1]
    for ci in range(c):
        lo, hi = max(0, ci - radius), min(c, ci + radius + 1)
        sq = (x[:, lo:hi] ** 2).sum(axis=1)
        out[:, ci] = x[:, ci] / (bias + alpha * sq) ** beta
    return out


def test_lrn_equals_tf_formula():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 60, size=(2, 64, 5, 5)).astype(np.float64)
    ours = iv1.lrn(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, _tf_lrn_numpy(x), rtol=1e-6)


def _tf_same_numpy(x: np.ndarray, k: int, s: int, fill: float) -> np.ndarray:
    """Pad a (H, W) map the TF SAME way, computed independently per axis."""

    def pads(n):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return total // 2, total - total // 2

    return np.pad(x, (pads(x.shape[0]), pads(x.shape[1])), constant_values=fill)


@pytest.mark.parametrize("n", [224, 225, 112, 57])
def test_tf_same_padding_stride2_conv_and_pool(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, n))
    w = rng.normal(size=(7, 7))
    # reference conv: correlate the padded map with stride 2
    xp = _tf_same_numpy(x, 7, 2, 0.0)
    m = math.ceil(n / 2)
    ref = np.array([[(xp[2 * i : 2 * i + 7, 2 * j : 2 * j + 7] * w).sum() for j in range(m)] for i in range(m)])
    conv = iv1.ConvReLU(1, 1, 7, stride=2).double()
    conv.conv.weight.data = torch.from_numpy(w)[None, None]
    conv.conv.bias.data.zero_()
    got = conv.pre_relu(torch.from_numpy(x)[None, None])[0, 0].detach().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-9)
    # reference max pool 3x3 stride 2 with -inf fill
    xp = _tf_same_numpy(x, 3, 2, -np.inf)
    ref = np.array([[xp[2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max() for j in range(m)] for i in range(m)])
    got = iv1.max_pool_same(torch.from_numpy(x)[None, None], 3, 2)[0, 0].numpy()
    np.testing.assert_allclose(got, ref)
    if n == 224:
        assert tf_same_pad(224, 7, 2) == (2, 3) and tf_same_pad(112, 3, 2) == (0, 1)
        assert tf_same_pad(14, 5, 1) == (2, 2) and tf_same_pad(14, 3, 1) == (1, 1)


def test_pool_padding_is_minus_inf_not_zero():
    x = -torch.ones(1, 1, 4, 4)  # all negative: zero padding would leak 0 into the max
    assert (iv1.max_pool_same(x, 3, 1) == -1).all()


def test_capture_early_stop_equals_full_forward(model, monkeypatch):
    x = torch.rand(2, 3, 224, 224)
    full = model.capture(x, layer_names())
    called = []
    orig = model.mixed4e.forward
    monkeypatch.setattr(model.mixed4e, "forward", lambda h: called.append(1) or orig(h))
    early = model.capture(x, ["mixed4d", "conv2d2", "mixed4d_5x5"])
    assert not called, "capture ran past the last requested layer"
    for name, value in early.items():
        torch.testing.assert_close(value, full[name], rtol=0, atol=0)


def test_branch_captures_concatenate_to_the_layer(model):
    x = torch.rand(1, 3, 224, 224)
    for block in ("mixed3a", "mixed4d", "mixed5b"):
        names = [b.layer for b in layer_info(block).branches]
        acts = model.capture(x, [block, *names])
        torch.testing.assert_close(torch.cat([acts[n] for n in names], 1), acts[block], rtol=0, atol=0)


def test_no_hooks_remain(model):
    model.capture(torch.rand(1, 3, 224, 224), ["mixed4d_5x5", "mixed3a"])
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


def test_forward_from_layer_equals_full_forward(model):
    x = torch.rand(2, 3, 224, 224)
    acts = model.capture(x, ["mixed4d", "logits"])
    torch.testing.assert_close(model.forward_from("mixed4d", acts["mixed4d"]), acts["logits"])


def test_global_average_pool_at_other_sizes(model):
    x = torch.rand(1, 3, 288, 320)
    acts = model.capture(x, ["mixed5b", "logits"])
    assert acts["mixed5b"].shape[-2:] == (9, 10)
    torch.testing.assert_close(acts["logits"], model.fc(acts["mixed5b"].mean((2, 3))))


def test_preprocessing_and_softmax(model):
    x = torch.rand(1, 3, 224, 224)
    torch.testing.assert_close(model.preprocess(x), x * 255 - 117)
    p = model.probabilities(x)
    torch.testing.assert_close(p.sum(-1), torch.ones(1))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(1, 4, 224, 224))


def test_unknown_layer_is_a_clear_error(model):
    with pytest.raises(KeyError, match="mixed4d"):
        model.capture(torch.rand(1, 3, 224, 224), ["mixed4dd"])


def test_true_relu_gradients_by_default_and_redirected_on_request(model):
    """With every conv2d0 unit below zero, a true ReLU passes no gradient; the redirected one does."""
    x = torch.rand(1, 3, 224, 224, requires_grad=True)

    def input_grad() -> float:
        x.grad = None
        (-model.capture(x, ["conv2d0"])["conv2d0"].mean()).backward()
        return x.grad.abs().sum().item()

    bias = model.conv2d0.conv.bias.data.clone()
    model.conv2d0.conv.bias.data[:] = -1e6
    try:
        g_true = input_grad()
        model.set_redirected_relu(True)
        g_redirected = input_grad()
    finally:
        model.set_redirected_relu(False)
        model.conv2d0.conv.bias.data = bias
    assert g_true == 0
    assert g_redirected > 0
    assert not any(m.redirect for m in model.modules() if isinstance(m, iv1.ConvReLU))


def test_stage_order_covers_spec():
    assert [n for n in STAGE_NAMES if not n.startswith("localresponse")] == list(SPEC_224)
