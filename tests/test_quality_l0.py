"""L0 advice: on planted data with a known number of active features per row, the elbow lands near it."""

import numpy as np
import pytest

from inception_sae.data.synthetic import planted_hierarchy
from inception_sae.sae.quality.l0 import l0_advice

KS = [1, 2, 3, 4, 6, 8, 12, 16, 24]


def best_k_term_fvu(h, k: int, rows: slice = slice(None)) -> float:
    """FVU of each row rebuilt from its ``k`` largest true codes on the planted dictionary (an ideal SAE)."""
    codes = h.codes[rows].copy()
    drop = np.argsort(-codes, axis=1)[:, k:]
    np.put_along_axis(codes, drop, 0.0, axis=1)
    x = h.x[rows].astype(float)
    err = ((x - codes @ h.dictionary) ** 2).sum()
    return float(err / ((x - x.mean(0)) ** 2).sum())


@pytest.mark.parametrize("background_active", [2, 6])
def test_elbow_lands_on_the_true_l0_of_ideal_saes(background_active):
    h = planted_hierarchy(5000, d=64, parents=4, children=3, background=64, p_tree=1.0,
                          background_active=background_active, seed=2)  # fmt: skip
    true_l0 = h.true_l0
    assert true_l0 == 2 + background_active
    res = l0_advice([{"k": k, "l0": float(k), "fvu": best_k_term_fvu(h, k)} for k in KS])
    lo, hi = res["interval"]
    assert lo <= true_l0 <= hi and abs(np.log2(res["l0"] / true_l0)) <= 0.6, res["l0"]


def test_too_short_a_sweep_gives_no_advice():
    res = l0_advice([{"l0": 4.0, "fvu": 0.2}, {"l0": 8.0, "fvu": 0.1}])
    assert res["l0"] is None and "3 SAEs" in res["note"]


def test_a_straight_curve_has_no_elbow():
    res = l0_advice([{"l0": 2.0**i, "fvu": 1.0 - 0.1 * i} for i in range(5)])
    assert res["l0"] is None and "no elbow" in res["note"]


def test_fvu_that_rises_with_l0_gives_no_advice():
    res = l0_advice([{"l0": 1.0, "fvu": 0.06}, {"l0": 2.0, "fvu": 0.09}, {"l0": 4.0, "fvu": 0.2}])
    assert res["l0"] is None and "does not fall" in res["note"]


@pytest.mark.slow
def test_elbow_of_a_trained_sweep_lands_on_the_true_l0(tmp_path):
    """Seven TopK SAEs trained on one pass over planted rows with true L0 = 4 (about 35 s on two cores)."""
    from inception_sae.data.source import ArraySource
    from inception_sae.sae.measure import evaluate_vectors
    from inception_sae.sae.model import SAEConfig, TopKSAE
    from inception_sae.sae.train import TrainConfig, train

    h = planted_hierarchy(40_000, d=32, parents=4, children=3, background=32, p_tree=1.0, seed=0)
    cfg = TrainConfig(samples=90_000, batch_size=256, lr=4e-3, warmup_steps=10, progress=False)
    source = ArraySource(np.tile(h.x[:30_000], (3, 1)), 256, seed=0)
    res = train(source, [SAEConfig(32, 96, k, "init") for k in (1, 2, 3, 4, 6, 8, 16)], cfg, tmp_path)
    points = []
    for path in res.paths:
        ev = evaluate_vectors(TopKSAE.load(path), h.x[30_000:])
        points.append({"l0": ev.l0, "fvu": ev.fvu})
    advice = l0_advice(points)
    assert advice["l0"] == pytest.approx(h.true_l0, abs=0.01), points
