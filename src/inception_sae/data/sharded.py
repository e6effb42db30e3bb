"""One (N, d) array-like over many memory-mapped shards, without copying them together."""

from __future__ import annotations

import numpy as np


class ShardedArray:
    """Row-concatenation of 2-D arrays (usually ``np.memmap``) that reads only what is indexed.

    Supports ``len``, ``shape``, ``dtype``, integer rows, slices, integer or
    boolean index arrays, and a second (column) index: ``a[rows, cols]``.
    ``np.asarray(a)`` materialises everything.
    """

    def __init__(self, parts: list[np.ndarray], d: int, dtype: np.dtype) -> None:
        self.parts = parts
        self.d, self.dtype = d, np.dtype(dtype)
        self.offsets = np.cumsum([0] + [len(p) for p in parts])  # (S + 1,)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.offsets[-1]), self.d)

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.d * self.dtype.itemsize

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        return f"ShardedArray(shape={self.shape}, dtype={self.dtype}, shards={len(self.parts)})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        cols = None
        if isinstance(key, tuple):
            key, *rest = key
            cols = tuple(rest)
        if isinstance(key, (int, np.integer)):
            s, local = self._locate(int(key))
            row = np.asarray(self.parts[s][local])
            return row[cols] if cols else row
        out = self._slice(key) if isinstance(key, slice) else self._take(np.asarray(key))
        if not cols:
            return out
        index = (slice(None), *cols)  # built apart: mypy reads out[(x, *y)] as 3.11's out[x, *y]
        return out[index]

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        i %= n
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return s, i - int(self.offsets[s])

    def _slice(self, key: slice) -> np.ndarray:
        start, stop, step = key.indices(len(self))
        if step != 1:
            return self._take(np.arange(start, stop, step))
        pieces = []
        first = max(int(np.searchsorted(self.offsets, start, side="right")) - 1, 0)  # only the shards it touches
        last = int(np.searchsorted(self.offsets, stop, side="left"))
        for s in range(first, min(last, len(self.parts))):
            part = self.parts[s]
            lo, hi = max(start, int(self.offsets[s])), min(stop, int(self.offsets[s + 1]))
            if lo < hi:
                pieces.append(np.asarray(part[lo - self.offsets[s] : hi - self.offsets[s]]))
        return np.concatenate(pieces) if pieces else np.zeros((0, self.d), self.dtype)

    def _take(self, idx: np.ndarray) -> np.ndarray:
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean index of shape {idx.shape} for {len(self)} rows")
            idx = np.flatnonzero(idx)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"row indices must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64).ravel()
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        out = np.empty((idx.size, self.d), self.dtype)
        which = np.searchsorted(self.offsets, idx, side="right") - 1  # shard of each row
        for s in np.unique(which):
            mask = which == s
            out[mask] = self.parts[s][idx[mask] - self.offsets[s]]
        return out
