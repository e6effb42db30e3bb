"""``explain``: one image -> its top classes, each split into SAE-feature terms, with heatmaps.

The result is a JSON-able dict shared by the CLI report (``explain/report.py``) and the live box
of ``site serve --live``; heatmaps are JPEG data URIs so that the report is one self-contained file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from ..fsio import read_json
from .decompose import EXACT_LAYER, ClassSplit, ImageCodes, image_codes, split_logits

LABELLED = range(1, 1001)  #: inception5h's labelled outputs (0 is a dummy, 1001-1007 unlabelled)


@dataclass(frozen=True)
class ExplainConfig:
    """How much of an image's explanation to compute and show (the ``explain`` command's flags)."""

    top_classes: int = 3
    """the model's top classes explained when no class is asked for"""
    top_features: int = 8
    """features shown per class and direction (for and against)"""
    steps: int = 32
    """integrated-gradient steps (layers before mixed5b; mixed5b is exact)"""

    def __post_init__(self) -> None:
        if min(self.top_classes, self.top_features, self.steps) < 1:
            raise UserError("--top-classes, --top-features and --steps must be at least 1")


def feature_labels(analysis: Path | None) -> Callable[[int], str]:
    """Feature id -> its label from an analysis folder's ``features/<id>.json`` ("" without one)."""
    if analysis is None:
        return lambda i: ""
    feats = Path(analysis) / "features"
    if not feats.is_dir():
        raise UserError(f"{analysis} is not an analysis folder: features/ is missing")
    cache: dict[int, str] = {}

    def label(i: int) -> str:
        if i not in cache:
            p = feats / f"{i}.json"
            try:
                cache[i] = str(read_json(p, {}).get("label") or "")
            except UserError:  # an unreadable feature file only costs its label
                cache[i] = ""
        return cache[i]

    return label


def method_note(layer: str, steps: int) -> str:
    if layer == EXACT_LAYER:
        return ("exact: mixed5b -> global average pool -> linear classifier, so the logit is the sum of the "
                "feature terms, the SAE error term, the SAE decoder bias term and the classifier bias")  # fmt: skip
    return (
        f"APPROXIMATION: integrated gradients ({steps} steps) from all-zero {layer} activations; the parts sum "
        "to the IG total, shown next to the true logit difference logit(image) - logit(zero activations)"
    )


def feature_rows(s: ClassSplit, ic: ImageCodes, base: np.ndarray, order: list[int], denom: float, label, link) -> list:
    from .overlay import overlay

    rows = []
    H, W = ic.grid
    for i in order:
        amap = ic.codes[:, i].view(H, W).numpy()
        peak = float(amap.max())
        rows.append({
            "id": i, "term": float(s.features[i]), "share": float(s.features[i]) / denom if denom else None,
            "mean_act": float(ic.codes[:, i].mean()), "max_act": peak, "label": label(i),
            "link": link(i) if link else None, "heatmap": overlay(base, amap, peak) if peak > 0 else None,
        })  # fmt: skip
    return rows


def class_entry(s: ClassSplit, probs, names, ic: ImageCodes, base, top: int, label, link, exact: bool) -> dict:
    t = s.features
    up = [int(i) for i in t.argsort(descending=True)[:top] if t[i] > 0]
    down = [int(i) for i in t.argsort()[:top] if t[i] < 0]
    denom = s.target
    parts = {"features": float(t.sum()), "error": s.error, "decoder_bias": s.decoder_bias, "bias": s.bias}
    return {
        "index": s.index, "name": names[s.index], "prob": float(probs[s.index]),
        "target": s.target, "target_kind": "logit" if exact else "logit(image) - logit(zero activations)",
        "total": s.total, "residual": s.target - s.total, "parts": parts,
        "error_share": s.error / denom if denom else None,
        "active_features": int((t != 0).sum()),
        "up": feature_rows(s, ic, base, up, denom, label, link),
        "down": feature_rows(s, ic, base, down, denom, label, link),
    }  # fmt: skip


def explain_image(
    model,
    sae,
    img: Image.Image,
    *,
    classes: list[int] | None = None,
    cfg: ExplainConfig = ExplainConfig(),
    label: Callable[[int], str] | None = None,
    link: Callable[[int], str] | None = None,
    names=None,
) -> dict:
    """Explain the model's top classes (or ``classes``) on ``img`` (a 224x224 RGB PIL image)."""
    from ..data.images import to_tensor
    from ..data.labels import load_labels
    from .overlay import data_uri

    layer = sae.layer
    if not layer:
        raise UserError("the SAE's cfg.json names no 'layer': cannot tell where to read activations")
    names = names if names is not None else load_labels()
    device = next(model.parameters()).device
    x = to_tensor(img)[None].to(device)
    with torch.no_grad():
        logits = model(x)[0].float().cpu()
    probs = logits.softmax(0)
    if classes is None:
        lab = torch.tensor(list(LABELLED))
        classes = lab[logits[lab].topk(cfg.top_classes).indices].tolist()
    for c in classes:
        if not 0 <= c < logits.numel():
            raise UserError(f"class {c} is outside 0..{logits.numel() - 1}")
    ic = image_codes(model, sae, x, layer)
    splits = split_logits(model, sae, ic, layer, classes, cfg.steps)
    if layer == EXACT_LAYER:  # check the split against the model's own (float32) logit, not our float64 one
        splits = [s._replace(target=float(logits[s.index])) for s in splits]
    base = np.asarray(img, dtype=np.float32) / 255.0
    exact = layer == EXACT_LAYER
    v = ic.acts.cpu().permute(1, 2, 0).reshape(ic.error.shape)
    fvu = float(ic.error.pow(2).sum() / (v - v.mean(0)).pow(2).sum().clamp_min(1e-12))
    small = img.copy()
    small.thumbnail((224, 224))
    return {
        "layer": layer, "exact": exact, "method": method_note(layer, cfg.steps), "steps": None if exact else cfg.steps,
        "identity": getattr(model, "identity", "unknown"), "positions": ic.grid[0] * ic.grid[1],
        "image": data_uri(small), "fvu": fvu,
        "classes": [class_entry(s, probs, names, ic, base, cfg.top_features, label or (lambda i: ""), link, exact)
                    for s in splits],
        "notes": {"share": "a part's share is its value divided by the class's target (logit, or logit difference)",
                  "fvu": "SAE error on this image: sum of squared errors / total variance over its positions",
                  "heatmaps": "each feature's activation on the image, scaled to its own maximum"},
    }  # fmt: skip
