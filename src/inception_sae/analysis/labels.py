"""Offline labels from classes: enrichment of a feature's top images, scored on held-out images.

A label is "label from classes": the most frequent classes among the feature's
top images (true labels from wnid folders/file names, else the model's own
top-1 predictions). Its score is the AUROC of the rule "the image belongs to
one of the label's classes" for the feature's per-image activation on
held-out images (all images outside the feature's top set): P(activation of an
in-class image > that of an out-of-class image), ties counting one half,
computed from histograms binned at 1/100 of the feature's max.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

AUROC_BINS = 102  #: 0: no firing; 1..101: value / max in 1/100 steps


def class_labels(top_images: Tensor, image_class: Tensor, names, max_classes: int = 3) -> tuple[list[str], Tensor]:
    """Label strings and an in-label mask (n_classes, m) from top images (m, n_top) (-1 = empty)."""
    m = top_images.shape[0]
    mask = torch.zeros(len(names), m, dtype=torch.bool)
    labels = []
    for f in range(m):
        imgs = top_images[f][top_images[f] >= 0]
        cls = [int(c) for c in image_class[imgs].tolist() if c >= 0]
        if not cls:
            labels.append("")
            continue
        counts = Counter(cls).most_common()  # ties keep first-seen order, i.e. the higher-ranked image
        keep = [c for c, n in counts if n >= 2][:max_classes] or [cls[0]]
        mask[keep, f] = True
        labels.append(" / ".join(names[c] for c in keep))
    return labels, mask


def enrichment(top_images: Tensor, image_class: Tensor, class_counts: Tensor, f: int, names, n: int = 5) -> list[dict]:
    """Classes over-represented among feature ``f``'s top images: count, share, ratio to base rate."""
    imgs = top_images[f][top_images[f] >= 0]
    cls = [int(c) for c in image_class[imgs].tolist() if c >= 0]
    total = max(int(class_counts.sum()), 1)
    out = []
    for c, k in Counter(cls).most_common(n):
        base = int(class_counts[c]) / total
        out.append(
            {
                "index": c,
                "name": names[c],
                "count": k,
                "share": k / len(cls),
                "enrichment": (k / len(cls)) / max(base, 1e-12),
            }
        )
    return out


def auroc_update(hist: Tensor, vmax_img: Tensor, fmax: Tensor, in_label: Tensor, held_out: Tensor) -> None:
    """Add a batch to ``hist`` (2, m, AUROC_BINS): [0] in-label images, [1] others.

    vmax_img, in_label, held_out: (B, m); fmax (m,) the features' maxima.
    """
    m = vmax_img.shape[1]
    rel = (vmax_img / fmax.clamp_min(1e-30)).clamp(0, 1)
    b = torch.where(vmax_img > 0, 1 + (rel * 100).floor().long(), torch.zeros_like(rel, dtype=torch.long))
    feat = torch.arange(m).expand_as(b)
    for row, sel in ((0, held_out & in_label), (1, held_out & ~in_label)):
        hist[row] += torch.bincount((feat * AUROC_BINS + b)[sel], minlength=m * AUROC_BINS).view(m, AUROC_BINS)


def auroc_from_hist(hist: Tensor) -> list[float | None]:
    """(2, m, bins) -> per-feature AUROC (None without both groups)."""
    pos, neg = hist[0].double(), hist[1].double()
    below = torch.cumsum(neg, 1) - neg  # negatives in lower bins
    num = (pos * (below + 0.5 * neg)).sum(1)
    den = pos.sum(1) * neg.sum(1)
    return [float(n / d) if d > 0 else None for n, d in zip(num, den, strict=True)]
