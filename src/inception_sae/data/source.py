"""What a trainer reads from: an endless, seeded, resumable stream of activation batches.

The activation store (``store.py``), the streaming image source (``stream.py``)
and in-memory arrays all implement :class:`BatchSource`, so the SAE trainer does
not care where vectors come from, and its checkpoints can save and restore the
data cursor exactly.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import UserError


@runtime_checkable
class BatchSource(Protocol):
    """Endless stream of (B, d) float32 batches with a resumable cursor."""

    d: int  #: vector dimension
    batch_size: int

    def next_batch(self) -> torch.Tensor:
        """The next (batch_size, d) float32 CPU tensor; wraps into a new epoch (reshuffled) at the end."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-able cursor (e.g. epoch and position) that :meth:`load_state_dict` restores exactly."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a cursor saved by :meth:`state_dict`."""
        ...


class ArraySource:
    """A :class:`BatchSource` over an (N, d) array (in memory or memory-mapped).

    Each epoch visits every row once in an order drawn from ``seed`` and the
    epoch number, so the cursor ``(epoch, position)`` alone restores the stream.
    ``rank``/``world`` give each data-parallel process its own slice of every
    global batch (``batch_size`` is then the per-rank size).
    """

    def __init__(self, array, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        if len(array) < batch_size * world:
            raise UserError(f"{len(array)} vectors are fewer than one global batch of {batch_size * world}")
        self.array, self.batch_size, self.seed = array, batch_size, seed
        self.rank, self.world = rank, world
        self.d = int(array.shape[1])
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.array))

    def next_batch(self) -> torch.Tensor:
        global_batch = self.batch_size * self.world
        if self.position + global_batch > len(self.array):  # drop the ragged tail, reshuffle
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        start = self.position + self.rank * self.batch_size
        idx = np.sort(self._order[start : start + self.batch_size])  # sorted: friendlier to memmaps
        self.position += global_batch
        return torch.from_numpy(np.ascontiguousarray(self.array[idx], dtype=np.float32))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state.get("seed", self.seed)
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
