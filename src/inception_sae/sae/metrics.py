"""SAE quality metrics, computed one way everywhere (training logs, `eval`, benchmarks).

FVU = sum ||x - x_hat||^2 / sum ||x - mean_d(x)||^2 with the per-dimension mean.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from .kernels import batch_moments

DENSE_THRESHOLD = 0.1  #: a latent firing on more than this share of inputs counts as dense
DEAD_THRESHOLD = 1e-4  #: a latent firing on fewer than this share of training-distribution inputs counts as dead
Z95 = 1.959964  #: two-sided 95% normal quantile of the Wilson intervals


def _all_reduce(t: Tensor, distributed: bool) -> Tensor:
    if distributed:
        dist.all_reduce(t)
    return t


def total_variance(x: Tensor, distributed: bool = False) -> Tensor:
    """sum ||x - mean_d(x)||^2 over the (global) batch, per-dimension mean; detached scalar.

    Under data parallelism the sums are all-reduced, so every rank divides by the
    same global denominator and the averaged gradient equals the single-process one.
    """
    _, s, sq = batch_moments(x)
    return variance_from_moments(s, sq, x.shape[0], distributed)


def variance_from_moments(s: Tensor, sq: Tensor, n: int, distributed: bool = False) -> Tensor:
    """:func:`total_variance` from a batch's float64 column sums ``s``, sum of squares ``sq`` and size ``n``."""
    stats = torch.cat([s, sq.reshape(1), s.new_tensor([n])])
    stats = _all_reduce(stats, distributed)
    s, sq, count = stats[:-2], stats[-2], stats[-1]
    return (sq - (s * s).sum() / count).clamp_min(1e-12).float()


class _SquaredError(torch.autograd.Function):
    """sum((a - b)^2): forward one subtraction and one dot product, backward one multiply
    (autograd's ``(a - b).pow(2).sum()`` makes five passes over (B, d) and a strided gradient)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        r = a - b
        ctx.save_for_backward(r)
        flat = r.reshape(-1)
        return torch.dot(flat, flat)

    @staticmethod
    def backward(ctx, g: Tensor):
        (r,) = ctx.saved_tensors
        ga = r * (2 * g)
        return ga if ctx.needs_input_grad[0] else None, -ga if ctx.needs_input_grad[1] else None


def squared_error(a: Tensor, b: Tensor) -> Tensor:
    """sum((a - b)^2) as a scalar, differentiable in both."""
    return _SquaredError.apply(a, b)


def normalized_mse(x_hat: Tensor, x: Tensor, denom: Tensor, world: int = 1, sq_err: Tensor | None = None) -> Tensor:
    """Training loss: this rank's squared error over the global total variance (times world,
    because data-parallel gradients are averaged). ``sq_err``: that squared error, when the
    forward pass already formed it (``ForwardOutput.sq_err``)."""
    return (squared_error(x_hat, x) if sq_err is None else sq_err) * world / denom


def fvu(x_hat: Tensor, x: Tensor) -> float:
    """Fraction of variance unexplained on one batch (per-dimension mean)."""
    return float((x_hat - x).pow(2).sum() / total_variance(x))


class FVUAccumulator:
    """FVU over many batches without keeping them: sums of error, x and x^2."""

    def __init__(self, d: int) -> None:
        self.err = 0.0
        self.s = torch.zeros(d, dtype=torch.float64)
        self.sq = 0.0
        self.n = 0

    def add(self, x: Tensor, x_hat: Tensor) -> None:
        x64 = x.detach().double().cpu()
        self.err += float((x_hat.detach().double().cpu() - x64).pow(2).sum())
        self.s += x64.sum(0)
        self.sq += float((x64 * x64).sum())
        self.n += x.shape[0]

    @property
    def value(self) -> float:
        var = self.sq - float((self.s * self.s).sum()) / max(self.n, 1)
        return self.err / max(var, 1e-12)


class FiringStats(NamedTuple):
    """Per-latent firing summary over a set of inputs."""

    frequency: np.ndarray  #: (m,) share of inputs where each latent fires
    dead_fraction: float  #: share of latents that never fired
    dense_fraction: float  #: share firing on more than DENSE_THRESHOLD of inputs


def firing_stats(counts: Tensor, n_inputs: int) -> FiringStats:
    """From per-latent firing counts (m,) over ``n_inputs`` inputs."""
    freq = counts.double().cpu().numpy() / max(n_inputs, 1)
    return FiringStats(freq, float((freq == 0).mean()), float((freq > DENSE_THRESHOLD).mean()))


def wilson(counts: np.ndarray, n: int, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score 95% interval of each rate ``counts / n`` (a count of 0 gives an upper bound of ~3.84 / n)."""
    p = counts / max(n, 1)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def firing_summary(counts: Tensor | np.ndarray, n: int, on: str) -> dict:
    """Dead and dense latents with the sample they rest on: one definition for every stage.

    Dead: firing on fewer than ``DEAD_THRESHOLD`` of the inputs; dense: on more than ``DENSE_THRESHOLD``.
    A latent is counted on the side its observed rate falls; ``interval`` is [latents surely on that side
    (their Wilson 95% interval lies beyond the threshold), those plus the ones whose interval straddles it],
    as shares of all latents. With fewer inputs than it takes a silent latent's interval to clear the dead
    threshold (~3.84 / DEAD_THRESHOLD = 38,415), ``status`` says "too few rows" and the dead share is None.
    ``never_fired`` is the plain count of latents with no firing on these ``n`` inputs (it grows as n shrinks).
    """
    c = np.asarray(counts.cpu() if isinstance(counts, Tensor) else counts, dtype=float)
    m = max(len(c), 1)
    if n <= 0:
        return {"rows": 0, "on": on, "status": "no rows", "dead_fraction": None, "dense_fraction": None}
    lo, hi = wilson(c, n)
    rate = c / n
    min_rows = int(np.ceil(Z95 * Z95 / DEAD_THRESHOLD))
    enough = n >= min_rows

    def side(below: np.ndarray, sure: np.ndarray, unsure: np.ndarray) -> dict:
        interval = [float(sure.sum() / m), float((sure | unsure).sum() / m)]
        return {"fraction": float(below.sum() / m), "interval": interval}

    dead = side(rate < DEAD_THRESHOLD, hi < DEAD_THRESHOLD, (lo < DEAD_THRESHOLD) & (hi >= DEAD_THRESHOLD))
    dense = side(rate > DENSE_THRESHOLD, lo > DENSE_THRESHOLD, (lo <= DENSE_THRESHOLD) & (hi > DENSE_THRESHOLD))
    return {
        "rows": int(n), "on": on, "latents": len(c), "min_rows": min_rows,
        "status": "ok" if enough else f"too few rows ({n:,} < {min_rows:,}) to tell a dead latent from a rare one",
        "dead_threshold": DEAD_THRESHOLD, "dense_threshold": DENSE_THRESHOLD,
        "dead_fraction": dead["fraction"] if enough else None, "dead_interval": dead["interval"] if enough else None,
        "dense_fraction": dense["fraction"], "dense_interval": dense["interval"],
        "never_fired": int((c == 0).sum()),
        "definition": f"dead: firing on < {DEAD_THRESHOLD:g} of the inputs, dense: on > {DENSE_THRESHOLD:g}; "
        "interval: latents surely on that side (Wilson 95%) to those plus the undecided",
    }  # fmt: skip


