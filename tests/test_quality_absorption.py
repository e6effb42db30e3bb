"""Absorption on planted hierarchies: oracle codes score ~0, absorbing codes ~1, mixes in between in order."""

import itertools

import numpy as np
import pytest

from inception_sae.data.synthetic import planted_hierarchy
from inception_sae.data.wordnet import load_hierarchy
from inception_sae.sae.quality.absorption import absorption, wordnet_absorption


@pytest.fixture(scope="module")
def tree():
    return planted_hierarchy(20_000, parents=4, children=4, background=64, seed=3)


def absorbing_codes(h, q: float, seed: int = 0) -> np.ndarray:
    """Codes of a dictionary holding, besides the planted atoms, one absorbing atom per child (child + parent
    direction): on a random share ``q`` of the tree rows the absorbing atom carries the child and the parent
    latent stays silent; elsewhere the planted (oracle) atoms are used."""
    rng = np.random.default_rng(seed)
    codes = np.concatenate([h.codes, np.zeros((len(h.codes), h.n_children))], 1)
    rows = np.flatnonzero((h.child >= 0) & (rng.random(len(h.codes)) < q))
    cols = h.child_feature(0) + h.child[rows]
    codes[rows, codes.shape[1] - h.n_children + h.child[rows]] = codes[rows, cols]
    codes[rows, cols] = 0
    codes[rows, h.parent[rows]] = 0
    return codes


def rates(h, codes) -> list[float]:
    out = []
    for p in range(h.n_parents):
        child = np.where(h.parent == p, h.child - p * 4, -1)
        out.append(absorption(codes, h.parent == p, child, f"p{p}").absorbed["rate"])
    return out


def test_oracle_dictionary_absorbs_nothing(tree):
    for p in range(tree.n_parents):
        res = absorption(tree.codes, tree.parent == p, np.where(tree.parent == p, tree.child - 4 * p, -1))
        assert res.parent_latent == p and res.parent_f1 == pytest.approx(1.0)
        assert res.absorbed["rate"] == 0.0 and res.absorbed["interval"][1] < 0.01
        assert res.children == res.children_with_latent == 4  # the planted child latents are found, not used
        assert res.absorbed["n"] > 300


def test_absorbing_dictionary_absorbs_everything(tree):
    codes = absorbing_codes(tree, 1.0)
    for p in range(tree.n_parents):
        res = absorption(codes, tree.parent == p, np.where(tree.parent == p, tree.child - 4 * p, -1))
        assert res.absorbed["rate"] > 0.97 and res.absorbed["interval"][0] > 0.9
        assert res.parent_f1 < 0.3  # no latent stands for the parent


def test_mixes_land_in_between_in_order(tree):
    mixes = [0.0, 0.25, 0.5, 0.75, 1.0]
    means = [float(np.mean(rates(tree, absorbing_codes(tree, q)))) for q in mixes]
    assert all(a < b for a, b in itertools.pairwise(means)), means
    for q, m in zip(mixes, means, strict=True):
        assert abs(m - q) < 0.06, (q, m)


def test_wordnet_parents_on_class_labels():
    """Dog images whose codes use a breed latent in place of the dog latent for half the breeds."""
    hier = load_hierarchy()
    dogs = hier.covers["n02084071"][:20]
    others = [c for c in range(1000) if c not in hier.covers["n02084071"]][:40]
    rng = np.random.default_rng(0)
    image_class = rng.choice(dogs + others, 6000)
    m = 1000 + 1  # one latent per class, then the dog latent
    codes = np.zeros((len(image_class), m))
    codes[np.arange(len(codes)), image_class] = 1.0
    is_dog = np.isin(image_class, dogs)
    absorbed_breed = np.isin(image_class, dogs[:10])
    codes[is_dog & ~absorbed_breed, 1000] = 1.0
    res = wordnet_absorption(codes, image_class, hier)
    dog = next(r for r in res["parents"] if r["concept"] == "dog")
    share = absorbed_breed[is_dog].mean()
    assert dog["parent_latent"] == 1000
    lo, hi = dog["absorbed"]["interval"]
    assert lo < share < hi and abs(dog["absorbed"]["rate"] - share) < 0.05
    assert {s["concept"] for s in res["skipped_parents"]} >= {"bird", "fruit"}  # no images of theirs


def test_planted_hierarchy_has_the_promised_structure(tree):
    h = tree
    parents = h.codes[:, : h.n_parents] > 0
    children = h.codes[:, h.n_parents : h.n_parents + h.n_children] > 0
    assert (parents.sum(1) == children.sum(1)).all() and children.sum(1).max() == 1  # one child per parent
    rows = np.flatnonzero(h.child >= 0)
    assert (h.child_parent[h.child[rows]] == h.parent[rows]).all() and children[rows, h.child[rows]].all()
    counts = np.bincount(h.child[rows], minlength=h.n_children).reshape(h.n_parents, -1)
    assert (np.diff(counts, axis=1) < 0).all()  # Zipf: the first sibling is the most frequent
    assert np.allclose(h.x, h.codes @ h.dictionary, atol=0.06)
