"""The branch null with known truth: rows with no branch preference give uniform p-values, planted rows are found.

Rows are drawn at mixed4d (528 channels; 1x1 112, 3x3 288, 5x5 64, pool 64) exactly as the documented null
says: entries i.i.d. across channels in units of ``null_channel_scale``, of eight kinds (dense/sparse x
positive/signed x light/heavy tails), so every branch's p-values must be uniform whatever the kind.
"""

from __future__ import annotations

import pytest
import torch

from inception_sae.analysis import branches as br
from inception_sae.analysis.branch_null import benjamini_hochberg, fdr_reachability, permutation_pvalues
from inception_sae.circuits.saes import dominant_branches
from inception_sae.models.layers import layer_info

INFO = layer_info("mixed4d")
SLICES = [b.slice for b in INFO.branches]
NAMES = [b.name for b in INFO.branches]
D = INFO.channels
KINDS = [(dense, pos, heavy) for dense in (True, False) for pos in (True, False) for heavy in (False, True)]
N_MAX = 2**15  # floor 3.1e-5: enough for BH over 8,000 tests to reach q <= 0.01 with >= 25 rejections


def null_rows(n: int, dense: bool, pos: bool, heavy: bool, g: torch.Generator) -> torch.Tensor:
    """(n, D) rows in null units: Gaussian or Pareto-like tails, 5% non-zero when sparse, |.| when positive."""
    y = torch.randn(n, D, generator=g)
    if heavy:
        y = y / torch.rand(n, D, generator=g).clamp_min(1e-3) ** 0.7  # infinite variance
    if pos:
        y = y.abs()
    if not dense:
        y = y * (torch.rand(n, D, generator=g) < 0.05)
    return y


@pytest.fixture(scope="module")
def null_set():
    g = torch.Generator().manual_seed(0)
    scale = torch.rand(D, generator=g) * 2 + 0.1  # null_channel_scale, unequal across channels
    Y = torch.cat([null_rows(250, *k, g) for k in KINDS])  # 2,000 rows
    return Y * scale, scale, g


def plant_5x5(n: int, scale: torch.Tensor, g: torch.Generator, share: float = 0.5) -> torch.Tensor:
    """Dense positive rows whose 5x5 slice is a positive bump holding ``share`` of the positive norm."""
    a, b = SLICES[NAMES.index("5x5")]
    W = torch.randn(n, D, generator=g).abs() * scale
    rest = W.pow(2).sum(1) - W[:, a:b].pow(2).sum(1)
    bump = (torch.rand(n, b - a, generator=g) + 0.5) * scale[a:b]
    W[:, a:b] = bump / bump.norm(dim=1, keepdim=True) * (rest * share**2 / (1 - share**2)).sqrt().unsqueeze(1)
    return W


@pytest.mark.slow
def test_null_rows_give_uniform_p_values_and_no_discoveries(null_set):
    W, scale, _ = null_set
    st = br.branch_stats(W, SLICES, NAMES, scale, n_max=N_MAX, seed=1)
    for j, name in enumerate(NAMES):
        below = float((st.p[:, j] < 0.05).float().mean())
        assert 0.03 <= below <= 0.07, (name, below)
        assert 0.07 <= float((st.p[:, j] < 0.1).float().mean()) <= 0.13
        assert float((st.q[:, j] <= 0.01).float().mean()) <= 0.01
    for k, kind in enumerate(KINDS):  # every kind of row on its own, incl. the tie-ridden sparse ones
        block = st.p[250 * k : 250 * (k + 1)]
        assert 0.02 <= float((block < 0.05).float().mean()) <= 0.09, kind
    assert float((st.dominant >= 0).float().mean()) <= 0.01
    assert st.dominant_names().count("none") >= 1980


