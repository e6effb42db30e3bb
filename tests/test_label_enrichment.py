"""Class enrichment of top images: the exact hypergeometric tail, BH over features x classes, planted truth, chance."""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from inception_sae.analysis import labels as lab
from inception_sae.analysis.branch_null import benjamini_hochberg
from inception_sae.data.labels import placeholder_labels

NAMES = placeholder_labels()


def brute_sf(k: int, n: int, K: int, N: int) -> Fraction:
    """P(X >= k) as an exact sum of combinations."""
    return sum((Fraction(math.comb(K, x) * math.comb(N - K, n - x), math.comb(N, n)) for x in range(k, n + 1)),
               Fraction(0))  # fmt: skip


def test_hypergeometric_tail_equals_sum_of_combinations():
    for N in (5, 9, 30):
        for K in range(N + 1):
            for n in range(N + 1):
                for k in range(n + 2):
                    want = float(brute_sf(k, n, K, N))
                    assert abs(lab.hypergeom_sf(k, n, K, N) - want) <= 1e-12 + 1e-9 * want, (k, n, K, N)
    assert abs(lab.hypergeom_sf(1, 20, 1, 1000) - 0.02) < 1e-12  # one image per class: a seen class has p = n / N
    for k, n, K, N in ((2, 20, 50, 50000), (12, 20, 20, 1000), (20, 20, 50, 50000)):  # far tails, in log space
        want = float(brute_sf(k, n, K, N))
        assert abs(lab.hypergeom_sf(k, n, K, N) - want) <= 1e-9 * want


def test_bh_with_unseen_tests_equals_bh_over_the_padded_family():
    g = torch.Generator().manual_seed(1)
    p = (torch.rand(40, generator=g) ** 4).double()
    family = 500
    want = benjamini_hochberg(torch.cat([p, torch.ones(family - len(p), dtype=torch.float64)]))[: len(p)]
    got = torch.tensor(lab.bh_qvalues(p.tolist(), family), dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-12)


def classes_each(per_class: int, n_classes: int) -> torch.Tensor:
    return torch.arange(n_classes).repeat_interleave(per_class)


def random_tops(g: torch.Generator, m: int, n_images: int, n_top: int = 20) -> torch.Tensor:
    return torch.stack([torch.randperm(n_images, generator=g)[:n_top] for _ in range(m)])


def enrich(top: torch.Tensor, image_class: torch.Tensor) -> lab.Enrichment:
    return lab.class_enrichment(top, image_class, torch.bincount(image_class, minlength=len(NAMES)), NAMES)


def test_planted_class_is_significant():
    g = torch.Generator().manual_seed(2)
    image_class = classes_each(20, 50)  # 1,000 images, 50 classes of 20
    top = random_tops(g, 100, 1000)
    in_7 = torch.nonzero(image_class == 7).flatten()
    others = torch.nonzero(image_class != 7).flatten()
    top[0] = torch.cat([in_7[torch.randperm(20, generator=g)[:12]], others[torch.randperm(980, generator=g)[:8]]])
    enr = enrich(top, image_class)
    assert enr.family_size == 100 * 50
    first = enr.classes[0][0]
    assert first["index"] == 7 and first["count"] == 12 and first["class_images"] == 20
    assert abs(first["p"] - float(brute_sf(12, 20, 20, 1000))) < 1e-9 * first["p"]
    assert first["q"] <= lab.LEVEL and enr.significant[0]
    assert sum(enr.significant[1:]) <= 2


def test_random_features_rarely_get_a_significant_class():
    g = torch.Generator().manual_seed(3)
    rates = {}
    for per_class, n_classes in ((1, 1000), (20, 50)):  # the shared sample's design, and 20 images per class
        image_class = classes_each(per_class, n_classes)
        enr = enrich(random_tops(g, 300, 1000), image_class)
        assert enr.family_size == 300 * n_classes and enr.images == 1000
        rates[per_class] = sum(enr.significant) / 300
        assert all(set(c) >= {"count", "share", "enrichment", "p", "q"} for row in enr.classes for c in row)
        if per_class == 1:  # the bare ratio calls every seen class x50; the test does not
            assert all(c["enrichment"] == 50 and abs(c["p"] - 0.02) < 1e-12 for c in enr.classes[0])
    print(f"random features with a class at q <= 0.05: {rates}")
    assert all(r <= 0.02 for r in rates.values()), rates


def test_unknown_classes_and_empty_slots_are_left_out():
    image_class = torch.tensor([0, 0, 1, 1, -1, 2])
    top = torch.tensor([[0, 1, 4, -1], [4, -1, -1, -1]])
    counts = torch.bincount(image_class[image_class >= 0], minlength=len(NAMES))
    enr = lab.class_enrichment(top, image_class, counts, NAMES)
    assert enr.images == 5 and enr.family_size == 2 * 3 and enr.tested == 1
    (c,) = enr.classes[0]
    assert c["count"] == 2 and c["share"] == 1.0 and abs(c["p"] - 1 / 10) < 1e-12  # both of class 0: 2 of 5 drawn
    assert enr.classes[1] == [] and enr.significant == [False, False]
