"""Shuffled training batches from an activation store, read as sequential chunks.

Random single-row reads from disk are ~10x slower than sequential ones (saev),
so each epoch is a two-level shuffle: the store's rows are cut into chunks of
``chunk_rows`` consecutive vectors, the chunk order is shuffled, consecutive
groups of ``window_chunks`` chunks form a *window* that is read into memory with
sequential reads, and the rows of a window are shuffled. Everything is drawn
from ``(seed, epoch)``, so the cursor ``(epoch, position)`` restores the stream
exactly, and every vector is visited once per epoch (the ragged tail that does
not fill a global batch is dropped, a different one each epoch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .store import ActivationStore


class StoreSource:
    """A :class:`~.source.BatchSource` over an :class:`ActivationStore`.

    With ``rank``/``world`` every data-parallel process walks the same global
    order and takes its own ``batch_size`` rows of each global batch of
    ``batch_size * world`` rows, so the ranks are disjoint. A window is held in
    memory as float32: ``chunk_rows * window_chunks * d * 4`` bytes (138 MB at
    the defaults and d = 528); a bigger window mixes more, a smaller one uses less.
    """

    def __init__(
        self,
        store: ActivationStore,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        chunk_rows: int = 4096,
        window_chunks: int = 16,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        if len(store) < batch_size * world:
            raise ValueError(f"{len(store)} vectors are fewer than one global batch of {batch_size * world}")
        self.store, self.vectors = store, store.vectors
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.chunk_rows, self.window_chunks = chunk_rows, window_chunks
        self.d = store.d
        self.n = len(store)
        self.epoch, self.position = 0, 0
        self._plan_epoch = -1
        self._window: tuple | None = None  # (window id, rows (w,) shuffled, data (w, d) unshuffled, perm (w,))

    # -- the epoch's order ----------------------------------------------------------
    def _plan(self) -> None:
        """Chunk order and window boundaries of the current epoch."""
        if self._plan_epoch == self.epoch:
            return
        n_chunks = -(-self.n // self.chunk_rows)
        rng = np.random.default_rng([self.seed, self.epoch])
        self._chunk_order = rng.permutation(n_chunks)  # (n_chunks,)
        sizes = np.minimum(self.chunk_rows, self.n - self._chunk_order * self.chunk_rows)
        starts = np.concatenate([[0], np.cumsum(sizes)])  # epoch position where each chunk starts
        self._window_starts = starts[:: self.window_chunks]  # plus the end
        if self._window_starts[-1] != self.n:
            self._window_starts = np.append(self._window_starts, self.n)
        self._plan_epoch, self._window = self.epoch, None

    def _load_window(self, w: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Rows of window ``w`` in shuffled order, and their vectors (sequential chunk reads)."""
        if self._window is not None and self._window[0] == w:
            return self._window
        chunks = self._chunk_order[w * self.window_chunks : (w + 1) * self.window_chunks]
        rows = np.concatenate([np.arange(c * self.chunk_rows, min((c + 1) * self.chunk_rows, self.n)) for c in chunks])
        data = np.empty((len(rows), self.d), np.float32)  # converted once here, so a batch is one gather
        at = 0
        for c in chunks:
            block = self.vectors[c * self.chunk_rows : (c + 1) * self.chunk_rows]  # sequential read
            data[at : at + len(block)] = block
            at += len(block)
        perm = np.random.default_rng([self.seed, self.epoch, w]).permutation(len(rows))
        self._window = (w, rows[perm], data, perm)  # data stays in file order: batches gather from it
        return self._window

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and vectors at epoch positions [start, stop)."""
        self._plan()
        rows, data = [], []
        while start < stop:
            w = int(np.searchsorted(self._window_starts, start, side="right") - 1)
            _, wrows, wdata, perm = self._load_window(w)
            lo = start - int(self._window_starts[w])
            hi = min(stop, int(self._window_starts[w + 1])) - int(self._window_starts[w])
            rows.append(wrows[lo:hi])
            data.append(wdata[perm[lo:hi]])
            start += hi - lo
        if len(data) == 1:
            return rows[0], data[0]
        return np.concatenate(rows), np.concatenate(data)

    # -- BatchSource --------------------------------------------------------------------
    def next_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Store row indices (B,) and float32 vectors (B, d) of this rank's next batch."""
        global_batch = self.batch_size * self.world
        if self.position + global_batch > self.n:  # drop the ragged tail, reshuffle
            self.epoch, self.position = self.epoch + 1, 0
        start = self.position + self.rank * self.batch_size
        rows, data = self._read(start, start + self.batch_size)
        self.position += global_batch
        return rows, data

    def next_batch(self) -> torch.Tensor:
        """The next (batch_size, d) float32 CPU tensor."""
        _, data = self.next_rows()
        return torch.from_numpy(data)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "chunk_rows": self.chunk_rows,
            "window_chunks": self.window_chunks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.chunk_rows = int(state.get("chunk_rows", self.chunk_rows))
        self.window_chunks = int(state.get("window_chunks", self.window_chunks))
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._plan_epoch = -1
