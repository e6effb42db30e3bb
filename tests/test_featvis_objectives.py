"""Objectives: arithmetic, descriptions, per-image units, SAE formulas, branches, diversity."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from inception_sae.featvis.objectives import (
    channel,
    direction,
    diversity,
    neuron,
    sae_decoder,
    sae_encoder,
)


@pytest.fixture
def acts():
    g = torch.Generator().manual_seed(0)
    return {"mixed3a": torch.rand(3, 256, 5, 5, generator=g), "mixed3b": torch.rand(3, 480, 5, 5, generator=g)}


@pytest.fixture
def sae():
    g = torch.Generator().manual_seed(1)
    return SimpleNamespace(
        W_enc=torch.randn(256, 32, generator=g),
        W_dec=torch.randn(32, 256, generator=g),
        b_enc=torch.randn(32, generator=g),
        b_dec=torch.randn(256, generator=g),
        layer="mixed3a",
    )


def test_neuron_and_channel(acts):
    a = acts["mixed3a"]
    assert torch.allclose(neuron("mixed3a", 7)(acts), a[:, 7, 2, 2])
    assert torch.allclose(neuron("mixed3a", 7, at=(1, 3))(acts), a[:, 7, 1, 3])
    assert torch.allclose(channel("mixed3a", 7)(acts), a[:, 7].mean(dim=(1, 2)))


def test_per_image_units(acts):
    a = acts["mixed3a"]
    got = channel("mixed3a", [4, 5, 6])(acts)
    assert torch.allclose(got, torch.stack([a[i, 4 + i].mean() for i in range(3)]))
    with pytest.raises(ValueError, match="units for a batch"):
        channel("mixed3a", [1, 2])(acts)


def test_arithmetic_and_layers_and_description(acts):
    a, b = channel("mixed3a", 1), neuron("mixed3b", 2)
    obj = 2 * a - b / 4 + 1.0
    assert obj.layers == ("mixed3a", "mixed3b")
    expected = 2 * a(acts) - b(acts) / 4 + 1.0
    assert torch.allclose(obj(acts), expected)
    assert "channel mixed3a:1" in obj.description and "neuron mixed3b:2" in obj.description
    assert torch.allclose(sum([a, b])(acts), a(acts) + b(acts))
    assert torch.allclose((-a)(acts), -a(acts))


def test_branch_restricted_reads_the_branch_slice(acts):
    # mixed3a branches: 1x1 0-63, 3x3 64-191, 5x5 192-223, pool 224-255
    a = acts["mixed3a"]
    assert torch.allclose(channel("mixed3a", 3, branch="5x5")(acts), a[:, 195].mean(dim=(1, 2)))
    v = torch.randn(32)
    got = direction("mixed3a", v, cossim_pow=0, branch="5x5")(acts)
    assert torch.allclose(got, torch.einsum("bchw,c->b", a[:, 192:224], v) / 25, atol=1e-4)
    assert "5x5 192:224" in channel("mixed3a", 3, branch="5x5").description
    with pytest.raises(KeyError):
        channel("mixed3a", 0, branch="7x7")


def test_direction_is_dot_times_cos_pow(acts):
    a = acts["mixed3a"][:, :, 2, 2]  # (B, C)
    v = torch.randn(256)
    dot = a @ v
    cos = dot / (a.norm(dim=1) * v.norm())
    for p in (0.0, 1.0, 2.0):
        got = direction("mixed3a", v, cossim_pow=p, at="center")(acts)
        assert torch.allclose(got, dot * cos.clamp(min=0.1) ** p, rtol=1e-4, atol=1e-4)


def test_sae_encoder_is_the_pre_activation(acts, sae):
    a = acts["mixed3a"]
    got = sae_encoder(sae, [3, 4, 5])(acts)
    centre = a[:, :, 2, 2]  # (B, d_in)
    pre = (centre - sae.b_dec) @ sae.W_enc + sae.b_enc  # (B, d_sae)
    assert torch.allclose(got, pre[torch.arange(3), torch.tensor([3, 4, 5])], rtol=1e-4, atol=1e-3)
    mean = sae_encoder(sae, 3, at="mean")(acts)
    pre_all = torch.einsum("bchw,c->bhw", a - sae.b_dec[:, None, None], sae.W_enc[:, 3]) + sae.b_enc[3]
    assert torch.allclose(mean, pre_all.mean(dim=(1, 2)), rtol=1e-4, atol=1e-3)


def test_sae_decoder_uses_decoder_row_on_centred_acts(acts, sae):
    got = sae_decoder(sae, [0, 1, 2], cossim_pow=0)(acts)
    centre = acts["mixed3a"][:, :, 2, 2] - sae.b_dec
    expected = (centre * sae.W_dec[:3]).sum(1)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert sae_decoder(sae, 0).layers == ("mixed3a",)


def test_diversity_only_compares_within_groups():
    x = torch.rand(1, 8, 4, 4)
    other = torch.rand(1, 8, 4, 4)
    acts = {"mixed3a": torch.cat([x, x, other, other * 2])}
    whole = diversity("mixed3a")(acts)
    assert whole.shape == (4,) and (whole < 0).all()
    grouped = diversity("mixed3a", groups=[0, 0, 1, 1])(acts)
    assert grouped[0] == pytest.approx(-0.5, abs=1e-5)  # identical images: Gram cosine 1, over the group size 2
    assert grouped[2] == pytest.approx(-0.5, abs=1e-5)  # a scaled copy has the same normalised Gram
    same = diversity("mixed3a")({"mixed3a": x.expand(5, -1, -1, -1)})
    assert float(same.sum()) == pytest.approx(-4.0, abs=1e-4)  # Lucid: -sum_i sum_{j!=i} 1 / B = -(B - 1)
    alone = diversity("mixed3a", groups=[0, 1, 2, 3])(acts)
    assert torch.equal(alone, torch.zeros(4))


def test_branch_restricted_sae_objectives_read_only_that_branch(acts, sae):
    """mixed3a's 5x5 branch is channels 192:224; the other channels must not matter."""
    a = acts["mixed3a"]
    centre = (a[:, :, 2, 2] - sae.b_dec)[:, 192:224]
    enc = sae_encoder(sae, [3, 4, 5], branch="5x5")
    assert "5x5" in enc.description
    want = (centre * sae.W_enc[192:224, [3, 4, 5]].T).sum(1)
    assert torch.allclose(enc(acts), want, rtol=1e-4, atol=1e-4)
    dec = sae_decoder(sae, [0, 1, 2], cossim_pow=0, branch="5x5")
    assert torch.allclose(dec(acts), (centre * sae.W_dec[:3, 192:224]).sum(1), rtol=1e-4, atol=1e-4)
    changed = {"mixed3a": a.clone(), "mixed3b": acts["mixed3b"]}
    changed["mixed3a"][:, :192] += 5.0  # outside the branch
    assert torch.allclose(enc(changed), enc(acts)) and torch.allclose(dec(changed), dec(acts))
