"""Concept labels: planted truth recovered at the right level, NeuronEval's sanity tests, the pieces checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from factories.concept_truth import BIRD, DOG, FISH, label_directions, planted

from inception_sae.analysis import concept_pixels as px
from inception_sae.analysis import concept_records as cr
from inception_sae.analysis import concept_scores as sc
from inception_sae.analysis import concept_space as cs
from inception_sae.analysis.labels import hypergeom_sf, hypergeom_sf_many
from inception_sae.data.labels import load_labels
from inception_sae.data.wordnet import load_hierarchy


@pytest.fixture(scope="module", params=[0, 1])
def labelled(request):
    p = planted(request.param)
    return p, label_directions(p, seed=request.param)


def test_planted_concepts_are_recovered_at_the_right_level(labelled):
    p, recs = labelled
    by = dict(zip(p.kinds, recs, strict=False))
    dog = by["dog"]
    assert dog["labelled"] and [t["key"] for t in dog["terms"]] == [DOG] and dog["kind"] == "ancestor"
    assert dog["scores"]["f1"]["value"] > 0.8 and dog["scores"]["f1"]["baseline"] < 0.25
    assert DOG in dog["under"] and dog["category"] == "animal"
    h = load_hierarchy(load_labels())
    analysed = set(p.image_class.tolist())

    def classes_of(rec) -> set[int]:
        return {c for t in rec["terms"] for c in h.covers[t["key"]] if c in analysed}

    union = by["bird_or_fish"]
    birds_fish = classes_of({"terms": [{"key": BIRD}, {"key": FISH}]})
    got = classes_of(union)
    assert union["labelled"] and len(got & birds_fish) >= 0.8 * len(got | birds_fish)  # bird or fish, or nearly
    assert all({BIRD, FISH} & set(h.ancestors(t["key"])) for t in union["terms"])
    assert union["scores"]["f1"]["value"] > 0.6
    terriers = by["terriers"]
    got = classes_of(terriers)
    assert terriers["labelled"] and got <= p.truth[p.kinds.index("terriers")] and len(got) >= 2  # not "terrier"
    for rec in (dog, union, terriers):  # scores on the held-out half against their permutation baselines
        s = rec["scores"]
        assert s["auprc"]["value"] > 3 * s["auprc"]["baseline"] and s["pearson"]["value"] > 0.3
        assert s["f1"]["p"] < 1e-4 and s["auprc"]["p"] <= 1 / (sc.N_PERM + 1) + 1e-12  # above every permutation
    assert by["left"]["where"]["text"] == "left" and by["left"]["where"]["labelled"]
    assert by["left"]["where"]["f1"] > 2 * by["left"]["where"]["baseline"]
    assert by["red"]["colour"]["text"] == "red" and by["red"]["colour"]["labelled"]
    assert cr.label_text(by["left"]) == "left" and cr.label_text(by["red"]) == "red"


def test_no_concept_directions_stay_unlabelled(labelled):
    p, recs = labelled
    nulls = [r for k, r in zip(p.kinds, recs, strict=True) if k in ("null", "dense", "blob")]
    shown = [cr.label_text(r) for r in nulls if cr.label_text(r)]
    assert len(shown) <= 2, shown  # BH at 5% over each family: rarely any
    blobs = [r for k, r in zip(p.kinds, recs, strict=True) if k == "blob"]  # clustered cells, no preference
    for q in cr.QUALIFIERS:
        ps = [r[q]["p"] for r in blobs if r and r.get(q)]
        assert len(ps) >= 15 and np.mean([x < 0.05 for x in ps]) < 0.25, (q, ps)  # the image is the unit
    f1 = [r["scores"]["f1"] for r in nulls if r and r.get("scores")]
    assert len(f1) >= 20
    assert np.mean([s["value"] - s["baseline"] for s in f1]) < 0.03  # at chance on the held-out half
    assert np.mean([s["p"] < 0.05 for s in f1]) < 0.2  # p roughly uniform


def sanity_scores(acts: torch.Tensor, inside: torch.Tensor) -> dict:
    """Every shipped score of the concept ``inside`` for activations ``acts`` (n,), through the labeller's own path."""
    top = acts.max().view(1)
    b = sc.fine_bins(acts.view(-1, 1), top).view(-1)
    pos = torch.bincount(b[inside], minlength=sc.NB).double().numpy()
    neg = torch.bincount(b[~inside], minlength=sc.NB).double().numpy()
    a = acts.double()
    mom = np.array([len(a), float(a.sum()), float((a * a).sum())])
    return sc.slot_scores(pos, neg, sc.LEVEL_BINS[1], np.array(float(a[inside].sum())), mom)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neuroneval_sanity_missing_and_extra_classes_lower_every_score(seed):
    """Oikarinen & Weng's two tests: a label missing true classes, or with false ones added, scores lower."""
    g = torch.Generator().manual_seed(seed)
    n_cls, per = 60, 20
    cls = torch.arange(n_cls).repeat_interleave(per)
    true = torch.arange(12)  # the concept: 12 classes
    in_true = torch.isin(cls, true)
    acts = torch.where(in_true & (torch.rand(len(cls), generator=g) < 0.9),
                       torch.exp(0.5 * torch.randn(len(cls), generator=g)), torch.zeros(len(cls)))  # fmt: skip
    acts = torch.maximum(acts, 0.1 * torch.rand(len(cls), generator=g) * (torch.rand(len(cls), generator=g) < 0.3))
    full = sanity_scores(acts, in_true)
    missing = sanity_scores(acts, torch.isin(cls, true[:6]))
    extra = sanity_scores(acts, torch.isin(cls, torch.arange(24)))
    for score in ("f1", "iou", "auprc", "pearson"):
        assert missing[score] < full[score] - 0.05, score
        assert extra[score] < full[score] - 0.05, score
    # AUROC barely moves when half the true classes are dropped: why it is only a secondary column
    assert missing["auroc"] > full["auroc"] - 0.12


