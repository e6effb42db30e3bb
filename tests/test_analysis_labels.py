"""Class enrichment of top images: counts, ratios and the exact hypergeometric tail."""

from __future__ import annotations

import torch

from inception_sae.analysis import labels as lab
from inception_sae.data.labels import placeholder_labels


def test_class_enrichment_counts_and_exact_tail():
    names = placeholder_labels()
    image_class = torch.tensor([5, 5, 7, 9, 5, 7, 3, -1])
    top = torch.tensor([[0, 1, 2, 4, 5], [3, 6, 2, -1, -1], [7, -1, -1, -1, -1]])
    counts = torch.bincount(image_class[image_class >= 0], minlength=1008)
    enr = lab.class_enrichment(top, image_class, counts, names).classes[0]
    assert enr[0]["index"] == 5 and enr[0]["count"] == 3 and abs(enr[0]["enrichment"] - (3 / 5) / (3 / 7)) < 1e-9
    assert abs(enr[0]["p"] - 6 / 21) < 1e-9  # all 3 of class 5 among 5 drawn from 7: C(4,2) / C(7,5)
