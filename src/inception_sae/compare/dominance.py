"""Dominant branch of each feature of an SAE, for reporting which branch matched features live in.

Read from an analysis folder's ``features/<id>.json`` (field ``dominant_branch``: a branch name
or "none") when one is given; otherwise computed from the decoder rows with the branch analysis
of :mod:`inception_sae.analysis.branches` (permutation null in raw units: no channel scale).
Layers that are not inception blocks have no branches: every feature is "none".
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..fsio import read_json


def from_analysis(folder: Path, m: int) -> list[str]:
    """``dominant_branch`` of features 0..m-1 from an analysis folder ("none" where absent)."""
    feats = Path(folder) / "features"
    if not feats.is_dir():
        raise UserError(f"{folder} is not an analysis folder: features/ is missing")
    out = []
    for i in range(m):
        p = feats / f"{i}.json"
        out.append(str(read_json(p, {}).get("dominant_branch") or "none"))
    return out


def from_decoder(W_dec, layer: str | None, scale=None) -> list[str]:
    """Dominant branch of every decoder row, from the project's branch statistics."""
    from ..models.layers import layer_info

    try:
        info = layer_info(layer) if layer else None
    except KeyError:
        info = None
    if info is None or not info.branches:
        return ["none"] * W_dec.shape[0]
    from ..analysis import branches as br

    slices = [b.slice for b in info.branches]
    names = [b.name for b in info.branches]
    if scale is not None:
        scale = scale.clamp_min(1e-6 * float(scale.max().clamp_min(1e-12)))  # a silent channel must not divide by 0
    return br.dominant_branches(W_dec.detach().float().cpu(), slices, names, scale)


def dominant_branches(sae, analysis: Path | None = None, scale=None) -> list[str]:
    """One branch name (or "none") per feature of ``sae`` (``scale``: channel RMS, when known)."""
    if analysis is not None:
        return from_analysis(analysis, sae.d_sae)
    return from_decoder(sae.W_dec, sae.layer, scale)
