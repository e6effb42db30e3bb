"""Sparse probing on planted labels: a label carried by one known latent is found with k = 1."""

import numpy as np

from inception_sae.data.synthetic import planted_hierarchy
from inception_sae.sae.quality.probing import sparse_probe


def test_label_of_one_planted_latent_is_found_at_k1():
    h = planted_hierarchy(6000, parents=3, children=3, background=32, noise=0.0, seed=4)
    y = h.parent == 1  # the label is exactly "parent feature 1 is present"
    noisy = h.codes + np.random.default_rng(0).exponential(0.3, h.codes.shape) * (h.codes > 0)
    res = sparse_probe(noisy, y)
    one = res["probes"][0]
    assert one["k"] == 1 and one["latents"] == [1]
    assert one["f1"] > 0.98 and one["f1_interval"][0] > 0.95
    assert one["accuracy_interval"][0] > 0.97 and res["test"] == 1800
    assert res["baseline_f1"] < 0.5


def test_label_not_in_the_codes_probes_at_chance():
    h = planted_hierarchy(6000, parents=3, children=3, background=32, seed=4)
    y = np.random.default_rng(1).random(6000) < 0.3  # unrelated to every row
    res = sparse_probe(h.codes, y)
    for probe in res["probes"]:
        assert probe["f1_interval"][1] < 0.5 and probe["accuracy"] < 0.65


def test_children_need_their_own_latent():
    """A child label: k=1 on the child's latent beats the parent's (which fires on every sibling too)."""
    h = planted_hierarchy(8000, parents=2, children=4, background=16, seed=7)
    y = h.child == 1
    res = sparse_probe(h.codes, y)
    assert res["probes"][0]["latents"] == [h.child_feature(1)] and res["probes"][0]["f1"] > 0.95


def test_too_few_positives_is_skipped():
    codes = np.random.default_rng(0).random((100, 5))
    y = np.zeros(100, bool)
    y[:5] = True
    assert "skipped" in sparse_probe(codes, y)


def test_probe_f1_is_scikit_learns_on_the_held_out_inputs():
    """One binary latent that is the label with planted flips: the k=1 probe predicts that latent, so its F1 and
    the always-positive baseline are scikit-learn's on the documented split (stratified 70/30, seeded)."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(3)
    for seed in range(5):
        n = 400 + 50 * seed
        y = rng.random(n) < 0.2 + 0.1 * seed
        shown = y ^ (rng.random(n) < 0.1 + 0.03 * seed)  # the latent disagrees with the label on planted inputs
        codes = np.c_[shown.astype(float), 0.05 * rng.random((n, 3))]
        res = sparse_probe(codes, y, ks=(1,), seed=seed)
        _, te = train_test_split(np.arange(n), test_size=0.3, stratify=y, random_state=seed)
        one = res["probes"][0]
        assert one["latents"] == [0]
        assert one["f1"] == f1_score(y[te], shown[te], zero_division=0.0) < 1
        assert res["baseline_f1"] == f1_score(y[te], np.ones(len(te), bool), zero_division=0.0)
        assert one["f1_interval"][0] <= one["f1"] <= one["f1_interval"][1]
