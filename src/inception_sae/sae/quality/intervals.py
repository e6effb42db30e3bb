"""95% intervals for the quality metrics: Wilson for a share of counts, percentile bootstrap otherwise."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import bootstrap

from ..metrics import wilson

#: Bootstrap resamples behind every bootstrap interval (percentile method, seeded).
RESAMPLES = 999


def share(count: int, n: int) -> dict:
    """``count / n`` with its Wilson 95% interval and ``n`` (rate None when ``n`` is 0)."""
    if n <= 0:
        return {"rate": None, "interval": None, "n": 0, "count": int(count)}
    lo, hi = wilson(np.array([float(count)]), n)
    return {"rate": count / n, "interval": [float(lo[0]), float(hi[0])], "n": int(n), "count": int(count)}


def mean_interval(values: np.ndarray, seed: int = 0) -> dict:
    """Mean of finite ``values`` with a percentile-bootstrap 95% interval and ``n``."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "interval": None, "n": 0}
    if v.size == 1 or np.ptp(v) == 0:
        return {"mean": float(v.mean()), "interval": [float(v.mean())] * 2, "n": int(v.size)}
    res = bootstrap((v,), np.mean, n_resamples=RESAMPLES, method="percentile", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return {"mean": float(v.mean()), "interval": [float(ci.low), float(ci.high)], "n": int(v.size)}


def paired_interval(stat: Callable[[np.ndarray, np.ndarray], float], a: np.ndarray, b: np.ndarray,
                    seed: int = 0) -> list[float]:  # fmt: skip
    """Percentile-bootstrap 95% interval of ``stat(a, b)`` over rows resampled in pairs."""
    a, b = np.asarray(a), np.asarray(b)
    value = float(stat(a, b))
    if len(a) < 2:
        return [value, value]

    def vec(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        x2, y2 = np.atleast_2d(x), np.atleast_2d(y)
        return np.array([stat(p, q) for p, q in zip(x2, y2, strict=True)])

    res = bootstrap((a, b), vec, paired=True, vectorized=True, n_resamples=RESAMPLES, method="percentile",
                    rng=np.random.default_rng(seed))  # fmt: skip
    lo, hi = res.confidence_interval
    return [float(lo) if np.isfinite(lo) else value, float(hi) if np.isfinite(hi) else value]
