"""Load an SAE folder for analysis through :meth:`inception_sae.sae.model.TopKSAE.load`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import UserError


def load_sae(path: str | Path, device: str = "cpu") -> tuple[Any, dict]:
    """(sae with ``encode``/``W_dec``, cfg dict) from an SAE folder."""
    path = Path(path)
    if not (path / "cfg.json").is_file():
        raise UserError(f"{path} is not an SAE folder: cfg.json is missing")
    from ..sae.model import TopKSAE

    sae = TopKSAE.load(path, device=device)  # one-line errors naming the broken file
    return sae, json.loads((path / "cfg.json").read_text())


def decoder(sae) -> Tensor:
    """(m, d) decoder rows as a detached float tensor."""
    return sae.W_dec.detach().float().cpu()
