"""Scores of a concept label on the held-out half, their permutation baselines and p-values.

Activations are binned in twentieths of the direction's maximum (bin 0: not firing). F1 and IoU treat the concept
as a detector of firing; AUPRC ranks the concept's images by activation (ties share a threshold, scikit-learn's
convention); Pearson correlates the concept's indicator with the activation; AUROC is only secondary.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .labels import hypergeom_sf_many

LEVELS = (0.0, 0.1, 0.25, 0.5)  #: firing levels, fractions of the direction's max (0: above zero)
FINE = 20  #: activation bins on the score half: 0 = not firing, 1 + floor(20 a / max) otherwise (capped at 20)
NB = FINE + 1
LEVEL_BINS = tuple(1 + round(t * FINE) for t in LEVELS)  #: first fine bin at or above each level
N_PERM = 199  #: Monte Carlo permutations for AUPRC (a secondary test: p resolves to 1/200; F1's is exact)

__all__ = ["FINE", "LEVELS", "LEVEL_BINS", "NB", "N_PERM", "hypergeom_sf_many"]


def fine_bins(a: Tensor, top: Tensor) -> Tensor:
    """Fine activation bin (0: not firing) of activations ``a`` (..., m) against maxima ``top`` (m,)."""
    rel = a / top.clamp_min(1e-30)
    b = 1 + (rel * FINE).floor().long().clamp(0, FINE - 1)
    return torch.where(a > 0, b, torch.zeros_like(b))


# ----------------------------------------------------------------------------------------------------- scores


def f1_score(tp, k, n_fire):
    """F1 of "in the concept" (``k`` units) as a detector of firing (``n_fire`` units), ``tp`` in both."""
    den = k + n_fire
    return np.where(den > 0, 2 * tp / np.maximum(den, 1e-12), 0.0)


def iou_score(tp, k, n_fire):
    den = k + n_fire - tp
    return np.where(den > 0, tp / np.maximum(den, 1e-12), 0.0)


def average_precision(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUPRC of ranking by binned activation: (..., bins) counts of concept / other units per bin (bin 0 lowest).

    Thresholds at every bin from the top (tied units share one threshold, scikit-learn's convention):
    AP = sum over thresholds of (recall gain) x (precision at that threshold). NaN without positives.
    """
    p = np.cumsum(pos[..., ::-1], -1)
    n = np.cumsum(neg[..., ::-1], -1)
    total = p[..., -1:]
    prec = np.where(p + n > 0, p / np.maximum(p + n, 1), 0.0)
    gain = pos[..., ::-1] / np.maximum(total, 1)
    ap = (gain * prec).sum(-1)
    return np.where(total[..., 0] > 0, ap, np.nan)


def auroc_binned(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """P(concept unit's activation > another's), ties one half, from binned counts (..., bins)."""
    below = np.cumsum(neg, -1) - neg
    num = (pos * (below + 0.5 * neg)).sum(-1)
    den = pos.sum(-1) * neg.sum(-1)
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def permuted_ap(total: np.ndarray, k: np.ndarray, rng: np.random.Generator, n_perm: int = N_PERM) -> np.ndarray:
    """(m, n_perm) AUPRC of ``k`` positives drawn without replacement from units binned as ``total`` (m, bins).

    The draw per bin is sequential hypergeometric, vectorised over directions and permutations.
    """
    m, nb = total.shape
    pos = np.zeros((m, n_perm, nb), dtype=np.int64)
    left_n = np.repeat(total.sum(1, keepdims=True), n_perm, 1).astype(np.int64)
    left_k = np.repeat(k.reshape(-1, 1), n_perm, 1).astype(np.int64)
    for b in range(nb):
        good = np.repeat(total[:, b : b + 1], n_perm, 1).astype(np.int64)
        bad = left_n - good
        draw = np.where((left_k > 0) & (good > 0), rng.hypergeometric(np.maximum(good, 1), np.maximum(bad, 0) + 0,
                                                                       np.maximum(left_k, 1)), 0)  # fmt: skip
        draw = np.minimum(draw, np.minimum(good, left_k))
        pos[:, :, b] = draw
        left_k -= draw
        left_n -= good
    neg = total[:, None, :] - pos
    return average_precision(pos, neg)


def slot_scores(pos: np.ndarray, neg: np.ndarray, level_bin, sum_in: np.ndarray, moments: np.ndarray) -> dict:
    """Scores of concepts from their score-half histograms: pos / neg (..., NB) images in / out of the concept per
    fine bin, ``level_bin`` the first firing bin (broadcast to ...), ``sum_in`` (...) the activation summed over
    the concept's images, ``moments`` (..., 3) the images' n, sum a, sum a^2. F1 / IoU baselines are their value at
    the permutation mean of the overlap (n_fire k / n)."""
    above = np.arange(NB) >= np.asarray(level_bin)[..., None]
    tp = (pos * above).sum(-1)
    n_fire = ((pos + neg) * above).sum(-1)
    k, n = pos.sum(-1), (pos + neg).sum(-1)
    e_tp = np.where(n > 0, n_fire * k / np.maximum(n, 1), 0.0)
    cnt, sa, sa2 = moments[..., 0], moments[..., 1], moments[..., 2]
    mean = sa / np.maximum(cnt, 1)
    var_a = sa2 - cnt * mean**2
    var_c = k * (1 - k / np.maximum(cnt, 1))
    cov = sum_in - k * mean
    r = np.where((var_a > 0) & (var_c > 0), cov / np.sqrt(np.maximum(var_a * var_c, 1e-300)), np.nan)
    return {"tp": tp, "n_fire": n_fire, "k": k, "n": n, "f1": f1_score(tp, k, n_fire), "iou": iou_score(tp, k, n_fire),
            "f1_baseline": f1_score(e_tp, k, n_fire), "iou_baseline": iou_score(e_tp, k, n_fire),
            "auprc": average_precision(pos, neg), "auroc": auroc_binned(pos, neg), "pearson": r}  # fmt: skip


def ap_permutation(total: np.ndarray, k: np.ndarray, ap: np.ndarray, seed: int, chunk: int = 128):
    """(baseline, p) per direction: mean AUPRC of ``N_PERM`` label permutations, and (1 + #perm >= ap) / (N + 1)."""
    rng = np.random.default_rng(seed)
    base, p = np.full(len(k), np.nan), np.ones(len(k))
    for lo in range(0, len(k), chunk):
        sl = slice(lo, lo + chunk)
        ok = k[sl] > 0
        if not ok.any():
            continue
        perm = permuted_ap(total[sl][ok], k[sl][ok], rng)
        base[sl][ok] = perm.mean(1)
        p[sl][ok] = (1 + (perm >= ap[sl][ok, None] - 1e-12).sum(1)) / (N_PERM + 1)
    return base, p


def normal_sf(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * np.vectorize(math.erfc)(z / math.sqrt(2))
