"""Family tests on branch shares with a planted truth, and the Figs 5-10 style PNG."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from inception_sae.analysis import branch_figure as bf
from inception_sae.errors import UserError

NAMES = ["1x1", "3x3", "5x5", "pool"]
M, N_FAM = 400, 20
KIND = "||relu(d[b])|| / ||relu(d)||"


def layer(seed: int = 0, planted: bool = True) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(M, 4) Beta shares, ``specialised`` = share > 0.6, and 20 planted ids with large 5x5 shares."""
    rng = np.random.default_rng(seed)
    share = np.stack([rng.beta(2, 5, M), rng.beta(2, 4, M), rng.beta(2, 5, M), rng.beta(3, 6, M)], 1)
    fam = sorted(rng.choice(M, N_FAM, replace=False).tolist())
    if planted:
        share[fam, 2] = rng.beta(8, 2, N_FAM)
    return share, share > 0.6, fam


def test_planted_family_is_found_in_5x5_only():
    share, spec, fam = layer()
    res = bf.family_test(share, spec, fam, NAMES)
    json.dumps(res, allow_nan=False)
    assert res["status"] == "ok" and res["n"] == N_FAM and res["m"] == M and res["family"] == fam
    assert "without looking at branches" in res["warning"]
    b5 = res["branches"]["5x5"]
    assert b5["p"] < 1e-4 and b5["auc"] > 0.9 and b5["p_count"] < 1e-4
    assert b5["specialised"] > b5["expected"] and b5["median_family"] > b5["median_rest"]
    for b in ("1x1", "3x3", "pool"):
        assert res["branches"][b]["p"] > 1e-3


def test_random_families_are_calibrated():
    share, spec, _ = layer(planted=False)
    rng = np.random.default_rng(1)
    rows = [bf.family_test(share, spec, rng.choice(M, N_FAM, replace=False), NAMES)["branches"] for _ in range(200)]
    p = np.array([[r[b]["p"] for b in NAMES] for r in rows])
    p_count = np.array([[r[b]["p_count"] for b in NAMES] for r in rows])
    # four branches at 0.01 each: ~4% of families have some p <= 0.01 by chance (binomial sd ~2 in 100)
    assert (p[:100] > 0.01).all(1).sum() >= 90
    for j in range(len(NAMES)):
        assert 0.01 <= (p[:, j] < 0.05).mean() <= 0.10
        assert (p_count[:, j] < 0.05).mean() <= 0.08  # exact and discrete: at most the nominal rate


def test_rank_test_by_hand():
    r = bf.rank_test(np.array([3.0, 4.0]), np.array([1.0, 2.0]))
    assert r["U"] == 4 and r["auc"] == 1.0
    z = (4 - 2 - 0.5) / math.sqrt(2 * 2 / 12 * 5)
    assert r["z"] == pytest.approx(z) and r["p"] == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    # ties count 1/2: x=[1, 2], y=[1, 0] -> pairs (1>1? 1/2), (1>0), (2>1), (2>0) = 3.5 of 4
    assert bf.rank_test(np.array([1.0, 2.0]), np.array([1.0, 0.0]))["auc"] == 0.875
    assert bf.rank_test(np.ones(3), np.ones(4)) == {"U": 6.0, "auc": 0.5, "z": None, "p": 1.0}
    assert bf.rank_test(np.array([]), np.ones(4))["p"] is None


def test_count_pvalue_by_hand():
    # 10 features, 3 specialised, a family of 4: P(X>=2) = (C(3,2) C(7,2) + C(3,3) C(7,1)) / C(10,4) = 70 / 210
    assert bf.count_pvalue(2, 4, 3, 10) == pytest.approx(1 / 3)
    assert bf.count_pvalue(3, 4, 3, 10) == pytest.approx(7 / 210)
    assert bf.count_pvalue(0, 4, 3, 10) == 1.0 and bf.count_pvalue(4, 4, 3, 10) == 0.0
    assert bf.count_pvalue(1, 8, 3, 10) == 1.0  # 8 of 10 always hold at least one of the 3
    assert bf.count_pvalue(2, 2, 2, 4) == pytest.approx(1 / 6)


def test_family_edge_cases():
    share, spec, _ = layer()
    for fam, status in (([], "empty family"), (range(M), "whole layer")):
        res = bf.family_test(share, spec, list(fam), NAMES)
        json.dumps(res, allow_nan=False)
        assert res["status"] == status and res["branches"]["5x5"]["p"] is None
    with pytest.raises(UserError, match=r"0\.\.399; got 400"):
        bf.family_test(share, spec, [0, 400], NAMES)
    with pytest.raises(ValueError, match="share must be"):
        bf.family_test(share[:, :3], spec, [0], NAMES)


def test_select_family():
    labels = ["Red blob", "dog snout", None, "red-green colour", "Dog EYE", ""]
    assert bf.select_family(labels, substring="red") == [0, 3]
    assert bf.select_family(labels, substring=" DOG ") == [1, 4]
    assert bf.select_family(labels, substring="cat") == []
    assert bf.select_family(labels, ids=[4, 1, 4]) == [1, 4]
    assert bf.select_family(None, ids=[7], m=8) == [7]
    with pytest.raises(UserError, match=r"0\.\.5; got 6, -1"):
        bf.select_family(labels, ids=[0, 6, -1])
    for kw in ({}, {"ids": [0], "substring": "red"}, {"substring": "  "}):
        with pytest.raises(UserError):
            bf.select_family(labels, **kw)
    with pytest.raises(UserError):
        bf.select_family(None, substring="red", m=6)
    with pytest.raises(UserError):
        bf.select_family(None, ids=[0])


@pytest.mark.parametrize("with_family,untrained", [(False, False), (True, False), (True, True)])
def test_plot_branch_figure(tmp_path, with_family, untrained):
    share, spec, fam = layer()
    band = {b: (0.05, 0.25, 0.6) for b in NAMES}
    kw = {}
    if with_family:
        kw = {"family": fam, "family_name": "animal parts", "family_result": bf.family_test(share, spec, fam, NAMES)}
    path = tmp_path / "fig.png"
    bf.plot_branch_figure(share, band, NAMES, "mixed4d", path, KIND, untrained=untrained, **kw)
    assert path.stat().st_size > 10_000
    with Image.open(path) as im:
        assert abs(im.size[0] - 3.4 * len(NAMES) * 90) <= 1 and abs(im.size[1] - 5.5 * 90) <= 1
