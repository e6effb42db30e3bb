"""Offline labels from classes: enrichment of a feature's top images, tested, and scored on held-out images.

A label is "label from classes": the most frequent classes among the feature's
top images (true labels from wnid folders/file names, else the model's own
top-1 predictions). Its score is the AUROC of the rule "the image belongs to
one of the label's classes" for the feature's per-image activation on
held-out images (all images outside the feature's top set): P(activation of an
in-class image > that of an out-of-class image), ties counting one half,
computed from histograms binned at 1/100 of the feature's max.

Enrichment test: for a class seen k times among the feature's n top images (those with a known class), p is the
exact one-sided hypergeometric tail P(X >= k) when the n are drawn without replacement from the N analysed images
with a known class, K of them in the class. A share over the base rate alone is no evidence: with one image per
class, any class among the top images shows x(N/n). Correction: Benjamini-Hochberg over the family of every
(feature, class) pair with K >= 1 (every class that could have appeared, e.g. 1,000 x features), not only the
pairs seen: an unseen class has p = 1 and only a seen one can reach significance, so testing the seen pairs against
the full family size is exactly BH over the family. One family across features because the dashboard is read
across features: q bounds the expected share of false class labels among all those it marks (and, with no real
enrichment anywhere, the chance of marking any); a per-feature family would let false labels grow with m.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

AUROC_BINS = 102  #: 0: no firing; 1..101: value / max in 1/100 steps
LEVEL = 0.05  #: a class is significantly enriched at q <= LEVEL
CORRECTION = "Benjamini-Hochberg over every (direction, class) pair with at least one analysed image in the class"
TEST = "one-sided hypergeometric P(X >= count): the top images drawn without replacement from the analysed images"


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


def log_comb(n: int, k: int) -> float:
    """log C(n, k) from math.lgamma."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@lru_cache(maxsize=1 << 16)
def hypergeom_sf(k: int, n: int, K: int, N: int) -> float:
    """P(X >= k) for X ~ Hypergeometric(N images, K in the class, n drawn), summed exactly in log space."""
    lo, hi = max(0, n - (N - K)), min(n, K)
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    logs = [log_comb(K, x) + log_comb(N - K, n - x) for x in range(k, hi + 1)]
    top = max(logs)
    log_p = top + math.log(sum(math.exp(v - top) for v in logs)) - log_comb(N, n)
    return min(1.0, math.exp(log_p))


def bh_qvalues(p: list[float], family: int) -> list[float]:
    """Benjamini-Hochberg q-values of ``p`` within a family of ``family`` tests whose other members have p = 1.

    The unseen tests rank after every given one and their p*family/rank >= 1, so they change no q below 1.
    """
    if not p:
        return []
    order = sorted(range(len(p)), key=p.__getitem__)
    q = [1.0] * len(p)
    run = 1.0
    for rank in range(len(p), 0, -1):
        i = order[rank - 1]
        run = min(run, p[i] * family / rank)
        q[i] = min(run, 1.0)
    return q


@dataclass
class Enrichment:
    """Per-direction class enrichment of the top images, p and BH q over the whole family."""

    classes: list[list[dict]]  #: per direction: the n most frequent classes, then any further significant ones
    significant: list[bool]  #: some class has q <= LEVEL
    family_size: int  #: directions x classes with at least one analysed image
    tested: int  #: pairs seen among the top images (the only ones with p < 1)
    images: int  #: N, analysed images with a known class

    def summary(self, what: str = "features") -> dict:
        return {f"significant_{what}": sum(self.significant), "family_size": self.family_size,
                "pairs_seen": self.tested, "level": LEVEL, "test": TEST, "correction": CORRECTION,
                "images": self.images}  # fmt: skip


def class_enrichment(top_images: Tensor, image_class: Tensor, class_counts: Tensor, names, n: int = 5) -> Enrichment:
    """Count, share, ratio to base rate, hypergeometric p and BH q of the classes of every direction's top images.

    top_images (m, n_top) image indices (-1 = empty); image_class (-1 = unknown); class_counts the analysed images
    per class (the population the top images are drawn from).
    """
    counts = [int(c) for c in class_counts.tolist()]
    N = sum(counts)
    family = top_images.shape[0] * sum(c > 0 for c in counts)
    cls_top = torch.where(top_images >= 0, image_class[top_images.clamp_min(0)], -1).tolist()
    seen: list[list[tuple[int, int]]] = []
    flat_p: list[float] = []
    for row in cls_top:
        cls = [c for c in row if c >= 0]
        pairs = Counter(cls).most_common()  # ties keep first-seen order, i.e. the higher-ranked image
        seen.append(pairs)
        flat_p += [hypergeom_sf(k, len(cls), counts[c], N) for c, k in pairs]
    flat_q = bh_qvalues(flat_p, family)
    out, sig, at = [], [], 0
    for pairs in seen:
        total = sum(k for _, k in pairs)
        rows = []
        for j, (c, k) in enumerate(pairs):
            p, q = flat_p[at + j], flat_q[at + j]
            if j < n or q <= LEVEL:
                rows.append({"index": c, "name": names[c], "count": k, "share": k / total,
                             "enrichment": (k / total) / max(counts[c] / max(N, 1), 1e-12),
                             "class_images": counts[c], "p": p, "q": q})  # fmt: skip
        at += len(pairs)
        out.append(rows)
        sig.append(any(r["q"] <= LEVEL for r in rows))
    return Enrichment(out, sig, family, len(flat_p), N)


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
