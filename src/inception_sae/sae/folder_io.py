"""Reading an SAE folder (docs/formats.md, "SAE folder"): ``cfg.json`` + ``sae_weights.safetensors``, checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from ..errors import UserError

WEIGHTS_FILE = "sae_weights.safetensors"
CFG_FILE = "cfg.json"


def read_folder(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(cfg.json, float32 tensors) of the SAE folder ``path``; one-line errors for a missing, unreadable or
    inconsistent file."""
    cfg_path, w_path = path / CFG_FILE, path / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise UserError(f"{path} is not an SAE folder: {p.name} is missing")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise UserError(f"cannot read SAE folder {path}: {cfg_path} is not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise UserError(f"cannot read SAE folder {path}: {cfg_path} holds no JSON object")
    try:
        tensors = load_file(str(w_path))
    except (SafetensorError, OSError) as e:
        raise UserError(
            f"cannot read SAE folder {path}: {w_path.name} is unreadable ({e}); retrain it (or rerun `run`)"
        ) from e
    d_in, d_sae = check_tensors(tensors, path)
    for key, want in (("d_in", d_in), ("d_sae", d_sae)):
        if key in cfg and int(cfg[key]) != want:
            raise UserError(f"{cfg_path}: {key}={cfg[key]} but {WEIGHTS_FILE} has {want}")
    return cfg, tensors


#: cfg.json keys that the SAE's own settings fill (not carried in ``meta``)
OWN_KEYS = ("d_in", "d_sae", "k", "tie", "seed", "architecture", "trained_architecture", "threshold",
            "matryoshka_prefixes")  # fmt: skip


def folder_architecture(cfg: dict, has_threshold: bool, path: Path, known: tuple[str, ...]) -> str:
    """The architecture of a folder: ``trained_architecture``, else from SAELens's ``architecture`` ("topk" or
    none: TopK; "jumprelu", e.g. a SAELens BatchTopK folder: inference by its ``threshold`` tensor)."""
    arch = cfg.get("trained_architecture")
    if arch is None:
        arch = "batchtopk" if cfg.get("architecture") == "jumprelu" else "topk"
    if arch not in known:
        raise UserError(f"{path / CFG_FILE}: trained_architecture {arch!r} is not one of {', '.join(known)}")
    if arch != "topk" and not has_threshold:
        raise UserError(f"{path}: a {arch} SAE needs a 'threshold' tensor in {WEIGHTS_FILE}")
    return str(arch)


def check_tensors(t: dict[str, Tensor], path: Path) -> tuple[int, int]:
    """Validate the four tensors' presence, dtype and mutual shapes; return (d_in, d_sae)."""
    missing = [n for n in ("W_enc", "W_dec", "b_enc", "b_dec") if n not in t]
    if missing:
        raise UserError(f"{path / WEIGHTS_FILE} lacks {', '.join(missing)}")
    if t["W_enc"].ndim != 2:
        raise UserError(f"{path}: W_enc must be 2-D (d_in, d_sae), got {tuple(t['W_enc'].shape)}")
    d_in, d_sae = t["W_enc"].shape
    want = {"W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    if "threshold" in t:
        want["threshold"] = (d_sae,)
    for name, shape in want.items():
        if tuple(t[name].shape) != shape:
            raise UserError(f"{path}: {name} has shape {tuple(t[name].shape)}, expected {shape} from W_enc")
    for name, x in t.items():
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise UserError(f"{path}: {name} is not a finite floating-point tensor")
        t[name] = x.float()
    return int(d_in), int(d_sae)
