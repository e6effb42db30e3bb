"""Small images for examples: receptive-field crops and activation heatmaps, packed in one file per analysis.

Crops use the layer's receptive field around the argmax unit (``LayerInfo.rf_box``,
clipped to the image); each example also records every branch's RF box.
Heatmaps overlay the feature's spatial map, scaled by the feature's dataset max
so that heatmaps of one feature are comparable, on the preprocessed image.

Every JPEG is appended to ``images/examples.pack`` and addressed as ``images/examples.pack#<offset>+<length>``
(:func:`read_packed`): an analysis of 8,448 features writes one image file, not ~150,000 (17 per feature).
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

THUMB = 112  #: thumbnail side in pixels


def rf_boxes(info, y: int, x: int) -> dict:
    """The layer's RF box and each branch's, as [top, left, bottom, right] (end-exclusive)."""
    out = {"layer": list(info.rf_box(y, x))}
    for b in info.branches:
        out[b.name] = list(info.rf_box(y, x, rf=b.rf))
    return out


def to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 (in numpy: per-picture work is too small for torch's threads)."""
    a = np.clip(image.detach().cpu().numpy(), 0, 1) * 255 + 0.5
    return np.ascontiguousarray(a.astype(np.uint8).transpose(1, 2, 0))


PACK = "images/examples.pack"  #: the analysis folder's packed example images
_REF = re.compile(r"^(?P<path>[^#]+)#(?P<offset>\d+)\+(?P<length>\d+)$")


class PackWriter:
    """Append JPEGs to one file; each :meth:`add` returns its reference ``<PACK>#<offset>+<length>``."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.at, self.count = f, 0, 0

    def add(self, draw, *args) -> str:
        """``draw(*args, buffer)`` writes one JPEG into ``buffer``; it is appended and addressed."""
        buf = io.BytesIO()
        draw(*args, buf)
        return self.add_bytes(buf.getvalue())

    def add_bytes(self, data: bytes) -> str:
        """Append one encoded picture; its reference."""
        self.f.write(data)
        ref = f"{PACK}#{self.at}+{len(data)}"
        self.at += len(data)
        self.count += 1
        return ref


def is_packed(ref: object) -> bool:
    return isinstance(ref, str) and _REF.match(ref) is not None


def read_packed(root: Path, ref: str) -> bytes:
    """The bytes a pack reference points at, under the analysis folder ``root``."""
    m = _REF.match(ref)
    if m is None:
        raise ValueError(f"not a packed image reference: {ref!r}")
    path = Path(root) / m["path"]
    with open(path, "rb") as f:
        f.seek(int(m["offset"]))
        data = f.read(int(m["length"]))
    if len(data) != int(m["length"]):
        raise ValueError(f"{path} is shorter than {ref!r} says")
    return data


def crop_image(image: np.ndarray, box: tuple[int, int, int, int]) -> Image.Image:
    """Crop (top, left, bottom, right) of an (H, W, 3) uint8 image, shrunk to fit THUMB x THUMB (aspect kept).

    Shrinking averages whole source pixels (box filter): the same picture as a bicubic thumbnail at this 1-2x
    reduction, at a fraction of the cost.
    """
    top, left, bottom, right = box
    img = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    h, w = bottom - top, right - left
    if max(h, w) > THUMB:
        scale = THUMB / max(h, w)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return img


def jpeg(img: Image.Image | np.ndarray) -> bytes:
    """One picture encoded as the analysis stores them (JPEG, quality 85)."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def save_crop(image: np.ndarray, box: tuple[int, int, int, int], path) -> None:
    """:func:`crop_image`, saved as a JPEG."""
    crop_image(image, box).save(path, format="JPEG", quality=85)


def heat_colours(a: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB in [0, 1], a simple black-red-yellow ramp (no colormap lookup needed)."""
    return np.stack([np.clip(3 * a, 0, 1), np.clip(3 * a - 1, 0, 1), np.clip(3 * a - 2, 0, 1)], -1)


def thumb_base(image: Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) image in [0, 1], or its (H, W, 3) uint8 from :func:`to_uint8` -> (THUMB, THUMB, 3) float array
    in [0, 1] (an area average), computed once per image for its heatmaps."""
    pixels = image if isinstance(image, np.ndarray) else to_uint8(image)
    small = Image.fromarray(pixels).resize((THUMB, THUMB), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255


@lru_cache(maxsize=16)
def upsample_matrix(n: int, size: int, geometry: tuple[float, int, int] | None = None) -> np.ndarray:
    """(size, n) linear interpolation matrix (edges clamped): up = A @ map @ A.T.

    ``geometry`` = (offset, jump, input_size) of the layer (``LayerInfo``): unit i
    is anchored at its true centre ``offset + jump * i`` in input pixels, and
    thumbnail pixel t covers input pixel ``(t + 0.5) * input_size / size - 0.5``.
    Without it, units are spread evenly (half-pixel centres), which is only right
    when ``offset = (jump - 1) / 2``.
    """
    if geometry is None:
        src = (np.arange(size) + 0.5) * n / size - 0.5
    else:
        offset, jump, input_size = geometry
        src = ((np.arange(size) + 0.5) * input_size / size - 0.5 - offset) / jump
    src = np.clip(src, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    A = np.zeros((size, n))
    A[np.arange(size), lo] += 1 - (src - lo)
    A[np.arange(size), hi] += src - lo
    return A


LEVELS = 1024  #: heat levels of the colour table (a level is 1/1023 of the feature's max)


@lru_cache(maxsize=1)
def heat_table() -> np.ndarray:
    """(LEVELS, 3) float32: the overlay each heat level adds, ``0.75 * ramp(u) * sqrt(u)`` in 0-255 units."""
    u = np.linspace(0, 1, LEVELS)
    return (0.75 * heat_colours(u) * np.sqrt(u)[:, None] * 255).astype(np.float32)


def heatmaps(base: np.ndarray, amaps: Tensor, vmax: Tensor, info=None, chunk: int = 8) -> np.ndarray:
    """Overlay spatial maps (F, h, w), each divided by its ``vmax`` (F,), on a thumbnail from :func:`thumb_base`:
    (F, THUMB, THUMB, 3) uint8, ``chunk`` maps at a time (their arrays stay in cache) through a colour table.

    ``info`` (the layer's ``LayerInfo``) anchors each unit at its true centre in the image.
    """
    a = (amaps.float() / vmax.float().clamp_min(1e-12).view(-1, 1, 1)).clamp(0, 1).numpy()
    geometry = None if info is None else (float(info.offset), int(info.jump), int(info.input_size))
    A = upsample_matrix(a.shape[1], base.shape[0], geometry).astype(np.float32)
    under = (base * (0.45 * 255)).astype(np.float32)
    table, out = heat_table(), np.empty((len(a), *under.shape), dtype=np.uint8)
    for i in range(0, len(a), chunk):
        up = np.clip(A @ a[i : i + chunk] @ A.T, 0, 1)  # (chunk, THUMB, THUMB)
        level = (up * (LEVELS - 1) + 0.5).astype(np.int32)
        rgb = np.take(table, level, axis=0)
        rgb += under
        out[i : i + chunk] = np.clip(rgb, 0, 255, out=rgb)
    return out


def save_heatmap(base: np.ndarray, amap: Tensor, vmax: float, path, info=None) -> None:
    """One map of :func:`heatmaps`, saved as a JPEG."""
    out = heatmaps(base, amap[None], torch.tensor([vmax]), info)[0]
    Image.fromarray(out).save(path, format="JPEG", quality=85)
