"""Transforms: Lucent's chain in plain torch, random per image and seeded per image."""

from __future__ import annotations

import torch

from inception_sae.featvis.render import transform_generators
from inception_sae.featvis.transforms import (
    LUCENT_ANGLES,
    LUCENT_SCALES,
    Compose,
    Jitter,
    Pad,
    RandomRotate,
    RandomScale,
    Resize,
    standard_transforms,
)


def test_lucent_defaults():
    assert min(LUCENT_SCALES) == 0.9 and max(LUCENT_SCALES) == 1.1 and len(LUCENT_SCALES) == 11
    assert min(LUCENT_ANGLES) == -10 and max(LUCENT_ANGLES) == 10 and LUCENT_ANGLES.count(0) == 6
    names = [type(t).__name__ for t in standard_transforms().transforms]
    assert names == ["Pad", "Jitter", "RandomScale", "RandomRotate", "Jitter"]


def test_standard_chain_shapes():
    x = torch.rand(3, 3, 32, 32)
    y = standard_transforms()(x, transform_generators([0, 1, 2]))
    assert y.shape == (3, 3, 32 + 24 - 7 - 3, 32 + 24 - 7 - 3)
    assert Resize(64)(y, []).shape == (3, 3, 64, 64)


def test_pad_fills_with_half():
    y = Pad(2)(torch.zeros(1, 3, 4, 4), [])
    assert y[0, :, 0, 0].tolist() == [0.5] * 3 and y[0, :, 3, 3].tolist() == [0.0] * 3


def test_jitter_is_an_integer_crop():
    x = torch.arange(100.0).reshape(1, 1, 10, 10).expand(1, 3, 10, 10)
    y = Jitter(3)(x, transform_generators([7]))
    assert y.shape == (1, 3, 8, 8)
    dy, dx = divmod(int(y[0, 0, 0, 0]), 10)
    assert torch.equal(y[0, 0], x[0, 0, dy : dy + 8, dx : dx + 8])


def test_identity_scale_and_rotation_leave_the_image():
    x = torch.rand(2, 3, 16, 16)
    gens = transform_generators([0, 1])
    assert torch.allclose(RandomScale([1.0])(x, gens), x, atol=1e-5)
    assert torch.allclose(RandomRotate([0])(x, gens), x, atol=1e-5)


def test_rotation_by_90_degrees_matches_rot90():
    x = torch.rand(1, 3, 8, 8)
    y = RandomRotate([90])(x, transform_generators([0]))
    assert torch.allclose(y, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-4) or torch.allclose(
        y, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-4
    )


def test_draws_differ_per_image_and_batched_equals_individual():
    chain = Compose([Pad(4), Jitter(5), RandomScale(), RandomRotate(), Jitter(3)])
    x = torch.rand(4, 3, 24, 24)
    batched = chain(x, transform_generators([10, 11, 12, 13]))
    for i, seed in enumerate([10, 11, 12, 13]):
        alone = chain(x[i : i + 1], transform_generators([seed]))
        assert torch.allclose(batched[i], alone[0], atol=1e-6)
    same = x[:1].expand(4, -1, -1, -1)
    outs = chain(same, transform_generators([1, 2, 3, 4]))
    assert not torch.allclose(outs[0], outs[1])