def test_average_precision_and_auroc_match_scikit_learn_on_binned_scores():
    import sklearn.metrics as sk  # a core dependency (the quality panel)

    rng = np.random.default_rng(0)
    for _ in range(5):
        score = rng.integers(0, sc.NB, 300)
        y = rng.random(300) < 0.2 + 0.03 * score
        pos = np.bincount(score[y], minlength=sc.NB).astype(float)
        neg = np.bincount(score[~y], minlength=sc.NB).astype(float)
        assert abs(sc.average_precision(pos, neg) - sk.average_precision_score(y, score)) < 1e-12
        assert abs(sc.auroc_binned(pos, neg) - sk.roc_auc_score(y, score)) < 1e-12


def test_ap_permutation_baseline_is_the_prevalence_and_p_is_uniform_under_the_null():
    rng = np.random.default_rng(1)
    total = rng.integers(0, 40, (64, sc.NB)).astype(float)
    k = np.full(64, 50.0)
    obs = sc.permuted_ap(total, k, rng, n_perm=1)[:, 0]  # one more draw of the same null
    base, p = sc.ap_permutation(total, k, obs, seed=2)
    assert np.allclose(base, k / total.sum(1), atol=0.03)
    assert 0.3 < p.mean() < 0.7 and (p < 0.05).mean() < 0.15


def test_hypergeometric_tail_compiled_matches_exact_sum():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(400):
        N = int(rng.integers(1, 2000))
        K, n = int(rng.integers(0, N + 1)), int(rng.integers(0, N + 1))
        rows.append((int(rng.integers(0, n + 1)), n, K, N))
    got = hypergeom_sf_many(*np.array(rows).T)
    want = np.array([hypergeom_sf(*r) for r in rows])
    assert np.allclose(got, want, rtol=1e-9, atol=1e-300)


def test_split_is_stratified_balanced_and_seeded():
    cls = torch.tensor([3] * 7 + [5] * 4 + [9] + [-1] * 3 + [11] * 2)
    a, b = cs.choice_split(cls, 0), cs.choice_split(cls, 0)
    assert torch.equal(a, b) and not torch.equal(a, cs.choice_split(cls, 1))
    assert (a[cls < 0] == -1).all()
    for c in (3, 5, 11):
        half = a[cls == c]
        assert abs(int((half == 0).sum()) - int((half == 1).sum())) <= 1
    assert abs(int((a == 0).sum()) - int((a == 1).sum())) <= 1