@pytest.mark.slow
def test_planted_5x5_rows_are_found_by_analysis_and_circuits_alike(null_set):
    W, scale, g = null_set
    W = W.clone()
    idx = torch.randperm(len(W), generator=g)[:64]
    W[idx] = plant_5x5(64, scale, g)
    assert float(br.branch_shares(W[idx], SLICES)["pos"][:, 2].mean()) == pytest.approx(0.5, abs=1e-3)
    st = br.branch_stats(W, SLICES, NAMES, scale, n_max=N_MAX, seed=2)
    names = st.dominant_names()
    found = [i for i in idx.tolist() if st.q[i, 2] <= 0.01 and names[i] == "5x5"]
    assert len(found) >= 60
    others = torch.ones(len(W), dtype=torch.bool)
    others[idx] = False
    assert int((st.dominant[others] >= 0).sum()) <= 20  # FDR 1%: about 0.6 expected among 64 discoveries
    circ, _ = dominant_branches(W, "mixed4d", scale=scale, n_max=N_MAX, seed=2)
    assert circ == names  # the circuits use the very same definition
    assert sum(circ[i] == "5x5" for i in idx.tolist()) >= 60


def test_ties_do_not_break_calibration():
    """Rows with 3 positive entries: most branch shares are exactly 0 or 1 and tie with most permutations."""
    g = torch.Generator().manual_seed(3)
    Y = torch.zeros(1500, D)
    for i in range(len(Y)):
        Y[i, torch.randperm(D, generator=g)[:3]] = torch.rand(3, generator=g) + 0.1
    res = permutation_pvalues(Y, SLICES, None, n_max=4096, seed=4)
    for j in range(4):
        for alpha in (0.05, 0.2, 0.5):
            share = float((res.p[:, j] <= alpha).float().mean())
            assert abs(share - alpha) <= 3.5 * (alpha * (1 - alpha) / len(Y)) ** 0.5 + 0.005, (j, alpha, share)


def test_sequential_p_values_stop_early_and_reach_the_floor():
    g = torch.Generator().manual_seed(5)
    W = torch.randn(50, D, generator=g).abs()
    W[0, 400:464] *= 20  # overwhelming 5x5
    res = permutation_pvalues(W, SLICES, None, n_max=5000, seed=0)
    assert float(res.p[0, 2]) == pytest.approx(1 / 5001)
    assert int(res.draws[0, 2]) == 5000
    assert float(res.draws[1:].float().median()) < 200  # null rows stop after ~20 / p draws
    again = permutation_pvalues(W, SLICES, None, n_max=5000, seed=0)
    assert torch.equal(res.p, again.p)  # seeded


def test_benjamini_hochberg_by_hand():
    p = torch.tensor([0.01, 0.04, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.06, 0.0533, 0.5 -> step-up min -> 0.04, 0.0533, 0.0533, 0.5
    expect = torch.tensor([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert torch.allclose(benjamini_hochberg(p), expect)
    assert torch.allclose(benjamini_hochberg(p.view(2, 2)), expect.view(2, 2))


def test_fdr_reachability_says_when_the_floor_blocks_the_level():
    r = fdr_reachability(1 / 10001, 8448 * 4)
    assert r["min_rejections"] == 338 and r["reachable"]
    assert not fdr_reachability(1 / 51, 100)["reachable"]


def test_family_test_uses_the_sae_base_rates():
    g = torch.Generator().manual_seed(6)
    W = torch.randn(200, D, generator=g).abs()
    W[:40, 400:464] *= 6  # a fifth of the SAE is 5x5
    st = br.branch_stats(W, SLICES, NAMES, None, n_max=2**14, seed=0)
    assert st.dominant_counts()["5x5"] == 40 and st.dominant_counts()["none"] >= 155
    fam = br.family_chance(st, range(9))
    assert fam["branch"] == "5x5"
    assert fam["base_rates"]["5x5"] == pytest.approx(0.2)
    assert fam["p_all_in_branch"] == pytest.approx(0.2**9)  # the SAE's own rate, not 1/4 per branch
    assert "chosen" in fam["warning"]
    assert br.family_chance(st, [0, 100])["branch"] is None
