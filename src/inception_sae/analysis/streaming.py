"""Streaming per-feature accumulators with state independent of the image count.

Everything here takes tensors, so it is tested without a model. The unit of an
"example" is an image: a feature's value on an image is its maximum over the
layer's spatial positions, remembered with the argmax position (Gorton's mixed5b
dashboards; sae_vis's top/interval examples).

Memory: every accumulator holds (slots x capacity) tensors; one batch adds a
dense (B, m) matrix of per-image maxima, never an (images x features) matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Log-spaced histogram edges of positive activations (raw units), shared by all features.
HIST_LO, HIST_HI, HIST_BINS = 1e-4, 1e4, 64


def image_maxima(values: Tensor, indices: Tensor, n_images: int, hw: int, m: int) -> tuple[Tensor, Tensor]:
    """Per-image maxima of sparse codes over positions.

    values, indices: (B*hw, k) codes of ``n_images`` images (rows image-major).
    Returns ``vmax`` (B, m) float (0 where the feature never fires in the image)
    and ``pos`` (B, m) long: the first flat position (y*W + x) attaining the max
    (-1 where it never fires).
    """
    n, k = values.shape
    rows = torch.arange(n, device=values.device)
    img = (rows // hw).unsqueeze(1).expand(n, k)  # (N, k)
    flat = (img * m + indices).reshape(-1)  # (N*k,) index into (B*m,)
    v = values.reshape(-1).float().clamp_min(0)
    vmax = torch.zeros(n_images * m, device=values.device).scatter_reduce(0, flat, v, "amax", include_self=True)
    position = (rows % hw).unsqueeze(1).expand(n, k).reshape(-1)
    hit = (v > 0) & (v == vmax[flat])
    big = torch.full((n_images * m,), hw, device=values.device, dtype=torch.long)
    pos = big.scatter_reduce(0, flat[hit], position[hit], "amin", include_self=True)
    pos = torch.where(pos == hw, torch.full_like(pos, -1), pos)
    return vmax.view(n_images, m), pos.view(n_images, m)


def dense_maxima(acts: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image maxima of dense maps (neurons): acts (B, C, H, W) -> vmax, pos (B, C)."""
    flat = acts.flatten(2)  # (B, C, HW)
    vmax, pos = flat.max(dim=2)
    vmax = vmax.clamp_min(0)
    return vmax, torch.where(vmax > 0, pos, torch.full_like(pos, -1))


@dataclass
class Keeper:
    """For each of ``slots`` slots, the ``capacity`` candidates with the largest scores.

    One structure serves both top examples (score = value) and uniform
    reservoirs (score = an independent uniform random key: the items with the
    largest keys are a uniform sample without replacement, Efraimidis-Spirakis
    with equal weights). Empty entries have score -inf and image -1.
    """

    score: Tensor  #: (S, R) float
    image: Tensor  #: (S, R) long, global image index
    pos: Tensor  #: (S, R) long, flat position on the layer grid
    value: Tensor  #: (S, R) float activation
    #: (S, R) bool mark carried with each item (whether its position is a training position); None: not kept
    flag: Tensor | None = None

    @classmethod
    def empty(cls, slots: int, capacity: int, device: str | torch.device = "cpu", flags: bool = False) -> Keeper:
        return cls(
            torch.full((slots, capacity), float("-inf"), device=device),
            torch.full((slots, capacity), -1, dtype=torch.long, device=device),
            torch.full((slots, capacity), -1, dtype=torch.long, device=device),
            torch.zeros(slots, capacity, device=device),
            torch.zeros(slots, capacity, dtype=torch.bool, device=device) if flags else None,
        )

    @property
    def capacity(self) -> int:
        return self.score.shape[1]

    def update(self, score: Tensor, image: Tensor, pos: Tensor, value: Tensor, flag: Tensor | None = None) -> None:
        """Offer one batch of candidates: each argument (S, B); score -inf means "no candidate".

        ``flag`` (S, B) bool is required when the keeper keeps flags, and ignored otherwise.
        """
        all_score = torch.cat([self.score, score], dim=1)  # (S, R + B)
        top, idx = all_score.topk(self.capacity, dim=1)
        self.image = torch.cat([self.image, image], 1).gather(1, idx)
        self.pos = torch.cat([self.pos, pos], 1).gather(1, idx)
        self.value = torch.cat([self.value, value], 1).gather(1, idx)
        if self.flag is not None:
            assert flag is not None, "this keeper keeps a flag per item"
            self.flag = torch.cat([self.flag, flag], 1).gather(1, idx)
        self.score = top
        self.image = torch.where(top > float("-inf"), self.image, torch.full_like(self.image, -1))  # empty stays empty

    def entries(self, slot: int) -> list[tuple[int, int, float]]:
        """(image, pos, value) of a slot's filled entries, best score first."""
        keep = self.image[slot] >= 0
        return list(
            zip(
                self.image[slot][keep].tolist(),
                self.pos[slot][keep].tolist(),
                self.value[slot][keep].tolist(),
                strict=True,
            )
        )

    def entry_flags(self, slot: int) -> list[bool] | None:
        """The flags of :meth:`entries`, in the same order (None when the keeper keeps none)."""
        if self.flag is None:
            return None
        return self.flag[slot][self.image[slot] >= 0].tolist()

    def nbytes(self) -> int:
        kept = (self.score, self.image, self.pos, self.value) + (() if self.flag is None else (self.flag,))
        return sum(t.numel() * t.element_size() for t in kept)


