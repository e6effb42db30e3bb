"""The branch test against known truth.

Two kinds of truth: rows generated OUTSIDE the test's model (``factories.branch_truth``: real activation directions
of the random network, centred and mixed ones, channel-RMS-scaled dense and sparse rows, every row with leak on all
channels including the dead ones, and planted rows whose activation pattern has one branch three times stronger),
and rows drawn from the test's own assumptions (exchangeable entries in data units), whose p-values must then be
uniform.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from factories.branch_truth import FAMILIES, NAMES, SLICES, D, Generator, activations
from factories.images import SHARED_SAMPLE

from inception_sae.analysis import branch_null as bn
from inception_sae.analysis import branches as br


@pytest.fixture(scope="module")
def population(model, tmp_path_factory):

    A = activations(model, SHARED_SAMPLE, 60, tmp_path_factory.mktemp("imgs"))
    gen = Generator(A, seed=0)
    W, tags = gen.population(per_family=300, planted=150, factor=3.0)
    return W, np.array(tags), gen.rms


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pos", "norm"])
def test_rows_made_outside_the_null_planted_found_and_no_preference_left_alone(population, kind):
    W, tags, rms = population
    assert int((rms == 0).sum()) >= 5  # the random network has dead channels, and every row has leak on them
    st = br.branch_stats(W, SLICES, NAMES, rms)
    dom = np.array(st.dominant_names(kind))
    q = st.tests[kind].q.numpy()
    for branch in ("5x5", "1x1"):
        rows = tags == f"planted {branch}"
        found = (dom[rows] == branch) & (q[rows, NAMES.index(branch)] <= 0.01)
        assert found.mean() >= 0.9, (kind, branch, found.mean())
    no_pref = np.isin(tags, FAMILIES)
    assert (dom[no_pref] != "none").mean() <= 0.03, (kind, (dom[no_pref] != "none").mean())
    for fam in FAMILIES:
        assert (dom[tags == fam] != "none").mean() <= 0.08, (kind, fam, (dom[tags == fam] != "none").mean())


@pytest.mark.slow
def test_a_plain_rms_scale_is_blind_to_the_same_rows(population):
    """What the floor fixes: divided by their own RMS, leak entries on near-silent channels swamp the rows."""
    W, tags, rms = population
    live = rms > 0
    scale = rms.clamp_min(float(rms[live].min()))  # the old scale: every channel's own RMS
    z = bn.row_statistic(W, SLICES, scale, live, "pos")
    planted = torch.tensor(tags == "planted 5x5")
    assert float(z[planted, 2].median()) < 2  # no signal left: leak, not the 5x5 slice, decides the statistic
    floored, live2 = bn.data_units(rms, D)
    z2 = bn.row_statistic(W, SLICES, floored, live2, "pos")
    assert float(z2[planted, 2].median()) > 4


def exchangeable_rows(n: int, scale: torch.Tensor, dense: bool, positive: bool, g) -> torch.Tensor:
    """Rows whose entries are i.i.d. across channels in units of ``scale``: the test's own assumption."""
    y = torch.randn(n, D, generator=g)
    if positive:
        y = y.abs()
    if not dense:
        y = y * (torch.rand(n, D, generator=g) < 0.3)
    return y * scale


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("positive", [True, False])
def test_p_values_are_uniform_when_the_assumptions_hold(dense, positive):
    g = torch.Generator().manual_seed(int(dense) * 2 + int(positive))
    rms = torch.rand(D, generator=g) * 2 + 0.1  # one order of magnitude of channel scales, all above the floor
    scale, live = bn.data_units(rms, D)
    W = exchangeable_rows(3000, scale, dense, positive, g)
    for kind in ("pos", "norm"):
        t = bn.branch_test(W, SLICES, scale, live, kind)
        for j in range(len(NAMES)):
            for alpha in (0.05, 0.2):
                share = float((t.p[:, j] <= alpha).double().mean())
                assert abs(share - alpha) <= 4 * math.sqrt(alpha * (1 - alpha) / 3000) + 0.01, (kind, j, alpha, share)
        assert float((t.dominant >= 0).double().mean()) <= 0.01


def test_rows_with_three_entries_are_not_specialised():
    """A row whose energy sits in three channels has a wide null: landing in one branch is no evidence."""
    g = torch.Generator().manual_seed(3)
    Y = torch.zeros(2000, D)
    for i in range(len(Y)):
        Y[i, torch.randperm(D, generator=g)[:3]] = torch.rand(3, generator=g) + 0.1
    st = br.branch_stats(Y, SLICES, NAMES, torch.ones(D))
    assert st.dominant_counts()["none"] >= 1980


