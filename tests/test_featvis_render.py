"""render: every objective type improves; batched == individual; no hooks left; ReLU restored."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from inception_sae.featvis import objectives as ob
from inception_sae.featvis.param import ParamConfig
from inception_sae.featvis.render import RenderConfig, render, save_png
from inception_sae.models import load_model

SMALL = dict(param=ParamConfig(size=24), model_size=40)


@pytest.fixture(scope="module")
def model():
    return load_model("random", seed=0)


@pytest.fixture(scope="module")
def sae():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(256, 16, generator=g) / 16
    return SimpleNamespace(
        W_enc=w,
        W_dec=w.T + 0.05 * torch.randn(16, 256, generator=g),
        b_enc=torch.zeros(16),
        b_dec=torch.full((256,), 0.01),
        layer="mixed3a",
    )


def _objectives(sae):
    v = torch.randn(256, generator=torch.Generator().manual_seed(5))
    return {
        "neuron": ob.neuron("mixed3a", [3, 40]),
        "channel": ob.channel("mixed3a", [3, 40]),
        "direction": ob.direction("mixed3a", v),
        "branch": ob.channel("mixed3a", [1, 2], branch="3x3"),
        "sae_encoder": ob.sae_encoder(sae, [0, 1]),
        "sae_decoder": ob.sae_decoder(sae, [0, 1]),
        "diversity": ob.diversity("mixed3a"),
        "combined": ob.channel("mixed3a", 5) + 0.1 * ob.diversity("mixed3a"),
    }


@pytest.mark.parametrize(
    "name", ["neuron", "channel", "direction", "branch", "sae_encoder", "sae_decoder", "diversity", "combined"]
)
def test_objective_improves_over_steps(model, sae, name):
    obj = _objectives(sae)[name]
    start = render(model, obj, [1, 2], RenderConfig(steps=0, **SMALL)).final
    res = render(model, obj, [1, 2], RenderConfig(steps=6, **SMALL))
    assert res.curve.shape == (6, 2)
    assert (res.final > start).all(), (name, start, res.final)
    assert res.images.shape == (2, 24, 24, 3) and res.images.dtype == np.float32
    assert res.images.min() >= 0 and res.images.max() <= 1


@pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")
def test_batched_equals_individual_bitwise_with_per_sample_convolutions(model, sae):
    # oneDNN's batched convolutions round differently from single-image ones; with
    # the per-sample reference kernels the maths is batch-independent, bit for bit.
    cfg = RenderConfig(steps=3, **SMALL)
    feats, seeds = [0, 5, 9, 12], [100, 101, 102, 103]
    with torch.backends.mkldnn.flags(enabled=False):
        batched = render(model, ob.sae_encoder(sae, feats), seeds, cfg)
        alone = render(model, ob.sae_encoder(sae, feats[2]), [seeds[2]], cfg)
        shuffled = render(model, ob.sae_encoder(sae, feats[::-1]), seeds[::-1], cfg)
    assert np.array_equal(batched.images[2], alone.images[0])
    assert np.array_equal(shuffled.images[::-1], batched.images)
    assert np.array_equal(batched.curve[:, 2], alone.curve[:, 0])


def test_batched_equals_individual_within_tolerance_with_default_kernels(model, sae):
    cfg = RenderConfig(steps=2, **SMALL)
    feats, seeds = [0, 5, 9, 12], [100, 101, 102, 103]
    batched = render(model, ob.sae_encoder(sae, feats), seeds, cfg)
    for i in (1, 2):
        alone = render(model, ob.sae_encoder(sae, feats[i]), [seeds[i]], cfg)
        assert np.abs(batched.images[i] - alone.images[0]).max() < 1e-3
        assert np.allclose(batched.curve[:, i], alone.curve[:, 0], rtol=1e-4, atol=1e-6)


def _hooks(model):
    names = ["_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"]
    return sum(len(getattr(m, n, {})) for m in model.modules() for n in names)


def _redirect_on(model):
    return any(getattr(m, "redirect", False) for m in model.modules())


def test_redirected_relu_is_on_during_and_off_after(model):
    seen = []
    base = ob.channel("mixed3a", 0)

    def fn(acts):
        seen.append(_redirect_on(model))
        return base(acts)

    render(model, ob.Objective(fn, ["mixed3a"], "spy"), [0], RenderConfig(steps=2, redirected_relu=True, **SMALL))
    assert seen[:2] == [True, True] and not _redirect_on(model) and _hooks(model) == 0


def test_exception_inside_render_leaves_no_hooks_and_relu_restored(model):
    calls = []

    def boom(acts):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("objective failed")
        return acts["mixed3a"][:, 0].mean(dim=(1, 2))

    with pytest.raises(RuntimeError, match="objective failed"):
        render(
            model, ob.Objective(boom, ["mixed3a"], "boom"), [0], RenderConfig(steps=5, redirected_relu=True, **SMALL)
        )
    assert not _redirect_on(model)
    assert _hooks(model) == 0
    assert not torch.nn.modules.module._global_forward_hooks


def test_wrong_score_shape_is_reported(model):
    bad = ob.Objective(lambda a: a["mixed3a"].mean(), ["mixed3a"], "scalar")
    with pytest.raises(ValueError, match="want \\(B,\\)"):
        render(model, bad, [0, 1], RenderConfig(steps=1, **SMALL))


def test_pixel_param_and_png(model, tmp_path):
    cfg = RenderConfig(steps=3, param=ParamConfig(size=40, fourier=False, decorrelate=False), model_size=64)
    res = render(model, ob.neuron("conv2d2", 4), [0], cfg)
    path = save_png(res.images[0], tmp_path / "a" / "x.png")
    from PIL import Image

    assert Image.open(path).size == (40, 40)
    assert res.uint8().dtype == np.uint8
