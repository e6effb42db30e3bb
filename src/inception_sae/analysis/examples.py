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

The same class keeps a second family per feature on the positions the SAE was
trained on: fed with per-image maxima over those positions only, it has its own
max, top-N and intervals. A family can also carry a flag per kept example (is
its argmax a training position?), offered alongside the values.
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
    def empty(cls, m: int, n_top: int = 20, n_intervals: int = 10, per_interval: int = 5, seed: int = 0,
              flags: bool = False) -> Family:  # fmt: skip
        """A family of ``m`` directions; ``flags``: keep a bool per example (offered with each batch)."""
        return cls(
            FeatureStats.empty(m), Keeper.empty(m, n_top, flags=flags), None, None, n_intervals, per_interval,
            torch.Generator().manual_seed(seed),
        )  # fmt: skip

    @property
    def m(self) -> int:
        return self.top.score.shape[0]

    @property
    def flags(self) -> bool:
        """Whether the family keeps a flag per example."""
        return self.top.flag is not None

    def offer_top(self, vmax: Tensor, pos: Tensor, image: Tensor, flag: Tensor | None = None) -> None:
        """Pass 1. vmax, pos (B, m) per-image maxima; image (B,) global image indices; flag (B, m) bool."""
        score = torch.where(vmax > 0, vmax, torch.full_like(vmax, float("-inf"))).T  # (m, B)
        img = image.view(1, -1).expand(self.m, -1)
        self.top.update(score, img, pos.T, vmax.T, None if flag is None else flag.T)

    def start_pass2(self) -> None:
        """Allocate interval reservoirs now that every feature's max is known."""
        self.intervals = Keeper.empty(self.m * self.n_intervals, self.per_interval, flags=self.flags)
        self.interval_counts = torch.zeros(self.m, self.n_intervals, dtype=torch.long)

    def offer_intervals(self, vmax: Tensor, pos: Tensor, image: Tensor, flag: Tensor | None = None) -> None:
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
        marks = None
        if flag is not None:
            marks = torch.zeros(shape, dtype=torch.bool).index_put_((slot, col), flag[on])
        self.intervals.update(score, img, p, val, marks)

    def top_examples(self, f: int) -> list[tuple[int, int, float]]:
        """(image, flat pos, value) of feature ``f``'s top images, highest first."""
        return self.top.entries(f)

    def top_flags(self, f: int) -> list[bool] | None:
        """The flags of :meth:`top_examples`, in order (None when the family keeps none)."""
        return self.top.entry_flags(f)

    def interval_examples(self, f: int) -> list[dict]:
        """Feature ``f``'s intervals: range, counts, share of firing images, sampled examples (and their flags)."""
        assert self.intervals is not None and self.interval_counts is not None
        vmax = float(self.stats.vmax[f])
        counts = self.interval_counts[f]
        total = max(int(counts.sum()), 1)
        out = []
        for j in range(self.n_intervals):
            slot = f * self.n_intervals + j
            entries = self.intervals.entries(slot)
            marks = self.intervals.entry_flags(slot)
            order = sorted(range(len(entries)), key=lambda i: -entries[i][2])
            out.append(
                {
                    "lo": vmax * j / self.n_intervals,
                    "hi": vmax * (j + 1) / self.n_intervals,
                    "count": int(counts[j]),
                    "share": int(counts[j]) / total,
                    "examples": [entries[i] for i in order],
                    "flags": None if marks is None else [marks[i] for i in order],
                }
            )
        return out

    def nbytes(self) -> int:
        n = self.stats.nbytes() + self.top.nbytes()
        if self.intervals is not None and self.interval_counts is not None:
            n += self.intervals.nbytes() + self.interval_counts.numel() * 8
        return n