def test_dead_channels_are_left_out_and_quiet_ones_floored():
    rms = torch.tensor([0.0, 1e-4, 0.5, 1.0, 2.0])
    scale, live = bn.data_units(rms, 5)
    assert live.tolist() == [False, True, True, True, True]
    assert torch.allclose(scale, torch.tensor([0.75, 0.75, 0.75, 1.0, 2.0]))  # median of the live RMS
    raw, all_live = bn.data_units(None, 5)
    assert torch.equal(raw, torch.ones(5)) and bool(all_live.all())


def test_statistic_by_hand():
    """E_b minus its permutation mean, over the exact sd of a simple random sample's sum (half the channels: no
    skew to correct)."""
    W = torch.tensor([[3.0, -1.0, 0.0, 0.0]])
    t = bn.row_statistic(W, [(0, 2), (2, 4)], torch.ones(4), torch.ones(4, dtype=torch.bool), "norm")
    e = torch.tensor([3.0, 1.0, 0.0, 0.0])  # |y|: the L1 mass
    var = 2 * 2 / (4 * 3) * float((e - e.mean()).pow(2).sum())
    assert float(t[0, 0]) == pytest.approx((4 - 2 * float(e.mean())) / math.sqrt(var))
    assert float(t[0, 1]) == pytest.approx(-float(t[0, 0]))  # the two slices' masses sum to the total
    pos = bn.row_statistic(W, [(0, 2), (2, 4)], torch.ones(4), torch.ones(4, dtype=torch.bool), "pos")
    assert float(pos[0, 0]) == pytest.approx(3 / 2 / math.sqrt(2 * 2 / 12 * (3 * 0.75**2 + 2.25**2)))


def test_skew_correction_keeps_order_and_tames_the_right_tail():
    z = torch.linspace(-1, 8, 50, dtype=torch.float64)
    out = bn.skew_corrected(z, torch.full_like(z, 0.8))
    assert bool((out.diff() > 0).all()) and float(out[-1]) < 8  # monotone, and a skewed tail is less extreme
    assert torch.allclose(bn.skew_corrected(z, torch.zeros_like(z)), z)


def test_location_is_the_layer_median_and_small_layers_use_zero():
    t = torch.arange(100, dtype=torch.float64).view(-1, 1).repeat(1, 2)
    loc, spread = bn.empirical_null(t)
    assert loc.tolist() == [49.0, 49.0] and float(spread[0]) == pytest.approx(1.4826 * 25, rel=0.05)
    loc_small, _ = bn.empirical_null(t[:10])
    assert loc_small.tolist() == [0.0, 0.0]


def test_normal_tail_far_out():
    assert float(bn.normal_sf(torch.tensor(0.0))) == pytest.approx(0.5)
    assert float(bn.normal_sf(torch.tensor(10.0))) == pytest.approx(7.62e-24, rel=1e-2)  # no underflow to 0


def test_benjamini_hochberg_by_hand():
    p = torch.tensor([0.01, 0.04, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.06, 0.0533, 0.5 -> step-up min -> 0.04, 0.0533, 0.0533, 0.5
    expect = torch.tensor([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert torch.allclose(bn.benjamini_hochberg(p), expect)
    assert torch.allclose(bn.benjamini_hochberg(p.view(2, 2)), expect.view(2, 2))


def test_one_label_for_analysis_circuits_and_compare(tmp_path):
    """``dominant_branches`` reads an analysis folder's labels, or computes the same ones from rows and RMS."""
    import json

    g = torch.Generator().manual_seed(6)
    rms = torch.rand(D, generator=g) + 0.1
    W = torch.randn(200, D, generator=g).abs() * rms
    W[:40, 400:464] *= 4  # a fifth of the layer leans on 5x5
    st = br.branch_stats(W, SLICES, NAMES, rms)
    names = st.dominant_names()
    assert names[:40].count("5x5") >= 38 and names[40:].count("none") >= 150
    assert br.dominant_branches(W, "mixed4d", rms) == names
    (tmp_path / "features").mkdir()
    for i, b in enumerate(names):
        (tmp_path / "features" / f"{i}.json").write_text(json.dumps({"dominant_branch": b}))
    assert br.dominant_branches(torch.zeros(200, D), "mixed4d", None, tmp_path) == names  # read, not recomputed
    assert br.dominant_branches(W, "mixed3a_1x1", rms) == ["none"] * 200  # not an inception block
    fam = br.family_chance(st, range(9))
    assert fam["branch"] == "5x5" and fam["p_all_in_branch"] == pytest.approx((names.count("5x5") / 200) ** 9)
