"""Class enrichment of a direction's top images, and the hypergeometric tail the concept labels test with.

The top images' classes are true labels (wnid folders / file names) or the model's own top-1 predictions.
(The labels themselves are chosen on one half of the images in ``concepts.py`` and scored on the other in
``concept_records.py``.)

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

import numpy as np
import torch
from numba import njit
from torch import Tensor

LEVEL = 0.05  #: a class is significantly enriched at q <= LEVEL
CORRECTION = "Benjamini-Hochberg over every (direction, class) pair with at least one analysed image in the class"
TEST = "one-sided hypergeometric P(X >= count): the top images drawn without replacement from the analysed images"


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


@njit(cache=True)
def _hypergeom_sf_one(k: int, n: int, K: int, N: int) -> float:  # pragma: no cover - compiled
    lo, hi = max(0, n - (N - K)), min(n, K)
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    log_t = (math.lgamma(K + 1) - math.lgamma(k + 1) - math.lgamma(K - k + 1) + math.lgamma(N - K + 1)
             - math.lgamma(n - k + 1) - math.lgamma(N - K - n + k + 1)
             - (math.lgamma(N + 1) - math.lgamma(n + 1) - math.lgamma(N - n + 1)))  # fmt: skip
    term, total = 1.0, 1.0  # in units of the first term
    for x in range(k, hi):
        term *= (K - x) * (n - x) / ((x + 1.0) * (N - K - n + x + 1.0))
        total += term
        if term < 1e-17 * total and (K - x) * (n - x) < (x + 1.0) * (N - K - n + x + 1.0):
            break  # past the mode and negligible
    return min(1.0, math.exp(log_t + math.log(total)))


@njit(cache=True)
def _hypergeom_sf_many(k, n, K, N, out):  # pragma: no cover - compiled
    for i in range(k.shape[0]):
        out[i] = _hypergeom_sf_one(k[i], n[i], K[i], N[i])


def hypergeom_sf_many(k, n, K, N) -> np.ndarray:
    """``hypergeom_sf`` over arrays (compiled; terms by the pmf's ratio recursion, stopped once negligible)."""
    arrs = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.int64), np.broadcast(k, n, K, N).shape))
            for v in (k, n, K, N)]  # fmt: skip
    shape = arrs[0].shape
    out = np.empty(arrs[0].size)
    k_, n_, K_, N_ = (a.reshape(-1) for a in arrs)
    _hypergeom_sf_many(k_, n_, K_, N_, out)
    return out.reshape(shape)
