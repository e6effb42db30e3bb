"""Data families of the SAE quality benchmark, streamed identically to every trainer.

Each family gives ``batch(step)`` (the rows of training step ``step``, a pure function of the
seed and the step, so our trainer and the peers, in their own processes, see the same rows),
``held(n)`` (rows never trained on) and, for planted families, the true dictionary (unit rows)
for counting recovered directions. numpy + torch only: peers.py imports this in its own venv.

- ``nonneg``: ``benchmarks/common_data.py``'s distribution: 8,448 non-negative unit directions,
  32 active per vector with Exp(1) coefficients, N(0, 0.05^2) noise, ReLU.
- ``signed``: 6,000 signed (Gaussian) unit directions, 24 active, heavy-tailed Pareto(a=2.5,
  x_m=1) coefficients, a positive offset of 0.3 on every coordinate, N(0, 0.05^2) noise, then ReLU
  (about a third of the coordinates are clipped to 0).
- ``zipf``: 8,448 signed unit directions drawn with very unequal frequencies (Zipf, p_i ~ 1/i:
  the most frequent is drawn ~8,000x more often than the rarest), 32 active, Exp(1)
  coefficients, noise, no ReLU: a linear signed signal whose rare features get few samples.
- ``mixed4d``: real activations, the seeded random-weight inception5h's mixed4d on the shared
  ImageNet sample, top-norm positions per image as ``inception-sae harvest`` takes them; training
  rows from the first 900 images, held-out rows from the last 100 (see ``harvest_mixed4d``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HELD_STREAM = 10**9  #: the held-out rows' stream id (no training step reaches it)
FIRE_STREAM = HELD_STREAM + 1  #: the extra held-out rows that only count firing (see ``Family.fire_rows``)


@dataclass(frozen=True)
class Planted:
    """A planted sparse dictionary: x = post(sum_j c_j D_{i_j} + offset + noise)."""

    n_true: int
    active: int
    signed: bool
    coef: str  #: "exp" or "pareto"
    offset: float = 0.0
    relu: bool = True
    zipf: float = 0.0  #: frequency exponent (0: uniform)
    noise: float = 0.05
    d: int = 528
    seed: int = 0

    def dictionary(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0])
        D = rng.standard_normal((self.n_true, self.d)).astype(np.float32)
        if not self.signed:
            D = np.abs(D)
        return D / np.linalg.norm(D, axis=1, keepdims=True)

    def _rows(self, stream: int, n: int, D: torch.Tensor) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, stream])
        if self.zipf > 0:
            cdf = np.cumsum(np.arange(1, self.n_true + 1, dtype=np.float64) ** -self.zipf)
            idx = np.searchsorted(cdf / cdf[-1], rng.random((n, self.active)))
            idx = np.minimum(idx, self.n_true - 1)
        else:
            idx = rng.integers(0, self.n_true, (n, self.active))
        if self.coef == "pareto":
            c = rng.pareto(2.5, (n, self.active)) + 1.0
        else:
            c = rng.exponential(1.0, (n, self.active))
        x = F.embedding_bag(
            torch.from_numpy(idx), D, per_sample_weights=torch.from_numpy(c.astype(np.float32)), mode="sum"
        )
        x = x + self.offset + self.noise * torch.from_numpy(rng.standard_normal((n, self.d)).astype(np.float32))
        return (x.clamp_min(0) if self.relu else x).numpy()


FAMILIES = {
    "nonneg": Planted(n_true=8448, active=32, signed=False, coef="exp"),
    "signed": Planted(n_true=6000, active=24, signed=True, coef="pareto", offset=0.3),
    "zipf": Planted(n_true=8448, active=32, signed=True, coef="exp", relu=False, zipf=1.0),
}
REAL = ("mixed4d",)


class Family:
    """Rows of one family for batch size ``batch``."""

    def __init__(self, name: str, batch: int, real_dir: Path | None = None) -> None:
        self.name, self.batch = name, batch
        if name in FAMILIES:
            self.spec = FAMILIES[name]
            self.true = self.spec.dictionary()
            self._D = torch.from_numpy(self.true)
            self.d = self.spec.d
        elif name in REAL:
            if real_dir is None or not (real_dir / "train.npy").is_file():
                raise FileNotFoundError(f"{name}: no harvested rows in {real_dir}")
            self.spec, self.true = None, None
            self.train = np.load(real_dir / "train.npy")
            self.held_rows = np.load(real_dir / "held.npy")
            self.d = self.train.shape[1]
        else:
            raise ValueError(f"unknown family {name!r}")

    def batch_rows(self, step: int) -> np.ndarray:
        if self.spec is not None:
            return self.spec._rows(step, self.batch, self._D)
        per_epoch = len(self.train) // self.batch
        epoch, i = divmod(step, per_epoch)
        order = np.random.default_rng([epoch, 7]).permutation(len(self.train))
        return self.train[np.sort(order[i * self.batch : (i + 1) * self.batch])]

    def held(self, n: int) -> np.ndarray:
        if self.spec is not None:
            return self.spec._rows(HELD_STREAM, n, self._D)
        return self.held_rows[:n]

    def fire_rows(self, n: int) -> np.ndarray:
        """More held-out rows, used only to tell dead latents from rare ones.

        A latent that fires on 1 row in 50,000 is alive (it fires in any training window) yet never
        fires on 16,384 rows; on Zipf data a quarter of a trained SAE's latents are such. Planted
        families: ``n`` rows of their own stream; real data: nothing more (its held-out rows are all
        there is)."""
        if self.spec is None or n <= 0:
            return np.zeros((0, self.d), np.float32)
        return self.spec._rows(FIRE_STREAM, n, self._D)


def recovered(true: np.ndarray | None, dec: np.ndarray, threshold: float = 0.9) -> float | None:
    """Share of true unit directions with a decoder row at cosine >= ``threshold``."""
    if true is None:
        return None
    dec = dec / np.maximum(np.linalg.norm(dec, axis=1, keepdims=True), 1e-12)
    best = np.zeros(len(true), dtype=np.float32)
    for s in range(0, len(dec), 2048):
        np.maximum(best, (true @ dec[s : s + 2048].T).max(1), out=best)
    return float((best >= threshold).mean())


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the rows, in float64."""
    x, x_hat = x.astype(np.float64), x_hat.astype(np.float64)
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def train_time(times: list[float]) -> float:
    """Time of ``len(times)`` steps, the first (JIT compilation, page faults) counted as the mean of the rest."""
    if len(times) < 2:
        return sum(times)
    rest = sum(times[1:])
    return rest * len(times) / (len(times) - 1)


