"""A stand-in model with planted activation patterns shared between two layers (compare tests)."""

from __future__ import annotations

import torch

from inception_sae.models.layers import layer_info

from .sae import unit_rows


class PlantedModel:
    """Stands in for InceptionV1: two 14x14 layers whose activations share planted concept maps.

    Concepts 0..S-1 drive a direction in both layers (the same activation pattern); concepts
    S..K-1 drive only the first layer, and the second gets its own independent concepts instead.
    With ``tied`` > 0, rows 2K.. of each layer's directions are position-tied concepts: the same
    map in both layers, firing at a fixed :func:`position_templates` set in 90% of images whatever
    their content, amplitude U(0.5, 1.5).
    """

    def __init__(self, K: int = 12, S: int = 6, seed: int = 0, layers=("mixed4b", "mixed4c"), tied: int = 0) -> None:
        self.K, self.S, self.layers, self.tied = K, S, layers, tied
        self.g = torch.Generator().manual_seed(seed)
        self.D = {n: unit_rows(torch.randn(2 * K, layer_info(n).channels, generator=self.g)) for n in layers}
        if tied:
            gt = torch.Generator().manual_seed(seed + 1)
            for n in layers:
                self.D[n] = torch.cat([self.D[n], unit_rows(torch.randn(tied, layer_info(n).channels, generator=gt))])

    def layer_info(self, name: str):
        return layer_info(name)

    def capture(self, x, layers):
        B, K = x.shape[0], self.K
        z = torch.rand(B, 2 * K, 14, 14, generator=self.g)
        z = torch.where(z > 0.85, -torch.rand(z.shape, generator=self.g).log(), torch.zeros(()))  # sparse Exp(1)
        own = z[:, K:]  # mixed4c's independent concepts
        zc = torch.cat([z[:, : self.S], own[:, self.S :]], 1)
        zc = torch.cat([zc, torch.zeros_like(zc)], 1)
        lo_codes = torch.cat([z[:, :K], torch.zeros_like(own)], 1)
        if self.tied:
            t = torch.zeros(B, self.tied, 14 * 14)
            temps = position_templates(14)
            for j in range(self.tied):
                pos = temps[j % len(temps)]
                on = (torch.rand(B, 1, generator=self.g) < 0.9).float()
                t[:, j, pos] = on * torch.empty(B, pos.numel()).uniform_(0.5, 1.5, generator=self.g)
            t = t.view(B, self.tied, 14, 14)
            lo_codes, zc = torch.cat([lo_codes, t], 1), torch.cat([zc, t], 1)
        out = {}
        lo, hi = self.layers
        for name, codes in ((lo, lo_codes), (hi, zc)):
            acts = torch.einsum("bkhw,kd->bdhw", codes, self.D[name])
            out[name] = acts + 0.01 * torch.randn(acts.shape, generator=self.g)
        return {n: out[n] for n in layers}


def position_templates(side: int = 14) -> list[torch.Tensor]:
    """Fixed sets of positions of a side x side grid (flat indices): rows, columns, corners, border strips."""
    grid = torch.arange(side * side).view(side, side)
    t = [grid[0], grid[-1], grid[:, 0], grid[:, -1], grid[1], grid[:, 1]]
    t += [grid[:2, :2].flatten(), grid[:2, -2:].flatten(), grid[-2:, :2].flatten(), grid[-2:, -2:].flatten()]
    t += [
        grid[0, : side // 2],
        grid[-1, side // 2 :],
        grid[side // 2 - 1 : side // 2 + 1, side // 2 - 1 : side // 2 + 1],
    ]
    return [x.flatten() for x in t]


def planted_codes(
    n_images: int = 48,
    side: int = 14,
    seed: int = 0,
    shared: int = 150,
    frequent: int = 150,
    rare: int = 500,
    tied: int = 300,
    common: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Codes (I, P, m) of two SAEs on the same positions, with planted groups of side-A features.

    - shared: one sparse Exp(1) concept map (firing on 0.3-10% of positions) read by both sides,
      side B's amplitude jittered by x U(0.7, 1.3);
    - frequent / rare: side A's own maps on 5-20% / 0.02-0.1% of positions (side B has as many);
    - tied: fire at one of :func:`position_templates` in 90% of images, amplitude U(0.5, 1.5),
      content-free; side B has as many on the same templates;
    - common: an image-level cause: fire on 20% of positions of the 25% of images "showing" it
      (1% elsewhere); each has a side-B partner driven by the same images at independent positions.

    Returns ``za``, ``zb`` and each group's side-A feature indices.
    """
    g = torch.Generator().manual_seed(seed)
    P = side * side

    def sparse(freq: torch.Tensor) -> torch.Tensor:  # (I, P, m) Exp(1) codes firing with prob freq: (m,) or (I, 1, m)
        u = torch.rand(n_images, P, freq.shape[-1], generator=g)
        return torch.where(u < freq, -torch.rand(u.shape, generator=g).log(), torch.zeros(()))

    def log_uniform(n: int, lo: float, hi: float) -> torch.Tensor:
        return torch.exp(
            torch.empty(n).uniform_(float(torch.tensor(lo).log()), float(torch.tensor(hi).log()), generator=g)
        )

    def tied_maps(n: int, which: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(n_images, P, n)
        temps = position_templates(side)
        for j in range(n):
            pos = temps[int(which[j])]
            on = (torch.rand(n_images, 1, generator=g) < 0.9).float()
            out[:, pos, j] = on * torch.empty(n_images, pos.numel()).uniform_(0.5, 1.5, generator=g)
        return out

    concept = sparse(log_uniform(shared, 3e-3, 0.1))
    jitter = torch.empty(n_images, P, shared).uniform_(0.7, 1.3, generator=g)
    which = torch.randint(len(position_templates(side)), (tied,), generator=g)
    shows = (torch.rand(n_images, 1, common, generator=g) < 0.25).float()
    cause = 0.01 + 0.19 * shows

    def side_codes(first: torch.Tensor) -> torch.Tensor:
        return torch.cat([first, sparse(torch.empty(frequent).uniform_(0.05, 0.2, generator=g)),
                          sparse(log_uniform(rare, 2e-4, 1e-3)), tied_maps(tied, which), sparse(cause)], 2)  # fmt: skip

    za, zb = side_codes(concept), side_codes(concept * jitter)
    edges = torch.tensor([0, shared, frequent, rare, tied, common]).cumsum(0)
    names = ("shared", "frequent", "rare", "tied", "common")
    return za, zb, {k: torch.arange(int(edges[i]), int(edges[i + 1])) for i, k in enumerate(names)}
