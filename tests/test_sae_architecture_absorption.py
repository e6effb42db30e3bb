"""Matryoshka SAEs absorb parents into children less than TopK SAEs at the same L0 (Bussmann et al. 2025,
arXiv 2503.17547), measured by the quality panel's own absorption statistic on a planted hierarchy.

The data (``planted_hierarchy``): 4 parents with 4 children each, a parent always fires with exactly one of its
children, siblings never fire together, parents and siblings drawn with Zipf frequencies, plus 2 of 64 Zipf
background features per row (true L0 3.2). At k = 3 a TopK SAE saves a latent on a tree row by letting the child
latent carry the parent direction: the parent latent goes silent (absorption). A Matryoshka SAE must reconstruct
from its first m/16 latents alone, where the frequent parents live, so the parent latent keeps firing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inception_sae.data.source import ArraySource
from inception_sae.data.synthetic import planted_hierarchy
from inception_sae.sae.metrics import fvu
from inception_sae.sae.model import SAEConfig, TopKSAE
from inception_sae.sae.quality.absorption import absorption
from inception_sae.sae.quality.stability import dense_codes
from inception_sae.sae.train import TrainConfig, train

TRAIN, HELD, M, K, SAMPLES = 20_000, 20_000, 128, 3, 60_000


def _train(x: np.ndarray, arch: str, seed: int, out) -> TopKSAE:
    cfg = TrainConfig(samples=SAMPLES, batch_size=256, warmup_steps=20, progress=False, checkpoint_every=0,
                      checkpoint_every_s=0)  # fmt: skip
    res = train(ArraySource(x, 256, seed=seed), [SAEConfig(x.shape[1], M, K, seed=seed, architecture=arch)], cfg, out)
    return TopKSAE.load(res.paths[0])


def _measure(sae: TopKSAE, h, seed: int) -> dict:
    """Held-out L0, FVU and absorption (mean over the parents) of ``sae``'s inference codes."""
    x = torch.from_numpy(h.x[TRAIN:])
    codes = dense_codes(sae, x).numpy()
    with torch.no_grad():
        vals, idx = sae.encode(x)
        f = fvu(sae.decode(vals, idx), x)
    parent, child = h.parent[TRAIN:], h.child[TRAIN:]
    per_parent = []
    for p in range(h.n_parents):
        own = parent == p
        per_parent.append(absorption(codes, own, np.where(own, child - 4 * p, -1), f"p{p}", seed=seed))
    return {
        "l0": float((codes > 0).sum(1).mean()),
        "fvu": f,
        "absorbed": float(np.mean([a.absorbed["rate"] for a in per_parent])),
        "parent_f1": float(np.mean([a.parent_f1 for a in per_parent])),
    }


@pytest.mark.slow
def test_matryoshka_absorbs_less_than_topk_at_equal_l0(tmp_path):
    """Three seeds (data, initialisation and stream order all change). Measured (seeds 0-6, this size): TopK
    absorbs 0.28-0.71 of the parent-positive held-out rows (mean 0.51), Matryoshka 0.05-0.18 (mean 0.11); the
    per-seed gap is at least 0.2. Asserted: Matryoshka below TopK on each seed, and on the mean over seeds by at
    least 0.15 and by at least half, at held-out L0 within 5% of k and comparable FVU."""
    res: dict[str, list[dict]] = {"topk": [], "matryoshka": []}
    for seed in (0, 1, 2):
        h = planted_hierarchy(TRAIN + HELD, seed=seed)
        assert abs(h.true_l0 - 3.2) < 0.05
        for arch in res:
            res[arch].append(_measure(_train(h.x[:TRAIN], arch, seed, tmp_path / f"{arch}{seed}"), h, seed))
    print(res)
    for arch, runs in res.items():
        for r in runs:
            assert abs(r["l0"] / K - 1) < 0.05, (arch, r)  # equal L0: TopK's k, Matryoshka's threshold
            assert r["fvu"] < 0.2, (arch, r)  # both reconstruct: absorption is not a side effect of failing
    top = np.array([r["absorbed"] for r in res["topk"]])
    mat = np.array([r["absorbed"] for r in res["matryoshka"]])
    assert (mat < top).all(), (top, mat)
    assert top.mean() - mat.mean() > 0.15 and mat.mean() < 0.5 * top.mean(), (top, mat)
    # the parent latent itself is a better parent detector in Matryoshka (the other side of absorption)
    assert np.mean([r["parent_f1"] for r in res["matryoshka"]]) > np.mean([r["parent_f1"] for r in res["topk"]])
