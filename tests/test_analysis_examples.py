"""Streaming example mining against brute force, interval uniformity, bounded state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inception_sae.analysis.examples import Family
from inception_sae.analysis.streaming import dense_maxima, image_maxima


def random_codes(n_images: int, hw: int, m: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse codes (n_images*hw, k) with distinct indices per row and heavy-tailed values."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(n_images * hw, m, generator=g).argsort(1)[:, :k]
    val = torch.rand(n_images * hw, k, generator=g) ** 3 * 5
    val[torch.rand(val.shape, generator=g) < 0.3] = 0  # some zero codes (ReLU after TopK)
    return val, idx


def dense_of(val, idx, m):
    return torch.zeros(val.shape[0], m).scatter_(1, idx, val)


def run_family(val, idx, n_images, hw, m, batch, seed=0, n_top=5):
    fam = Family.empty(m, n_top=n_top, seed=seed)
    for pass_ in (1, 2):
        if pass_ == 2:
            fam.start_pass2()
        for s in range(0, n_images, batch):
            e = min(s + batch, n_images)
            v, i = val[s * hw : e * hw], idx[s * hw : e * hw]
            vmax, pos = image_maxima(v, i, e - s, hw, m)
            image = torch.arange(s, e)
            if pass_ == 1:
                fam.stats.update_sparse(v, i, vmax)
                fam.offer_top(vmax, pos, image)
            else:
                fam.offer_intervals(vmax, pos, image)
    return fam


def test_image_maxima_matches_dense():
    n, hw, m, k = 7, 12, 30, 4
    val, idx = random_codes(n, hw, m, k, 1)
    dense = dense_of(val, idx, m).view(n, hw, m)
    vmax, pos = image_maxima(val, idx, n, hw, m)
    assert torch.allclose(vmax, dense.max(1).values)
    fires = vmax > 0
    assert torch.equal(pos[fires], dense.argmax(1)[fires])  # argmax takes the first maximum too
    assert (pos[~fires] == -1).all()
    acts = torch.rand(3, 5, 4, 4)
    dv, dp = dense_maxima(acts)
    assert torch.allclose(dv, acts.flatten(2).max(2).values)
    assert torch.equal(dp, acts.flatten(2).argmax(2))


def test_mining_equals_brute_force():
    n, hw, m, k = 53, 9, 40, 3
    val, idx = random_codes(n, hw, m, k, 2)
    fam = run_family(val, idx, n, hw, m, batch=8)
    dense = dense_of(val, idx, m).view(n, hw, m)
    img_max = dense.max(1).values  # (n, m) brute force
    assert torch.allclose(fam.stats.vmax, img_max.max(0).values)
    assert torch.equal(fam.stats.fire_pos, (dense > 0).sum((0, 1)))
    assert torch.equal(fam.stats.fire_img, (img_max > 0).sum(0))
    assert torch.allclose(fam.stats.total, dense.sum((0, 1)).double(), rtol=1e-5)
    assert int(fam.stats.hist.sum()) == int((dense > 0).sum())
    for f in range(m):
        want = sorted(img_max[:, f][img_max[:, f] > 0].tolist(), reverse=True)[:5]
        got = [v for _, _, v in fam.top_examples(f)]
        assert np.allclose(got, want)
        for image, p, v in fam.top_examples(f):
            assert dense[image, p, f] == v == img_max[image, f]
        vmax = float(img_max[:, f].max())
        for j, iv in enumerate(fam.interval_examples(f)):
            vals = img_max[:, f]
            inside = (vals > 0) & (torch.clamp((vals / (vmax / 10)).floor(), max=9) == j)
            assert iv["count"] == int(inside.sum())
            members = set(torch.nonzero(inside).flatten().tolist())
            got_imgs = {e[0] for e in iv["examples"]}
            assert got_imgs <= members and len(got_imgs) == min(5, len(members))
            for image, p, v in iv["examples"]:
                assert iv["lo"] <= v <= iv["hi"] + 1e-6 and dense[image, p, f] == v


def test_interval_sampling_is_uniform():
    """Chi-square: over many seeds, every image of a 20-image interval is drawn equally often."""
    n, hw, m = 40, 1, 1
    vals = torch.cat([torch.full((20,), 0.5), torch.linspace(9.1, 10, 20)])  # interval 0: 20 images
    idx = torch.zeros(n, 1, dtype=torch.long)
    counts = np.zeros(20)
    trials = 300
    for seed in range(trials):
        fam = run_family(vals.view(-1, 1), idx, n, hw, m, batch=7, seed=seed)
        for image, _, _ in fam.interval_examples(0)[0]["examples"]:
            counts[image] += 1
    expected = trials * 5 / 20
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 43.8  # 99.9% quantile of chi-square with 19 dof


@pytest.mark.parametrize("n_images", [20, 200])
def test_state_is_independent_of_image_count(n_images):
    hw, m, k = 4, 16, 2
    val, idx = random_codes(n_images, hw, m, k, 3)
    fam = run_family(val, idx, n_images, hw, m, batch=10)
    assert fam.stats.images == n_images
    assert fam.nbytes() == Family.empty(m, n_top=5).nbytes() + m * 10 * 5 * 24 + m * 10 * 8


def test_features_that_never_fire_have_no_examples():
    val, idx = random_codes(6, 4, 10, 2, 4)
    val[idx == 3] = 0  # feature 3 never fires
    fam = run_family(val, idx, 6, 4, 10, batch=4)
    assert fam.top_examples(3) == [] and all(iv["examples"] == [] for iv in fam.interval_examples(3))
    assert bool((fam.top.image[3] == -1).all())
