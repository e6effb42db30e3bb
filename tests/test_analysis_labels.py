"""Labels from classes: enrichment, label choice, streaming AUROC against a brute-force Mann-Whitney."""

from __future__ import annotations

import torch

from inception_sae.analysis import labels as lab
from inception_sae.data.labels import placeholder_labels


def brute_auroc(pos, neg):
    gt = (pos.view(-1, 1) > neg.view(1, -1)).double().sum()
    eq = (pos.view(-1, 1) == neg.view(1, -1)).double().sum()
    return float((gt + 0.5 * eq) / (len(pos) * len(neg)))


def test_streaming_auroc_equals_mann_whitney_on_binned_values():
    g = torch.Generator().manual_seed(0)
    n, m = 300, 4
    vals = torch.rand(n, m, generator=g) * 2
    vals[torch.rand(n, m, generator=g) < 0.3] = 0
    in_label = torch.rand(n, m, generator=g) < 0.3
    vals[in_label] += 0.5  # in-label images fire more
    held = torch.rand(n, m, generator=g) < 0.9
    fmax = vals.max(0).values
    hist = torch.zeros(2, m, lab.AUROC_BINS, dtype=torch.long)
    for s in range(0, n, 37):
        lab.auroc_update(hist, vals[s : s + 37], fmax, in_label[s : s + 37], held[s : s + 37])
    got = lab.auroc_from_hist(hist)
    for f in range(m):
        binned = torch.where(vals[:, f] > 0, 1 + (vals[:, f] / fmax[f] * 100).floor().clamp(max=100), 0)
        sel = held[:, f]
        want = brute_auroc(binned[sel & in_label[:, f]], binned[sel & ~in_label[:, f]])
        assert abs(got[f] - want) < 1e-9
        assert got[f] > 0.6


def test_auroc_none_without_both_groups():
    hist = torch.zeros(2, 1, lab.AUROC_BINS, dtype=torch.long)
    hist[1, 0, 3] = 5
    assert lab.auroc_from_hist(hist) == [None]


def test_class_labels_and_enrichment():
    names = placeholder_labels()
    image_class = torch.tensor([5, 5, 7, 9, 5, 7, 3, -1])
    top = torch.tensor([[0, 1, 2, 4, 5], [3, 6, 2, -1, -1], [7, -1, -1, -1, -1]])
    labels, mask = lab.class_labels(top, image_class, names)
    assert labels[0] == f"{names[5]} / {names[7]}"  # classes seen at least twice, most frequent first
    assert labels[1] == names[9]  # no repeats: the top image's class
    assert labels[2] == ""  # unknown class
    assert mask[5, 0] and mask[7, 0] and not mask[9, 0] and mask[9, 1] and not mask[:, 2].any()
    counts = torch.bincount(image_class[image_class >= 0], minlength=1008)
    enr = lab.class_enrichment(top, image_class, counts, names).classes[0]
    assert enr[0]["index"] == 5 and enr[0]["count"] == 3 and abs(enr[0]["enrichment"] - (3 / 5) / (3 / 7)) < 1e-9
    assert abs(enr[0]["p"] - 6 / 21) < 1e-9  # all 3 of class 5 among 5 drawn from 7: C(4,2) / C(7,5)