@dataclass
class FeatureStats:
    """Counts, sums, maxima and a log-spaced histogram per feature (pass 1)."""

    positions: int  #: positions seen (all images)
    images: int  #: images seen
    fire_pos: Tensor  #: (m,) positions where the feature fires (> 0)
    fire_img: Tensor  #: (m,) images where it fires somewhere
    total: Tensor  #: (m,) float64 sum of activations
    vmax: Tensor  #: (m,) max activation
    hist: Tensor  #: (m, HIST_BINS + 2) counts of positive activations: underflow, bins, overflow

    @classmethod
    def empty(cls, m: int, device: str | torch.device = "cpu") -> FeatureStats:
        z = torch.zeros(m, dtype=torch.long, device=device)
        return cls(
            0, 0, z, z.clone(), torch.zeros(m, dtype=torch.float64, device=device), torch.zeros(m, device=device),
            torch.zeros(m, HIST_BINS + 2, dtype=torch.long, device=device),
        )  # fmt: skip

    @staticmethod
    def edges() -> Tensor:
        """(HIST_BINS + 1,) log-spaced bin edges."""
        return torch.logspace(torch.log10(torch.tensor(HIST_LO)), torch.log10(torch.tensor(HIST_HI)), HIST_BINS + 1)

    def update_sparse(self, values: Tensor, indices: Tensor, vmax_img: Tensor) -> None:
        """values, indices (N, k) codes of N positions; vmax_img (B, m) per-image maxima."""
        v, i = values.reshape(-1).float(), indices.reshape(-1)
        on = v > 0
        self._add(v[on], i[on], positions=values.shape[0], vmax_img=vmax_img)

    def update_dense(self, acts: Tensor, vmax_img: Tensor) -> None:
        """acts (N, C) dense activations of N positions (neurons)."""
        n, c = acts.shape
        i = torch.arange(c, device=acts.device).expand(n, c).reshape(-1)
        v = acts.reshape(-1).float()
        on = v > 0
        self._add(v[on], i[on], positions=n, vmax_img=vmax_img)

    def _add(self, v: Tensor, i: Tensor, positions: int, vmax_img: Tensor) -> None:
        m = self.vmax.shape[0]
        self.positions += positions
        self.images += vmax_img.shape[0]
        self.fire_pos += torch.bincount(i, minlength=m)
        self.fire_img += (vmax_img > 0).sum(0)
        self.total += torch.zeros(m, dtype=torch.float64, device=v.device).index_add_(0, i, v.double())
        self.vmax = torch.maximum(self.vmax, vmax_img.max(0).values)
        edges = self.edges().to(v.device)
        b = torch.bucketize(v, edges, right=True)  # 0: < lo, 1..BINS, BINS+1: >= hi
        self.hist += torch.bincount(i * (HIST_BINS + 2) + b, minlength=m * (HIST_BINS + 2)).view(m, -1)

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (self.fire_pos, self.fire_img, self.total, self.vmax, self.hist)
        )


def interval_index(value: Tensor, vmax: Tensor, n_intervals: int) -> Tensor:
    """Equal-width interval of ``value`` in [0, vmax] (the max goes to the last one).

    value (B, m), vmax (m,) -> (B, m) long in 0..n_intervals-1.
    """
    width = (vmax / n_intervals).clamp_min(1e-30)
    return (value / width).floor().long().clamp(0, n_intervals - 1)


def at_positions(mask: Tensor, pos: Tensor) -> Tensor:
    """(B, m) bool: whether each per-image argmax ``pos`` (B, m; -1 where it never fires) is a ``mask`` position.

    mask: (B*hw,) image-major or (B, hw) bool, e.g. the positions the harvest rule selects.
    """
    grid = mask.view(pos.shape[0], -1)
    return grid.gather(1, pos.clamp_min(0)) & (pos >= 0)
