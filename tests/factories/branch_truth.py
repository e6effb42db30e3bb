"""Decoder rows with known branch preference, generated OUTSIDE the branch test's own null model.

Rows are made the way trained SAEs and real data make them, from the random network's real mixed4d
activations (shared photos when present, else the package's synthetic images): real activation directions,
centred ones (signed, as decoder rows are), conditional means of activations (feature-like mixtures), and
channel-RMS-scaled dense and sparse rows; every row carries small signed leak on all channels, including the
network's dead ones. Planted rows come from the same families with one branch's slice of the activation pattern a
few times stronger, in the data's units, before the pattern is centred or mixed (the feature drives that branch
harder); for the signed RMS-scaled rows the slice itself is scaled.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from inception_sae.data.images import ImageDataset, Preprocess, iter_batches
from inception_sae.data.synthetic import write_synthetic_images
from inception_sae.models.layers import layer_info

LAYER = "mixed4d"
INFO = layer_info(LAYER)
SLICES = [b.slice for b in INFO.branches]
NAMES = [b.name for b in INFO.branches]
D = INFO.channels
FAMILIES = ("data", "centred", "mixture", "rms_dense", "rms_sparse")
LEAK = 0.05  #: leak sd relative to a unit row's typical entry (1 / sqrt(D)), on every channel
DENSITY = 0.5  #: share of channels a dictionary atom writes to (sparser atoms carry less evidence: docs/analysis.md)


def activations(model, images: Path, n_images: int, tmp: Path, size: int = 224) -> torch.Tensor:
    """(N, D) mixed4d activation vectors of the random network: every position of ``n_images`` images."""
    if not images.is_dir():
        images = tmp / "synthetic"
        write_synthetic_images(images, n_images, size=size, seed=0)
    ds = ImageDataset.from_path(images, Preprocess(resize=round(size * 256 / 224), crop=size))
    step = max(len(ds) // n_images, 1)
    out = []
    with torch.no_grad():
        for x, _ in iter_batches(ds, 20, indices=list(range(0, len(ds), step))[:n_images]):
            a = model.capture(x, [LAYER])[LAYER]
            out.append(a.permute(0, 2, 3, 1).reshape(-1, D))
    return torch.cat(out)


class Generator:
    """Families of rows with no branch preference, and planted rows, from activations ``A`` (N, D)."""

    def __init__(self, A: torch.Tensor, seed: int = 0, per_image: int = 196) -> None:
        self.A, self.g = A.float(), torch.Generator().manual_seed(seed)
        self.rms = self.A.pow(2).mean(0).sqrt()
        norms = self.A.norm(dim=1).view(-1, per_image)
        top = norms.topk(10, dim=1).indices + torch.arange(0, len(self.A), per_image).view(-1, 1)
        self.top = self.A[top.flatten()]  # the harvest rule's positions: 10 highest-norm per image

    def _unit(self, W: torch.Tensor) -> torch.Tensor:
        return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def _pick(self, n: int) -> torch.Tensor:
        return self.top[torch.randint(0, len(self.top), (n,), generator=self.g)]

    def family(self, name: str, n: int, boost: tuple[int, int, float] | None = None) -> torch.Tensor:
        """``n`` rows of a family; ``boost`` (a, b, factor) makes channels a..b ``factor`` times stronger in the
        activation pattern, before it is centred or mixed (the feature drives that branch harder)."""

        def boosted(X: torch.Tensor) -> torch.Tensor:
            if boost is None:
                return X
            X = X.clone()
            X[..., boost[0] : boost[1]] *= boost[2]
            return X

        mean = self.A.mean(0)
        if name == "data":
            W = boosted(self._pick(n))
        elif name == "centred":
            W = boosted(self._pick(n)) - mean
        elif name == "mixture":  # the mean activation where a random direction is strongest, minus part of the mean
            X = self.A[torch.randint(0, len(self.A), (8000,), generator=self.g)]
            U = torch.randn(D, n, generator=self.g)
            idx = (X @ U).topk(40, dim=0).indices  # (40, n)
            W = boosted(X[idx].mean(0)) - 0.7 * mean
        elif name == "rms_dense":
            W = boosted(self.rms * torch.randn(n, D, generator=self.g))
        elif name == "rms_sparse":
            W = boosted(self.rms * torch.randn(n, D, generator=self.g) * (torch.rand(n, D, generator=self.g) < 0.1))
        else:
            raise ValueError(name)
        return self.leak(self._unit(W))

    def leak(self, W: torch.Tensor) -> torch.Tensor:
        """Small signed leak on every channel, dead ones included (what trained decoder rows carry)."""
        return W + torch.randn(W.shape, generator=self.g) * LEAK / math.sqrt(D)

    def planted(self, branch: str, n: int, factor: float = 3.0) -> torch.Tensor:
        """Rows of the data-like families whose activation pattern has ``branch``'s slice ``factor`` times stronger."""
        a, b = SLICES[NAMES.index(branch)]
        sources = ("data", "centred", "mixture", "rms_dense")
        return torch.cat([self.family(sources[i % len(sources)], 1, (a, b, factor)) for i in range(n)])

    def population(self, per_family: int = 300, planted: int = 100, factor: float = 3.0):
        """(rows (n, D), tags): every no-preference family, then ``planted`` rows in 5x5 and in 1x1."""
        rows, tags = [], []
        for name in FAMILIES:
            rows.append(self.family(name, per_family))
            tags += [name] * per_family
        for branch in ("5x5", "1x1"):
            rows.append(self.planted(branch, planted, factor))
            tags += [f"planted {branch}"] * planted
        return torch.cat(rows), tags


# A planted dictionary at mixed4d's width, for training an SAE end to end (no network involved).


def atom_dictionary(atoms: int, planted: int, g: torch.Generator):
    """(atoms (A, D) unit rows, tag per atom, channel scale (D,)): centred atoms in data units."""
    scale = 10 ** (torch.rand(D, generator=g) * 2 - 1)  # 0.1 to 10: two orders of magnitude between channels
    scale[torch.randperm(D, generator=g)[:12]] = 0  # dead channels
    Y = torch.randn(atoms, D, generator=g).abs() * (torch.rand(atoms, D, generator=g) < DENSITY)
    tags = ["none"] * atoms
    order = torch.randperm(atoms, generator=g).tolist()  # planted atoms spread over the frequency ranks
    for k, branch in enumerate(("5x5", "1x1")):
        a, b = SLICES[NAMES.index(branch)]
        for i in order[k * planted : (k + 1) * planted]:
            Y[i, a:b] *= 3  # the feature drives that branch's channels three times harder
            tags[i] = branch
    Y = Y - Y.mean(1, keepdim=True)  # centred, as decoder rows of non-negative data are (and nearly orthogonal)
    W = Y * scale
    return W / W.norm(dim=1, keepdim=True), tags, scale


def atom_activations(W: torch.Tensor, scale: torch.Tensor, n: int, active: float, g: torch.Generator) -> torch.Tensor:
    """(n, D): each atom fires with a Zipf probability (mean ``active`` atoms per row), Exp(1) coefficients.

    Rows are sums of centred atoms (the mean activation is what an SAE's decoder bias takes).
    """
    A = W.shape[0]
    p = 1.0 / torch.arange(1, A + 1).double() ** 0.8
    p = (p / p.sum() * active).clamp_max(1.0).float()
    codes = (torch.rand(n, A, generator=g) < p) * -torch.rand(n, A, generator=g).clamp_min(1e-12).log()
    noise = 0.01 * torch.randn(n, D, generator=g) * (scale > 0)  # dead channels stay exactly silent
    return codes @ W + noise