def test_space_keeps_one_node_per_class_set_and_drops_near_universal_ones():
    names = load_labels()
    h = load_hierarchy(names)
    dogs = sorted(h.covers[DOG])
    classes = torch.tensor(dogs[:10] + sorted(h.covers[FISH])[:3])
    sp = cs.build_space(classes, names, h)
    sets = [tuple(torch.nonzero(sp.member[:, j]).view(-1).tolist()) for j in range(sp.n)]
    assert len(sets) == len(set(sets))  # no two concepts with the same images
    assert sp.kinds[:13] == ["class"] * 13
    assert all(sp.member[:, j].sum() < 0.9 * 13 for j in range(13, sp.n))
    dog_like = [sp.names[j] for j in range(13, sp.n) if set(sets[j]) == set(range(10))]
    assert len(dog_like) == 1  # the ten dogs' most specific common node, once


def test_colour_names_of_plain_colours():
    want = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.7, 0.1), "blue": (0.1, 0.2, 0.9), "yellow": (0.95, 0.9, 0.1),
            "white": (0.95, 0.95, 0.95), "black": (0.05, 0.05, 0.05), "grey": (0.5, 0.5, 0.5),
            "brown": (0.45, 0.25, 0.1), "pink": (0.95, 0.6, 0.7), "orange": (0.95, 0.55, 0.1),
            "purple": (0.5, 0.1, 0.7)}  # fmt: skip
    rgb = torch.tensor(list(want.values())).view(1, -1, 3).permute(2, 0, 1).unsqueeze(0)  # (1, 3, 1, n)
    got = px.colour_names(rgb).view(-1).tolist()
    assert [px.COLOURS[i] for i in got] == list(want)


def test_cell_maxima_and_extent_sparse_equal_dense():
    g = torch.Generator().manual_seed(0)
    B, S, m, k = 3, 7, 11, 4
    vals = torch.rand(B * S * S, k, generator=g)
    ind = torch.stack([torch.randperm(m, generator=g)[:k] for _ in range(B * S * S)])
    dense = torch.zeros(B * S * S, m).scatter_(1, ind, vals).view(B, S, S, m).permute(0, 3, 1, 2)  # (B, m, S, S)
    assert torch.allclose(px.sparse_cell_maxima(vals, ind, B, S, m), px.dense_cell_maxima(dense))
    vmax = dense.flatten(2).amax(2)
    assert torch.allclose(px.sparse_extent(vals, ind, vmax, S), px.dense_extent(dense, vmax))
    left = px.where_masks()[px.WHERE.index("left")]
    cell = px.cell_of_positions(S).view(S, S)
    assert left[cell[:, 0]].all() and not left[cell[:, -1]].any()


def test_hierarchy_package_data():
    h = load_hierarchy()
    assert len(h.class_wnids) == 1000
    chain = [h.name(w) for w in h.chain(h.class_wnids[1])]  # kit fox
    assert chain[0] == "kit fox" and "canine" in chain and chain[-1] == "entity"
    assert len(h.covers[DOG]) == 118 and h.category(DOG) == "animal"
    assert math.isclose(sum(1 for w in h.class_wnids.values() if h.category(w) == "animal"), 398)


def test_class_folders_and_flat_wnid_files_both_give_true_classes(tmp_path):
    from PIL import Image

    from inception_sae.analysis.config import AnalyzeConfig
    from inception_sae.analysis.run import choose_label_source, true_classes
    from inception_sae.data.images import ImageDataset, Preprocess

    names = load_labels()
    picks = (1, 2, 3, 500)
    for j, c in enumerate(picks):
        w = names.wnids[c]
        img = Image.new("RGB", (40, 40), (60 * j, 20, 200 - 40 * j))
        (tmp_path / "tree" / "train" / w).mkdir(parents=True)
        img.save(tmp_path / "tree" / "train" / w / f"img{j}.jpg")
        (tmp_path / "flat").mkdir(exist_ok=True)
        img.save(tmp_path / "flat" / f"{w}.jpg")
    for layout in ("tree", "flat"):
        ds = ImageDataset.from_path(tmp_path / layout, Preprocess(resize=36, crop=32))
        cls = true_classes(ds, len(ds), names)
        assert sorted(cls.tolist()) == list(picks)
        cfg = AnalyzeConfig(sae=tmp_path / "sae", images=tmp_path / layout, out=tmp_path / "out")
        assert choose_label_source(cfg, cls) == "true"  # one image per class is enough for concept labels