def frequency_histogram(freq: np.ndarray, bins: int = 40) -> dict:
    """Log-spaced histogram of firing frequencies (dead latents counted apart)."""
    live = freq[freq > 0]
    lo = max(float(live.min()) if live.size else 1e-8, 1e-10)
    edges = np.logspace(np.log10(lo), 0.0, bins + 1)
    counts, _ = np.histogram(live, bins=edges)
    return {"log10_edges": np.log10(edges).tolist(), "counts": counts.tolist(), "dead": int((freq == 0).sum())}


def fire_counts(indices: Tensor, values: Tensor, m: int) -> Tensor:
    """(m,) how many inputs each latent fired on (value > 0) in this batch."""
    live = (values > 0).flatten().to(torch.int64)
    return torch.zeros(m, dtype=torch.int64, device=indices.device).index_add_(0, indices.flatten(), live)


#: Steps a training summary averages its FVU, L0 and dense fraction over (the last batch alone is noisy).
SUMMARY_WINDOW = 100


class RecentMeans:
    """The last ``window`` steps' metrics, kept as JSON-able rows so that a checkpoint carries them."""

    def __init__(self, window: int = SUMMARY_WINDOW) -> None:
        self.window = window
        self.rows: list[dict[str, float]] = []

    def add(self, stats: dict[str, float]) -> None:
        self.rows.append(dict(stats))
        del self.rows[: -self.window]

    def mean(self, key: str) -> float | None:
        """Mean of ``key`` over the window (None before the first step)."""
        vals = [r[key] for r in self.rows if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    def summary(self) -> dict[str, float | int | None]:
        """A training summary's FVU, dense fraction and L0: means over the window, and its length in steps."""
        return {"final_fvu": self.mean("fvu"), "dense_fraction": self.mean("dense_fraction"),
                "l0": self.mean("l0"), "summary_window_steps": len(self.rows)}  # fmt: skip

    def state_dict(self) -> list[dict[str, float]]:
        return [dict(r) for r in self.rows]

    def load_state_dict(self, rows: list[dict[str, float]]) -> None:
        self.rows = [dict(r) for r in rows][-self.window :]
