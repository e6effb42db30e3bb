"""Pictures as data URIs: an image, and a feature's activation map as a heatmap over it."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def heat_rgb(a: np.ndarray) -> np.ndarray:
    """[0, 1] -> black-red-yellow RGB in [0, 1] (the analysis stage's ramp)."""
    return np.stack([np.clip(3 * a, 0, 1), np.clip(3 * a - 1, 0, 1), np.clip(3 * a - 2, 0, 1)], -1)


def data_uri(img: Image.Image, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=85)
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def overlay(image: np.ndarray, amap: np.ndarray, vmax: float, side: int = 148) -> str:
    """Heatmap of a (h, w) map over an (H, W, 3) float image in [0, 1], as a JPEG data URI."""
    a = Image.fromarray((np.clip(amap / max(vmax, 1e-12), 0, 1) * 255).astype(np.uint8))
    up = np.asarray(a.resize(image.shape[1::-1], Image.Resampling.BILINEAR), dtype=np.float32) / 255.0  # (H, W)
    out = np.clip(image * 0.45 + 0.75 * heat_rgb(up) * np.sqrt(up)[..., None], 0, 1)
    img = Image.fromarray((out * 255).astype(np.uint8))
    img.thumbnail((side, side))
    return data_uri(img)
