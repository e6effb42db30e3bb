"""An SAE folder as a stage's output: what ``train`` writes and when it counts as complete.

The folder holds ``cfg.json`` and ``sae_weights.safetensors`` (:meth:`.TopKSAE.save`) and, once
training has finished, ``train_summary.json``: that file is the folder's completion marker.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..fsio import atomic_write_json, json_or_none
from .model import CFG_FILE, WEIGHTS_FILE, TopKSAE

#: Written by training once the SAE is final (the folder's completion marker).
SUMMARY_FILE = "train_summary.json"


class SAEFolder:
    """The output folder of ``train``."""

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        """cfg.json and train_summary.json parse, and the weights file holds every tensor its header lists."""
        path = Path(path)
        jsons = (json_or_none(path / name) for name in (CFG_FILE, SUMMARY_FILE))
        return all(isinstance(d, dict) for d in jsons) and safetensors_complete(path / WEIGHTS_FILE)

    @staticmethod
    def write_summary(out: str | Path, summaries: dict[str, dict]) -> None:
        """``train_summary.json`` (each SAE's final metrics by name), atomically, once the SAEs are saved: the
        completion marker, so a run killed before it never looks finished."""
        atomic_write_json(Path(out) / SUMMARY_FILE, summaries, indent=2)

    @staticmethod
    def read(path: str | Path, device: str | torch.device = "cpu") -> TopKSAE:
        """The trained SAE (:meth:`.TopKSAE.load`)."""
        return TopKSAE.load(path, device=device)

    @staticmethod
    def d_sae(path: str | Path) -> int:
        """The SAE's width from its cfg.json (0 where it is absent or unreadable)."""
        cfg = json_or_none(Path(path) / CFG_FILE)
        return int(cfg.get("d_sae", 0)) if isinstance(cfg, dict) else 0


def safetensors_complete(path: Path) -> bool:
    """A ``.safetensors`` file whose header parses, lists at least one tensor and covers the file exactly.

    ``safe_open`` reads the header only and refuses a file shorter or longer than the header says.
    """
    try:
        with safe_open(str(path), framework="numpy") as f:
            return bool(list(f.keys()))
    except (OSError, SafetensorError, ValueError):
        return False
