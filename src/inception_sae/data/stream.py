"""Training batches straight from images through the model: no activation store, no disk.

The shuffle buffer is a *window* of ``window_images`` images: each epoch
permutes the image list (seeded by ``(seed, epoch)``), each rank takes every
``world``-th image (so ranks see disjoint images), the vectors of one window
are harvested together and shuffled (seeded by ``(seed, epoch, rank,
window)``). Sampling is seeded per image (see :mod:`.sampling`), so the cursor
``(epoch, window, offset)`` restores the stream exactly: a resume re-harvests
the current window and skips ``offset`` vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .images import ImageDataset, collate_skipping, usable_workers
from .sampling import SAMPLINGS, ViewDataset


class StreamSource:
    """A :class:`~.source.BatchSource` that runs ``model`` on images as it goes (float32 batches)."""

    def __init__(
        self,
        model,
        dataset: ImageDataset,
        layer: str,
        batch_size: int,
        *,
        per_image: int = 10,
        sampling: str = "top-norm",
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        window_images: int = 256,
        image_batch: int = 32,
        workers: int = 0,
    ) -> None:
        if sampling not in SAMPLINGS:
            raise UserError(f"unknown sampling {sampling!r}; choose from {SAMPLINGS}")
        if not 0 <= rank < world or len(dataset) < world:
            raise UserError(f"rank {rank} of {world} has no images ({len(dataset)} in all)")
        self.model, self.dataset, self.layer = model, dataset, layer
        self.batch_size, self.per_image, self.sampling, self.seed = batch_size, per_image, sampling, seed
        self.rank, self.world = rank, world
        self.window_images, self.image_batch, self.workers = window_images, image_batch, workers
        self.d = model.layer_info(layer).channels
        self.epoch, self.window, self.offset = 0, 0, 0
        self._buffer: np.ndarray | None = None  # (n, d) float32 vectors of the current window, shuffled

    def _my_images(self, epoch: int) -> list[int]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        return perm[self.rank :: self.world].tolist()

    def _fill(self) -> np.ndarray:
        """Harvest and shuffle the current window's vectors (n, d) float32."""
        from .harvest import harvest_batch

        mine = self._my_images(self.epoch)
        todo = mine[self.window * self.window_images : (self.window + 1) * self.window_images]
        loader = torch.utils.data.DataLoader(
            ViewDataset(self.dataset, todo, 1, self.seed),
            batch_size=self.image_batch,
            num_workers=usable_workers(self.workers),
            collate_fn=collate_skipping,  # each item is an image's views
        )
        parts = [np.zeros((0, self.d), np.float32)]
        with torch.inference_mode():
            for views, idx, _ in loader:
                if views is None:
                    continue
                ids = [self.dataset.image_id(i) for i in idx]
                vecs, _ = harvest_batch(
                    self.model, views, idx, ids, self.layer, self.per_image, self.sampling, self.seed
                )
                parts.append(vecs.float().cpu().numpy())
        data = np.concatenate(parts)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, self.window])
        return data[rng.permutation(len(data))]

    def _advance_window(self) -> None:
        n_windows = -(-len(self._my_images(self.epoch)) // self.window_images)
        self.window, self.offset, self._buffer = self.window + 1, 0, None
        if self.window >= n_windows:
            self.epoch, self.window = self.epoch + 1, 0

    def next_batch(self) -> torch.Tensor:
        """The next (batch_size, d) float32 CPU tensor (may span windows and epochs)."""
        out, need, empty = [], self.batch_size, 0
        while need:
            if self._buffer is None:
                self._buffer = self._fill()
            take = self._buffer[self.offset : self.offset + need]
            out.append(take)
            need -= len(take)
            self.offset += len(take)
            if self.offset >= len(self._buffer):
                empty = empty + 1 if len(self._buffer) == 0 else 0
                if empty > len(self.dataset):
                    raise RuntimeError("no image yields vectors (all unreadable?)")
                self._advance_window()
        return torch.from_numpy(np.concatenate(out))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "window": self.window, "offset": self.offset, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.epoch, self.window, self.offset = int(state["epoch"]), int(state["window"]), int(state["offset"])
        self._buffer = None
