"""Dataset examples across the activation spectrum, streamed in two passes.

Pass 1 keeps per-feature statistics and the exact top-N images (a per-feature
top-N by value). The interval boundaries (10 equal-width intervals from 0 to
the feature's max, sae_vis's convention) are only known once the max is, so
pass 2 re-reads the images and keeps, per (feature, interval), the items with
the largest independent uniform random keys: an exact uniform sample without
replacement of the images whose value falls in that interval, and exact
interval counts. Two passes cost a second forward pass over the images; in
exchange the examples are exact rather than approximated from a candidate
reservoir. State is (features x capacity), independent of the image count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .streaming import FeatureStats, Keeper, interval_index


@dataclass
class Family:
    """Streaming state of one family of directions (SAE features, or neurons)."""

    stats: FeatureStats
    top: Keeper  #: (m, n_top) by value
    intervals: Keeper | None = None  #: (m * n_intervals, per_interval) by random key (pass 2)
    interval_counts: Tensor | None = None  #: (m, n_intervals) images per interval (pass 2)
    n_intervals: int = 10
    per_interval: int = 5
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    @classmethod
    def empty(cls, m: int, n_top: int = 20, n_intervals: int = 10, per_interval: int = 5, seed: int = 0) -> Family:
        return cls(
            FeatureStats.empty(m), Keeper.empty(m, n_top), None, None, n_intervals, per_interval,
            torch.Generator().manual_seed(seed),
        )  # fmt: skip

    @property
    def m(self) -> int:
        return self.top.score.shape[0]

    def offer_top(self, vmax: Tensor, pos: Tensor, image: Tensor) -> None:
        """Pass 1. vmax, pos (B, m) per-image maxima; image (B,) global image indices."""
        score = torch.where(vmax > 0, vmax, torch.full_like(vmax, float("-inf"))).T  # (m, B)
        img = image.view(1, -1).expand(self.m, -1)
        self.top.update(score, img, pos.T, vmax.T)

    def start_pass2(self) -> None:
        """Allocate interval reservoirs now that every feature's max is known."""
        self.intervals = Keeper.empty(self.m * self.n_intervals, self.per_interval)
        self.interval_counts = torch.zeros(self.m, self.n_intervals, dtype=torch.long)

    def offer_intervals(self, vmax: Tensor, pos: Tensor, image: Tensor) -> None:
        """Pass 2: route each (image, feature) with value > 0 to its interval's reservoir."""
        assert self.intervals is not None and self.interval_counts is not None, "call start_pass2 first"
        b, m, n_int = vmax.shape[0], self.m, self.n_intervals
        iv = interval_index(vmax, self.stats.vmax, n_int)  # (B, m)
        on = vmax > 0
        feat = torch.arange(m).expand(b, m)
        slot = (feat * n_int + iv)[on]  # (P,)
        col = torch.arange(b).view(-1, 1).expand(b, m)[on]
        self.interval_counts += torch.bincount(slot, minlength=m * n_int).view(m, n_int)
        keys = torch.rand(slot.shape[0], generator=self.generator)
        shape = (m * n_int, b)
        score = torch.full(shape, float("-inf")).index_put_((slot, col), keys)
        img = torch.full(shape, -1, dtype=torch.long).index_put_((slot, col), image[col])
        p = torch.full(shape, -1, dtype=torch.long).index_put_((slot, col), pos[on])
        val = torch.zeros(shape).index_put_((slot, col), vmax[on])
        self.intervals.update(score, img, p, val)

    def top_examples(self, f: int) -> list[tuple[int, int, float]]:
        """(image, flat pos, value) of feature ``f``'s top images, highest first."""
        return self.top.entries(f)

    def interval_examples(self, f: int) -> list[dict]:
        """Feature ``f``'s intervals: range, counts, share of firing images, sampled examples."""
        assert self.intervals is not None and self.interval_counts is not None
        vmax = float(self.stats.vmax[f])
        counts = self.interval_counts[f]
        total = max(int(counts.sum()), 1)
        out = []
        for j in range(self.n_intervals):
            ex = sorted(self.intervals.entries(f * self.n_intervals + j), key=lambda e: -e[2])
            out.append(
                {
                    "lo": vmax * j / self.n_intervals,
                    "hi": vmax * (j + 1) / self.n_intervals,
                    "count": int(counts[j]),
                    "share": int(counts[j]) / total,
                    "examples": ex,
                }
            )
        return out

    def nbytes(self) -> int:
        n = self.stats.nbytes() + self.top.nbytes()
        if self.intervals is not None and self.interval_counts is not None:
            n += self.intervals.nbytes() + self.interval_counts.numel() * 8
        return n
