"""The live box of ``site serve --live``: run model + SAE on an uploaded image, return top features.

The SAE folder is read by :meth:`inception_sae.sae.model.TopKSAE.load`. For the top features, uploads are
preprocessed as the SAE's training images were (its cfg.json ``data``: resize, crop), so the layer's grid
is the one the SAE was trained on; a folder that records none gets the model's own 256/224, and ``info``
says which. The explanation of classes always uses the model's own 256/224, as ``inception-sae explain``.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import torch

from ..explain.overlay import data_uri, overlay


class LiveModel:
    """Model + SAE held by the server; :meth:`analyse` is thread-safe (one image at a time)."""

    def __init__(self, sae: Path, weights=None, seed: int = 0, device: str = "cpu", top: int = 12, model=None) -> None:
        from ..models import load_model
        from ..sae.model import load_layer_sae

        self.sae = load_layer_sae(sae, device, needed_by="the live box")
        assert self.sae.layer is not None  # load_layer_sae refuses a folder without one
        self.layer, self.d_sae, self.device, self.top = self.sae.layer, self.sae.d_sae, device, top
        self.model = model if model is not None else load_model(weights, seed=seed, device=device)
        self.identity = getattr(self.model, "identity", "unknown")
        self.preprocess, self.preprocess_from = live_preprocess(self.sae.meta, sae)
        self.lock = threading.Lock()

    def info(self) -> dict:
        pre = {"resize": self.preprocess.resize, "crop": self.preprocess.crop, "from": self.preprocess_from}
        return {"enabled": True, "layer": self.layer, "identity": self.identity, "features": self.d_sae,
                "untrained": str(self.identity).startswith("random:"), "preprocess": pre}  # fmt: skip

    @torch.no_grad()
    def analyse(self, data: bytes) -> dict:
        """Top features of one encoded image (raises ``ImageDecodeError`` for undecodable bytes)."""
        from ..data.images import decode_image, resize_crop, to_tensor

        img = resize_crop(decode_image(io.BytesIO(data)), self.preprocess)
        x = to_tensor(img)[None].to(self.device)  # (1, 3, crop, crop)
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
        from ..explain.run import ExplainConfig

        # the model's own input, as `inception-sae explain`: the classes being explained need a full-size image
        img = resize_crop(decode_image(io.BytesIO(data)), Preprocess(resize=256, crop=224))
        with self.lock:
            cfg = ExplainConfig(top_features=6, steps=16)  # a live answer: fewer features and steps
            return explain_image(self.model, self.sae, img, classes=classes, cfg=cfg,
                                 link=lambda i: f"#/{self.layer}/f/{i}")  # fmt: skip


def live_preprocess(meta: dict, sae: Path):
    """The SAE's training preprocessing and where it was read; the model's own 256/224 when none is recorded."""
    from ..data.images import Preprocess
    from ..sae.provenance import harvest_of

    harvest = harvest_of(meta, sae)
    if harvest.preprocess and harvest.crop:
        return harvest.preprocessing(), harvest.preprocess_from
    return Preprocess(resize=256, crop=224), "the model's own input (the SAE folder records no preprocessing)"
