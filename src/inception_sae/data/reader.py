"""Shuffled training batches from an activation store, read as sequential chunks.

Random single-row reads from disk are ~10x slower than sequential ones (saev),
so each epoch is a two-level shuffle: the training rows are cut into chunks of
``chunk_rows`` consecutive vectors, the chunk order is shuffled, consecutive
groups of ``window_chunks`` chunks form a *window* that is read into memory with
sequential reads (in file order), and the rows of a window are shuffled.

What a batch mixes is set by how many chunks a window holds, not by its size in
rows: the rows of one image (its views and positions) are consecutive, so a
window of 16 chunks of 4096 rows covers at most 16 places of the store (with 780
rows per image, ~84 images). The default, 512 chunks of 128 rows (the same 65,536
rows and memory), covers 512 places, so a batch of 4096 spans hundreds of images
even at 780 rows per image; each read is still a 135 KB sequential block at d = 528.
:meth:`StoreSource.mixing` measures it.

Everything is drawn from ``(seed, epoch)``, so the cursor ``(epoch, position)``
restores the stream exactly, and every training vector is visited once per
epoch (the ragged tail that does not fill a global batch is dropped, a different
one each epoch). A ``held_out`` row range is never read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .store import ActivationStore


class StoreSource:
    """A :class:`~.source.BatchSource` over an :class:`ActivationStore`, minus a held-out row range.

    With ``rank``/``world`` every data-parallel process walks the same global
    order and takes its own ``batch_size`` rows of each global batch of
    ``batch_size * world`` rows, so the ranks are disjoint. A window is held in
    memory as float32: ``chunk_rows * window_chunks * d * 4`` bytes (138 MB at
    the defaults and d = 528). ``held_out`` = ``(start, end)`` store rows that
    training never reads (evaluation's rows).
    """

    def __init__(
        self,
        store: ActivationStore,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        chunk_rows: int = 128,
        window_chunks: int = 512,
        held_out: tuple[int, int] | None = None,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        self.store, self.vectors = store, store.vectors
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.chunk_rows, self.window_chunks = chunk_rows, window_chunks
        self.d = store.d
        self.held_out = _check_range(held_out, len(store))
        self._set_chunks()
        if self.n < batch_size * world:
            raise UserError(f"{self.n} training vectors are fewer than one global batch of {batch_size * world}")
        self.epoch, self.position = 0, 0
        self._plan_epoch = -1
        self._rows: tuple | None = None  # (window id, rows (w,) shuffled, perm (w,))
        self._data: tuple | None = None  # (window id, data (w, d) in chunk order)

    def _set_chunks(self) -> None:
        """Chunk bounds ``_lo``/``_hi`` (store rows) over the rows outside the held-out range."""
        total = len(self.store)
        lo, hi = self.held_out or (total, total)
        segments = [(0, lo), (hi, total)]
        starts = [np.arange(a, b, self.chunk_rows) for a, b in segments if b > a]
        self._lo = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        ends = np.array([b for a, b in segments for _ in range(a, b, self.chunk_rows)], np.int64)
        self._hi = np.minimum(self._lo + self.chunk_rows, ends)
        self.n = int((self._hi - self._lo).sum())  #: training vectors (the store minus the held-out rows)

    # -- the epoch's order ----------------------------------------------------------
    def _plan(self) -> None:
        """Chunk order and window boundaries of the current epoch."""
        if self._plan_epoch == self.epoch:
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        self._chunk_order = rng.permutation(len(self._lo))  # (n_chunks,)
        sizes = self._hi[self._chunk_order] - self._lo[self._chunk_order]
        starts = np.concatenate([[0], np.cumsum(sizes)])  # epoch position where each chunk starts
        self._window_starts = starts[:: self.window_chunks]  # plus the end
        if self._window_starts[-1] != self.n:
            self._window_starts = np.append(self._window_starts, self.n)
        self._plan_epoch, self._rows, self._data = self.epoch, None, None

    def _chunks(self, w: int) -> np.ndarray:
        return self._chunk_order[w * self.window_chunks : (w + 1) * self.window_chunks]

    def _window_rows(self, w: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Store rows of window ``w`` in shuffled order, and the shuffle (no vector is read)."""
        if self._rows is not None and self._rows[0] == w:
            return self._rows
        chunks = self._chunks(w)
        rows = np.concatenate([np.arange(self._lo[c], self._hi[c]) for c in chunks])
        perm = np.random.default_rng([self.seed, self.epoch, w]).permutation(len(rows))
        self._rows = (w, rows[perm], perm)
        return self._rows

    def _window_data(self, w: int) -> np.ndarray:
        """Vectors of window ``w`` in chunk order, converted to float32 once (batches gather from it)."""
        if self._data is not None and self._data[0] == w:
            return self._data[1]
        chunks = self._chunks(w)
        sizes = self._hi[chunks] - self._lo[chunks]
        at = np.concatenate([[0], np.cumsum(sizes)])
        data = np.empty((int(at[-1]), self.d), np.float32)
        for j in np.argsort(self._lo[chunks], kind="stable"):  # sequential reads, in file order
            c = chunks[j]
            data[at[j] : at[j + 1]] = self.vectors[int(self._lo[c]) : int(self._hi[c])]
        self._data = (w, data)
        return data

    def _walk(self, start: int, stop: int, with_data: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows (and vectors) at epoch positions [start, stop)."""
        self._plan()
        rows, data = [], []
        while start < stop:
            w = int(np.searchsorted(self._window_starts, start, side="right") - 1)
            _, wrows, perm = self._window_rows(w)
            lo = start - int(self._window_starts[w])
            hi = min(stop, int(self._window_starts[w + 1])) - int(self._window_starts[w])
            rows.append(wrows[lo:hi])
            if with_data:
                data.append(self._window_data(w)[perm[lo:hi]])
            start += hi - lo
        out_rows = rows[0] if len(rows) == 1 else np.concatenate(rows)
        if not with_data:
            return out_rows, None
        return out_rows, data[0] if len(data) == 1 else np.concatenate(data)

    def _advance(self) -> int:
        """Move the cursor one global batch on; the epoch position where this rank's batch starts."""
        global_batch = self.batch_size * self.world
        if self.position + global_batch > self.n:  # drop the ragged tail, reshuffle
            self.epoch, self.position = self.epoch + 1, 0
        start = self.position + self.rank * self.batch_size
        self.position += global_batch
        return start

    # -- BatchSource --------------------------------------------------------------------
    def next_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Store row indices (B,) and float32 vectors (B, d) of this rank's next batch."""
        start = self._advance()
        rows, data = self._walk(start, start + self.batch_size, with_data=True)
        assert data is not None
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
            "held_out": list(self.held_out) if self.held_out else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.chunk_rows = int(state.get("chunk_rows", self.chunk_rows))
        self.window_chunks = int(state.get("window_chunks", self.window_chunks))
        if "held_out" in state:
            self.held_out = _check_range(state["held_out"], len(self.store))
        self._set_chunks()
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._plan_epoch = -1

    # -- what a batch mixes ---------------------------------------------------------------
    def mixing(self, batches: int = 16) -> dict[str, Any]:
        """Mean distinct images and classes (folder names) per global batch, over the next ``batches``.

        Computed from the rows the cursor would hand out (all ranks together), without
        reading a vector or moving the cursor. Classes come from the store's image ids.
        """
        from .subsets import class_of

        keys = ("epoch", "position", "rank", "_plan_epoch", "_rows", "_data", "_chunk_order", "_window_starts")
        saved = {k: getattr(self, k) for k in keys if hasattr(self, k)}
        self.rank = 0
        images, classes = [], []
        image_of = self.store.image_index
        names = self.store.images
        class_ids: dict[str, int] = {}
        cls = np.array([class_ids.setdefault(class_of(i), len(class_ids)) for i in names], np.int64)
        try:
            for _ in range(batches):
                start = self._advance()
                rows, _ = self._walk(start, start + self.batch_size * self.world, with_data=False)
                img = image_of(rows)
                known = img[img >= 0]
                images.append(np.unique(known).size)
                if len(cls) and known.size:
                    classes.append(np.unique(cls[known]).size)
        finally:
            self.__dict__.update(saved)
        return {
            "batches": batches,
            "batch_size": self.batch_size * self.world,
            "images_per_batch": round(float(np.mean(images)), 1),
            "classes_per_batch": round(float(np.mean(classes)), 1) if classes else None,
            "images": len(names),
            "classes": len(class_ids),
            "chunk_rows": self.chunk_rows,
            "window_chunks": self.window_chunks,
        }


def _check_range(rows, total: int) -> tuple[int, int] | None:
    """A validated ``(start, end)`` row range inside ``[0, total]``, or None."""
    if rows is None:
        return None
    lo, hi = (int(v) for v in rows)
    if not 0 <= lo <= hi <= total:
        raise ValueError(f"held-out rows [{lo}, {hi}) are not inside the store's [0, {total})")
    return (lo, hi) if hi > lo else None


def mixing_line(source) -> str:
    """One line on what a training batch mixes (images, classes) and which rows are held out."""
    m = source.mixing()
    held = f"rows [{source.held_out[0]}, {source.held_out[1]})" if source.held_out else "nothing"
    if not m["images"]:  # vectors without provenance
        return f"held out from training (never read): {held}"
    classes = f", {m['classes_per_batch']:.0f} of {m['classes']} classes" if m.get("classes_per_batch") else ""
    return (
        f"a batch of {m['batch_size']} spans {m['images_per_batch']:.0f} of {m['images']} images on average"
        f"{classes}; held out from training (never read): {held}"
    )