class Curve:
    """Evaluation points along one training run: FVU on held-out rows, dead share, wall time."""

    def __init__(self, fam: Family, eval_steps: list[int], n_held: int, n_fire: int = 0) -> None:
        self.fam, self.eval_steps, self.heldx = fam, set(eval_steps), fam.held(n_held)
        self.firex = fam.fire_rows(n_fire)
        self.points: list[dict] = []

    def maybe(self, step: int, train_s: float, recon, dec_rows) -> dict | None:
        """After ``step`` steps: ``recon(x) -> (x_hat, indices, values)`` numpy; ``dec_rows()`` the (m, d) decoder.
        Returns the new point, or None where ``step`` is not an evaluation point."""
        if step not in self.eval_steps:
            return None
        parts, fired, dec = [], np.zeros(0, np.int64), dec_rows()
        for s in range(0, len(self.heldx), 4096):
            x_hat, idx, vals = recon(self.heldx[s : s + 4096])
            parts.append(x_hat)
            fired = np.union1d(fired, idx[vals > 0])
        dead_fvu_rows = 1.0 - len(fired) / dec.shape[0]
        for s in range(0, len(self.firex), 4096):
            _, idx, vals = recon(self.firex[s : s + 4096])
            fired = np.union1d(fired, idx[vals > 0])
        self.points.append(
            {
                "step": step,
                "samples": step * self.fam.batch,
                "train_s": train_s,
                "fvu": fvu(self.heldx, np.concatenate(parts)),
                "dead_fraction": 1.0 - len(fired) / dec.shape[0],  # on the FVU rows and the firing rows
                "dead_on_fvu_rows": dead_fvu_rows,
                "rows_for_dead": len(self.heldx) + len(self.firex),
                "recovered_090": recovered(self.fam.true, dec),
            }
        )
        return self.points[-1]
