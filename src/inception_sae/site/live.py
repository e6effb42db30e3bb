"""The live box of ``site serve --live``: run model + SAE on an uploaded image, return top features.

The SAE is read with :class:`inception_sae.sae.model.TopKSAE` when that module is present, else
with a small reader of the contract's folder format (``cfg.json`` + ``sae_weights.safetensors``)
and the TopK encoder of Gao et al. (2024): ``z = ReLU(TopK(W_enc^T (v - b_dec) + b_enc))``.
"""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError


def load_sae(path: Path, device: str):
    """(sae, layer, d_sae) of an SAE folder, through :meth:`TopKSAE.load`."""
    from ..sae.model import TopKSAE

    sae = TopKSAE.load(Path(path), device=device)
    return sae, sae.layer, sae.d_sae


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
    up = np.asarray(a.resize(image.shape[1::-1], Image.BILINEAR), dtype=np.float32) / 255.0  # (H, W)
    out = np.clip(image * 0.45 + 0.75 * heat_rgb(up) * np.sqrt(up)[..., None], 0, 1)
    img = Image.fromarray((out * 255).astype(np.uint8))
    img.thumbnail((side, side))
    return data_uri(img)


class LiveModel:
    """Model + SAE held by the server; :meth:`analyse` is thread-safe (one image at a time)."""

    def __init__(self, sae: Path, weights=None, seed: int = 0, device: str = "cpu", top: int = 12, model=None) -> None:
        from ..models import load_model

        self.sae, layer, self.d_sae = load_sae(sae, device)
        if not layer:
            raise UserError(f"{sae}/cfg.json names no 'layer': the live box cannot tell where to read activations")
        self.layer, self.device, self.top = layer, device, top
        self.model = model if model is not None else load_model(weights, seed=seed, device=device)
        channels = self.model.layer_info(layer).channels
        if channels != self.sae.d_in:
            raise UserError(f"the SAE expects d_in={self.sae.d_in} but {layer} has {channels} channels")
        self.identity = getattr(self.model, "identity", "unknown")
        self.lock = threading.Lock()

    def info(self) -> dict:
        return {"enabled": True, "layer": self.layer, "identity": self.identity, "features": self.d_sae}

    @torch.no_grad()
    def analyse(self, data: bytes) -> dict:
        """Top features of one encoded image (raises ``ImageDecodeError`` for undecodable bytes)."""
        from ..data.images import Preprocess, decode_image, resize_crop, to_tensor

        img = resize_crop(decode_image(io.BytesIO(data)), Preprocess(resize=256, crop=224))
        x = to_tensor(img)[None].to(self.device)  # (1, 3, 224, 224)
        with self.lock:
            acts = self.model.capture(x, [self.layer])[self.layer][0]  # (C, H, W), post-ReLU
            C, H, W = acts.shape
            values, indices = self.sae.encode(acts.permute(1, 2, 0).reshape(-1, C))  # (HW, k)
        dense = torch.zeros(H * W, self.d_sae).scatter_(1, indices.cpu(), values.float().cpu().clamp_min(0))
        peak = dense.max(0).values  # (m,)
        n = min(self.top, int((peak > 0).sum()))
        order = peak.topk(n).indices.tolist() if n else []
        base = np.asarray(img, dtype=np.float32) / 255.0
        feats = [{"id": f, "max": float(peak[f]), "mean": float(dense[:, f].mean()),
                  "heatmap": overlay(base, dense[:, f].view(H, W).numpy(), float(peak[f]))} for f in order]  # fmt: skip
        small = img.copy()
        small.thumbnail((148, 148))
        return {"layer": self.layer, "positions": H * W, "image": data_uri(small), "features": feats,
                "note": "heatmaps scaled per feature to its max on this image"}  # fmt: skip

    def explain(self, data: bytes, classes: list[int] | None = None) -> dict:
        """The image's top classes split into SAE-feature terms (see :mod:`inception_sae.explain`)."""
        from ..data.images import Preprocess, decode_image, resize_crop
        from ..explain import explain_image

        img = resize_crop(decode_image(io.BytesIO(data)), Preprocess(resize=256, crop=224))
        with self.lock:
            return explain_image(self.model, self.sae, img, classes=classes, top_classes=3, top_features=6,
                                 steps=16, link=lambda i: f"#/{self.layer}/f/{i}")  # fmt: skip
