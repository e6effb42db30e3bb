"""``compare``'s activation null: each feature against its own null, position-tied features flagged.

Planted codes (``factories.compare.planted_codes``): features shared by both sides, unshared ones
firing on 5-20% or on 0.02-0.1% of positions, position-tied ones (fixed positions in every image,
content-free, as many on side B with the same positions) and pairs driven by an image-level cause.
At the 1% level about 1% of the unshared features are called matches by chance: the assertions
allow 2%, on hundreds of features a group.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from factories import make_images, make_sae
from factories.compare import PlantedModel, planted_codes

from inception_sae.compare import CompareConfig, match
from inception_sae.compare.report import table_rows
from inception_sae.compare.run import run as compare_saes


@pytest.fixture(scope="module")
def planted():
    za, zb, groups = planted_codes(n_images=40, shared=150, frequent=300, rare=1000, tied=300, common=300, seed=5)
    acc = match.CorrelationAccumulator(za.shape[2], zb.shape[2], seed=5)
    for s in range(0, za.shape[0], 16):
        acc.add(za[s : s + 16], zb[s : s + 16])
    side_a, _ = match.activation_matches(acc)
    return {"a": side_a, "groups": groups, "freq": acc.frequencies()[0]}


def rate(flags: torch.Tensor, idx: torch.Tensor) -> float:
    return float(flags[idx].float().mean())


def test_shared_features_are_found(planted):
    a, idx = planted["a"], planted["groups"]["shared"]
    assert rate(a.above, idx) >= 0.95, f"shared features above null: {rate(a.above, idx):.1%}"


@pytest.mark.parametrize("group", ["frequent", "rare", "common"])
def test_unshared_features_are_called_at_the_test_level(planted, group):
    a, idx = planted["a"], planted["groups"][group]
    if group == "rare":  # those firing on at most 0.1% of the positions seen
        idx = idx[planted["freq"][idx] <= 1e-3]
        assert idx.numel() >= 800
    r = rate(a.above, idx)
    assert r <= 0.02, f"{group} unshared features above null: {r:.1%} of {idx.numel()}"


def test_position_tied_features_are_flagged_and_never_matches(planted):
    a, idx = planted["a"], planted["groups"]["tied"]
    assert rate(a.tied, idx) == 1.0 and float(a.position_r2[idx].min()) > match.POSITION_R2
    others = torch.cat([planted["groups"][g] for g in ("shared", "frequent", "rare", "common")])
    assert not a.tied[others].any() and float(a.position_r2[others].max()) < 0.2
    assert rate(a.above, idx) == 0.0
    # The per-feature null alone (its location is the feature's own null) also rejects them.
    r = rate(a.test.above, idx)
    assert r <= 0.02, f"position-tied features above their own null, flag aside: {r:.1%} of {idx.numel()}"


def test_p_values_of_unshared_features_are_uniform(planted):
    a, g = planted["a"], planted["groups"]
    p = a.test.p[torch.cat([g["frequent"], g["rare"]])]
    for q in (0.05, 0.2, 0.5):
        assert abs(float((p <= q).float().mean()) - q) < 0.3 * q + 0.01, f"P(p <= {q}) = {(p <= q).float().mean():.3f}"
    clear = (a.best - a.test.threshold).abs() > 1e-4  # "above" is best > the threshold in compare.json
    assert (a.above == (a.best > a.test.threshold) & ~a.tied)[clear].all() and clear.float().mean() > 0.95


def test_position_r2_is_the_chance_corrected_between_position_share():
    g = torch.Generator().manual_seed(6)
    za = torch.rand(6, 10, 3, generator=g)
    za[..., 1] = torch.linspace(0, 1, 10) + 0.1 * za[..., 1]  # mostly a function of position
    za[..., 2] = 0  # silent
    acc = match.CorrelationAccumulator(3, 2, shuffles=2)
    acc.add(za[:3], za[:3, :, :2])
    acc.add(za[3:], za[3:, :, :2])
    x = za.numpy().astype(np.float64)
    between = 6 * ((x.mean(0) - x.mean((0, 1))) ** 2).sum(0)
    total = ((x - x.mean((0, 1))) ** 2).sum((0, 1))
    e = 9 / 59
    ref = (between[:2] / total[:2] - e) / (1 - e)
    r2a, r2b = acc.position_r2()
    assert np.allclose(r2a[:2].numpy(), ref, atol=1e-5) and np.allclose(r2b.numpy(), ref, atol=1e-5)
    assert r2a[2] == 0 and r2a[1] > 0.9 > 0.1 > r2a[0]


@pytest.mark.parametrize("density", [0.005, 0.5])
def test_cross_add_many_pairs_each_row_with_the_given_row_of_b(density):
    g = torch.Generator().manual_seed(7)
    a = torch.rand(120, 40, generator=g) * (torch.rand(120, 40, generator=g) < density)
    b = torch.rand(120, 30, generator=g) * (torch.rand(120, 30, generator=g) < density)
    rows = [None, torch.randperm(120, generator=g), torch.randperm(120, generator=g)]
    outs = [torch.zeros(40, 30, dtype=torch.float64) for _ in rows]
    match.cross_add_many(outs, a, b, rows, max_pairs=7)
    for out, r in zip(outs, rows, strict=True):
        assert torch.allclose(out, a.T.double() @ b[r if r is not None else slice(None)].double(), atol=1e-9)


def test_compare_json_marks_position_tied_features_and_counts_them(tmp_path):
    pm = PlantedModel(tied=4)
    K, S, T = pm.K, pm.S, pm.tied
    a = make_sae(tmp_path / "a", W_dec=pm.D["mixed4b"], layer="mixed4b", k=K + T)
    b = make_sae(tmp_path / "b", W_dec=pm.D["mixed4c"], layer="mixed4c", k=K + T)
    make_images(tmp_path / "imgs", 32)
    cfg = CompareConfig(sae_a=a, sae_b=b, out=tmp_path / "c", images=tmp_path / "imgs", max_images=32, batch_size=16)
    r = compare_saes(cfg, model=pm)
    fa = json.loads((tmp_path / "c" / "compare.json").read_text())["features_a"]
    tied = list(range(2 * K, 2 * K + T))  # the same map in both layers (r ~ 1), but only a position
    for i in tied:
        assert fa["position_tied"][i] and fa["position_r2"][i] > 0.5 and not fa["corr_above_null"][i]
        assert fa["corr"][i] > 0.9
    for i in range(S):
        assert fa["corr_above_null"][i] and not fa["position_tied"][i] and fa["corr_p"][i] <= 0.01
        assert fa["corr"][i] > 0.9 > fa["corr_null_q99"][i] > fa["corr_null_best"][i]
    act = r.activation
    assert act["a_to_b"]["position_tied"] == T and act["null"]["a_to_b"]["position_tied"] == T
    assert act["b_to_a"]["position_tied"] == T and act["null"]["shuffles"] == match.NULL_SHUFFLES
    assert any(row[2] == "position-tied (no match)" and row[3] == str(T) for row in table_rows(r))
