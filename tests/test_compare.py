"""``compare``: decoder-cosine and activation-correlation matching on planted ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from factories import make_images, make_sae, run_cli, unit_rows
from factories.compare import PlantedModel

from inception_sae.compare import CompareConfig, CorrelationAccumulator, one_to_one
from inception_sae.compare.run import run as compare_saes
from inception_sae.models.layers import layer_info


def test_compare_with_itself_matches_every_feature_at_cosine_one(tmp_path):
    W = unit_rows(torch.randn(200, 512, generator=torch.Generator().manual_seed(0)))
    sae = make_sae(tmp_path / "a", W_dec=W, layer="mixed4b")
    res = run_cli("compare", str(sae), str(sae), "--out", str(tmp_path / "c"))
    assert res.returncode == 0
    r = json.loads((tmp_path / "c" / "compare.json").read_text())
    fa = r["features_a"]
    assert fa["cos_match"] == list(range(200)) and fa["cos_1to1_match"] == list(range(200))
    assert min(fa["cos"]) == pytest.approx(1.0, abs=1e-4) and min(fa["cos_1to1"]) == pytest.approx(1.0, abs=1e-4)
    assert r["decoder"]["a_to_b"]["best_share_above"] == {"0.7": 1.0, "0.9": 1.0}
    assert r["decoder"]["a_to_b"]["one_to_one_share_above"] == {"0.7": 1.0, "0.9": 1.0}
    assert (tmp_path / "c" / "compare.png").stat().st_size > 5000


@pytest.mark.slow  # the branch permutation test of 480 rows
def test_permuted_and_partly_replaced_rows_match_exactly_the_kept_rows(tmp_path):
    g = torch.Generator().manual_seed(1)
    m, d = 240, 512
    Wa = unit_rows(torch.randn(m, d, generator=g))
    perm = torch.randperm(m, generator=g)  # B's row j is A's row perm[j]...
    Wa[:40, :] = 0.02 * Wa[:40, :]  # the first 40 rows live in the 5x5 branch (a planted dominant branch)
    five = layer_info("mixed4b").branch("5x5").slice
    Wa[:40, five[0] : five[1]] = torch.randn(40, five[1] - five[0], generator=g)
    Wa = unit_rows(Wa)
    Wb = Wa[perm].clone()
    replaced = torch.rand(m, generator=g) < 0.4  # ...except where replaced by a fresh random row
    Wb[replaced] = unit_rows(torch.randn(int(replaced.sum()), d, generator=g))
    a, b = make_sae(tmp_path / "a", W_dec=Wa, layer="mixed4b"), make_sae(tmp_path / "b", W_dec=Wb, layer="mixed4b")
    r = compare_saes(CompareConfig(sae_a=a, sae_b=b, out=tmp_path / "c"))
    kept_a = set(perm[~replaced].tolist())
    fa, fb = r.features_a, r.features_b
    matched_a = {i for i, c in enumerate(fa["cos"]) if c >= 0.7}
    assert matched_a == kept_a
    for j in range(m):
        if not replaced[j]:
            assert fa["cos_1to1_match"][int(perm[j])] == j and fb["cos_match"][j] == int(perm[j])
        else:
            assert fb["cos"][j] < 0.7  # a random row in 512-d has no partner above 0.7
    share = r.decoder["a_to_b"]["best_share_above"]["0.9"]
    assert share == pytest.approx(len(kept_a) / m)
    dom = fa["dominant_branch"]
    assert dom[:40] == ["5x5"] * 40 and dom[40:].count("none") >= 0.95 * (m - 40)  # calibrated: random rows "none"
    by = r.decoder["a_to_b"]["by_branch"]
    assert by["5x5"]["n"] >= 40 and "analysis.branches" in r.dominance["a"]


def test_one_to_one_greedy_agrees_with_hungarian_on_a_clear_permutation():
    g = torch.Generator().manual_seed(2)
    W = unit_rows(torch.randn(50, 64, generator=g))
    perm = torch.randperm(50, generator=g)
    sim = W @ W[perm].T
    hung, greedy = one_to_one(sim), one_to_one(sim, hungarian_max=0)
    assert greedy.method == "greedy"
    assert torch.equal(hung.index, greedy.index)
    assert torch.equal(perm[hung.index], torch.arange(50))


def test_correlation_accumulator_equals_pearson_on_all_positions():
    g = torch.Generator().manual_seed(3)
    za = torch.rand(6, 10, 5, generator=g).relu()
    zb = torch.rand(6, 10, 4, generator=g)
    acc = CorrelationAccumulator(5, 4)
    acc.add(za[:3], zb[:3])
    acc.add(za[3:], zb[3:])
    a, b = za.reshape(-1, 5).numpy(), zb.reshape(-1, 4).numpy()
    ref = np.corrcoef(a.T, b.T)[:5, 5:]
    assert np.allclose(acc.correlation().numpy(), ref, atol=1e-5)
    # The null is now several shuffles, each a derangement of the batch recorded in acc.partners
    # (it was one fixed roll by one image): check each against Pearson on the pairing it records.
    assert acc.shuffles >= 2 and len(acc.partners) == 2
    for k in range(acc.shuffles):
        parts = [zb[o : o + 3][acc.partners[t][k]] for t, o in enumerate((0, 3))]
        for perm in (acc.partners[0][k], acc.partners[1][k]):
            assert (perm != torch.arange(3)).all() and sorted(perm.tolist()) == [0, 1, 2]
        b_null = torch.cat(parts).reshape(-1, 4).numpy()
        assert np.allclose(acc.null_correlation(k).numpy(), np.corrcoef(a.T, b_null.T)[:5, 5:], atol=1e-5)
    best_a, best_b = acc.null_best()
    assert torch.allclose(best_a[1], acc.null_correlation(1).max(1).values)
    assert torch.allclose(best_b[1], acc.null_correlation(1).max(0).values)


def test_planted_shared_activation_patterns_are_matched_above_the_shuffled_null(tmp_path):
    pm = PlantedModel()
    K, S = pm.K, pm.S
    # Each SAE reads its layer's planted directions (rows 0..K-1) plus K random extra rows.
    a = make_sae(tmp_path / "a", W_dec=pm.D["mixed4b"], layer="mixed4b", k=K)
    b = make_sae(tmp_path / "b", W_dec=pm.D["mixed4c"], layer="mixed4c", k=K)
    imgs = tmp_path / "imgs"
    make_images(imgs, 40)
    r = compare_saes(
        CompareConfig(sae_a=a, sae_b=b, out=tmp_path / "c", images=imgs, max_images=40, batch_size=8), model=pm
    )
    fa = r.features_a
    thr = fa["corr_null_q99"]  # each feature's own null threshold (was one pooled quantile for all)
    for i in range(S):  # the shared concepts: matched to their partner, far above the null
        assert fa["corr_match"][i] == i and fa["corr"][i] > 0.9 > thr[i] and fa["corr_above_null"][i]
    for i in range(S, K):  # concepts seen in only one layer: no match above 0.5
        assert fa["corr"][i] < 0.5
    assert r.images["count"] == 40 and r.images["positions_per_image"] == 196
    assert not r.same_layer and r.decoder is None


def test_different_layers_without_images_is_a_one_line_error(tmp_path):
    a = make_sae(tmp_path / "a", W_dec=unit_rows(torch.randn(20, 512)), layer="mixed4b")
    b = make_sae(tmp_path / "b", W_dec=unit_rows(torch.randn(20, 832)), layer="mixed4e")
    r = run_cli("compare", str(a), str(b), "--out", str(tmp_path / "c"))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "needs --images" in err[0]


@pytest.mark.parametrize("density", [0.02, 0.5])
def test_cross_add_equals_the_dense_product(density):
    from inception_sae.compare.match import cross_add

    g = torch.Generator().manual_seed(4)
    a = torch.rand(300, 90, generator=g) * (torch.rand(300, 90, generator=g) < density)
    b = torch.rand(300, 70, generator=g) * (torch.rand(300, 70, generator=g) < density)
    a[5] = 0  # a row with no non-zero
    out = torch.zeros(90, 70, dtype=torch.float64)
    cross_add(out, a, b, max_pairs=50)  # many small blocks
    assert torch.allclose(out, (a.T.double() @ b.double()), atol=1e-9)
