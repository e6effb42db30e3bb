"""Which positions of a conv layer become activation vectors, and the augmented views of an image.

Every random choice is seeded per ``(seed, image id, view)`` (see
:func:`item_seed`), never by the batch, so results do not depend on batch size,
worker count, process count or resume points.
"""

from __future__ import annotations

import math
import zlib
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from .images import ImageDataset, ImageDecodeError, Preprocess, decode_image, resize_crop

#: ``top-norm``: the N highest-L2-norm positions (Bozoukov); ``norm-weighted``: N positions
#: drawn without replacement with probability proportional to the norm (his notebooks);
#: ``uniform``: N positions uniformly without replacement; ``all``: every position.
Sampling = Literal["top-norm", "norm-weighted", "uniform", "all"]
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
_SELECT, _AUGMENT = 1, 2  # separate random streams per purpose


def item_seed(seed: int, image_id: str, view: int) -> list[int]:
    """Seed sequence of one (image, view): stable across runs, batchings and processes."""
    return [seed, zlib.crc32(image_id.encode()), view]


def select_positions(norms: torch.Tensor, n: int, sampling: str, seeds: list[list[int]]) -> np.ndarray:
    """Flat position indices (B, k) for per-position norms (B, P); k = min(n, P), or P for ``all``.

    ``seeds[b]`` is :func:`item_seed` of row b (only the sampled rules use it).
    Ties in ``top-norm`` go to the lower index (stable sort), so it is deterministic.
    """
    B, P = norms.shape
    if sampling == "all":
        return np.broadcast_to(np.arange(P), (B, P)).copy()
    k = min(n, P)
    if sampling == "top-norm":
        order = torch.sort(norms.float(), dim=1, descending=True, stable=True).indices
        return order[:, :k].cpu().numpy()
    w = norms.double().cpu().numpy()  # (B, P)
    out = np.empty((B, k), dtype=np.int64)
    for b in range(B):
        rng = np.random.default_rng([*seeds[b], _SELECT])
        e = rng.exponential(size=P)  # (P,)
        if sampling == "uniform":
            keys = -e
        elif sampling == "norm-weighted":
            # Successive sampling without replacement with p ∝ w == top-k of w / Exp(1)
            # (Efraimidis & Spirakis 2006); zero-norm positions come last, in random order.
            keys = np.where(w[b] > 0, w[b] / e, -e)
        else:
            raise UserError(f"unknown sampling {sampling!r}; choose from {SAMPLINGS}")
        out[b] = np.argsort(-keys, kind="stable")[:k]
    return out


def gather_positions(acts: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """Vectors (B, k, C) at flat positions ``idx`` (B, k) of activations (B, C, H, W)."""
    C = acts.shape[1]
    flat = acts.flatten(2).transpose(1, 2)  # (B, H*W, C)
    index = torch.from_numpy(np.ascontiguousarray(idx)).to(acts.device)  # (B, k)
    return torch.gather(flat, 1, index.unsqueeze(-1).expand(-1, -1, C))


def random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """Crop 25-100% of the area with aspect ratio in [3/4, 4/3], resize to ``size``, flip half the time."""
    W, H = img.size
    box = None
    for _ in range(10):
        area = W * H * rng.uniform(0.25, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < w <= W and 0 < h <= H:
            left, top = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
            box = (left, top, left + w, top + h)
            break
    if box is None:  # fall back to the central square
        s = min(W, H)
        box = ((W - s) // 2, (H - s) // 2, (W - s) // 2 + s, (H - s) // 2 + s)
    out = img.crop(box).resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out


class ViewDataset(torch.utils.data.Dataset):
    """Images ``indices`` of ``dataset`` as (V, 3, S, S) uint8 stacks of views; view 0 is the evaluation crop.

    Items are ``(views or None, image index, skip reason)`` so bad files never
    stop a DataLoader.
    """

    def __init__(self, dataset: ImageDataset, indices: list[int], views: int = 1, seed: int = 0) -> None:
        if views > 1 and not dataset.preprocess.crop:
            raise ValueError("augmented views need a crop size (preprocess.crop > 0)")
        self.dataset, self.indices, self.views, self.seed = dataset, indices, views, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor | None, int, str]:
        i = self.indices[j]
        pre: Preprocess = self.dataset.preprocess
        try:
            img = decode_image(self.dataset.path(i))
        except ImageDecodeError as e:
            return None, i, e.reason
        out = [to_uint8(resize_crop(img, pre))]
        for v in range(1, self.views):
            rng = np.random.default_rng([*item_seed(self.seed, self.dataset.image_id(i), v), _AUGMENT])
            out.append(to_uint8(random_resized_crop(img, pre.crop, rng)))
        return torch.stack(out), i, ""


def to_uint8(img: Image.Image) -> torch.Tensor:
    """(3, H, W) uint8: 4x less to pass from workers than float; scaled to [0, 1] by the consumer."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def harvest_rule(manifest: dict) -> dict:
    """The position rule of a store's recipe (what an SAE trained on it saw), JSON-ready."""
    return {
        "sampling": manifest.get("sampling", "all"),
        "per_image": int(manifest.get("per_image") or 0),
        "seed": int(manifest.get("seed") or 0),
    }


def training_mask(acts: torch.Tensor, rule: dict, image_ids: list[str]) -> torch.Tensor:
    """(B, H*W) bool: the positions of view 0 of each image that the harvest ``rule`` would select."""
    norms = acts.flatten(2).norm(dim=1)  # (B, H*W)
    seeds = [item_seed(rule["seed"], image_id, 0) for image_id in image_ids]
    pos = torch.from_numpy(select_positions(norms, rule["per_image"], rule["sampling"], seeds)).to(acts.device)
    mask = torch.zeros_like(norms, dtype=torch.bool)
    return mask.scatter_(1, pos, True)


def describe_rule(rule: dict) -> str:
    """E.g. ``top-norm, 10 positions per image`` (for reports and the site)."""
    if rule["sampling"] == "all":
        return "all positions"
    return f"{rule['sampling']}, {rule['per_image']} positions per image"
