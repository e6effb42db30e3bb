"""Read an SAE folder's weights for feature visualisation.

Reads through :meth:`inception_sae.sae.model.TopKSAE.load` (which also reads
hand-made contract folders), after checking the ``cfg.json`` keys featvis needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import UserError

WEIGHTS_FILE = "sae_weights.safetensors"
CFG_FILE = "cfg.json"
KEYS = ("W_enc", "W_dec", "b_enc", "b_dec")


@dataclass(frozen=True)
class SAEWeights:
    """An SAE's weights in raw activation units, detached, float32, on the CPU."""

    W_enc: Tensor  #: (d_in, d_sae)
    W_dec: Tensor  #: (d_sae, d_in)
    b_enc: Tensor  #: (d_sae,)
    b_dec: Tensor  #: (d_in,)
    layer: str  #: capture name of the layer it was trained on
    cfg: dict[str, Any]  #: the folder's cfg.json

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def __post_init__(self) -> None:
        d_in, d_sae = self.W_enc.shape
        want = {"W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
        for key, shape in want.items():
            if tuple(getattr(self, key).shape) != shape:
                raise UserError(f"SAE {key} has shape {tuple(getattr(self, key).shape)}, expected {shape}")


def load_sae_weights(folder: str | Path) -> SAEWeights:
    """Load an SAE folder (``cfg.json`` + ``sae_weights.safetensors``) for featvis."""
    folder = Path(folder)
    cfg_path = folder / CFG_FILE
    if not cfg_path.is_file():
        raise UserError(f"{folder} has no {CFG_FILE}; pass an SAE folder written by `inception-sae train`")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg_path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if "layer" not in cfg:
        raise UserError(f"{cfg_path} has no 'layer' key; featvis needs to know which layer the SAE reads")
    from ..sae.model import TopKSAE

    sae = TopKSAE.load(folder)  # raw activation units: any input scale is folded on save
    tensors = {k: getattr(sae, k).detach().float().cpu() for k in KEYS}
    return SAEWeights(**tensors, layer=str(cfg["layer"]), cfg=cfg)


def write_sae_folder(folder: str | Path, weights: dict[str, Tensor], layer: str, **cfg: Any) -> Path:
    """Write a minimal contract SAE folder (for tests and bring-your-own weights)."""
    from ..fsio import atomic_save_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = weights["W_enc"].shape
    full = {
        "d_in": d_in,
        "d_sae": d_sae,
        "k": cfg.pop("k", 8),
        "architecture": "topk",
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "layer": layer,
        "model": cfg.pop("model", "random:0"),
        **cfg,
    }
    (folder / CFG_FILE).write_text(json.dumps(full, indent=2))
    atomic_save_safetensors(folder / WEIGHTS_FILE, {k: weights[k].contiguous().float() for k in KEYS})
    return folder
