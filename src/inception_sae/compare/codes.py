"""Dense SAE codes of two layers on the same images, brought onto one grid, fed to the correlation.

For each image batch the model is run once up to the later layer; each side's activations are
encoded position by position with its SAE (``TopKSAE.encode``) and scattered into a dense
(B, m, H, W) code map. Where the grids differ the finer map is average-pooled onto the coarser
one (``adaptive_avg_pool2d``), so both sides describe the same image regions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from .match import NULL_SHUFFLES, CorrelationAccumulator


@torch.no_grad()
def dense_code_map(sae, acts: Tensor, chunk: int = 4096) -> Tensor:
    """(B, C, H, W) activations -> (B, m, H, W) non-negative SAE codes."""
    B, C, H, W = acts.shape
    v = acts.permute(0, 2, 3, 1).reshape(-1, C)
    out = torch.zeros(v.shape[0], sae.d_sae)
    for s in range(0, v.shape[0], chunk):
        values, indices = sae.encode(v[s : s + chunk])
        out[s : s + chunk].scatter_(1, indices.long().cpu(), values.float().cpu().clamp_min(0))
    return out.view(B, H, W, -1).permute(0, 3, 1, 2)


def common_grid(za: Tensor, zb: Tensor) -> tuple[Tensor, Tensor]:
    """Pool the finer of two (B, m, H, W) code maps onto the coarser grid; return (B, P, m) each."""
    ha, wa = za.shape[-2:]
    hb, wb = zb.shape[-2:]
    h, w = min(ha, hb), min(wa, wb)
    if (ha, wa) != (h, w):
        za = F.adaptive_avg_pool2d(za, (h, w))
    if (hb, wb) != (h, w):
        zb = F.adaptive_avg_pool2d(zb, (h, w))
    return za.flatten(2).transpose(1, 2), zb.flatten(2).transpose(1, 2)


def accumulate(
    model,
    sae_a,
    sae_b,
    layer_a: str,
    layer_b: str,
    batches: Iterable[Tensor],
    device: str = "cpu",
    on_batch: Callable[[int], None] | None = None,
    shuffles: int = NULL_SHUFFLES,
    seed: int = 0,
) -> tuple[CorrelationAccumulator, int]:
    """Correlations of the two SAEs' codes over the images of ``batches`` (and ``shuffles`` null pairings
    of them); also the positions per image."""
    acc = CorrelationAccumulator(sae_a.d_sae, sae_b.d_sae, shuffles, seed)
    acc.channel_sq = {layer_a: torch.zeros(sae_a.d_in, dtype=torch.float64),
                      layer_b: torch.zeros(sae_b.d_in, dtype=torch.float64)}  # fmt: skip
    acc.channel_n = {layer_a: 0, layer_b: 0}
    positions = 0
    for images in batches:
        if images.shape[0] < 2:
            continue  # the shuffled-image null needs a second image; a lone last image is dropped
        with torch.no_grad():
            acts = model.capture(images.to(device), list(dict.fromkeys([layer_a, layer_b])))
        for name in acc.channel_sq:  # channel RMS: the branch null's scale (see analysis/branches.py)
            x = acts[name].float()
            acc.channel_sq[name] += x.pow(2).sum((0, 2, 3)).double().cpu()
            acc.channel_n[name] += x.shape[0] * x.shape[2] * x.shape[3]
        za, zb = common_grid(dense_code_map(sae_a, acts[layer_a]), dense_code_map(sae_b, acts[layer_b]))
        positions = za.shape[1]
        acc.add(za, zb)
        if on_batch is not None:
            on_batch(images.shape[0])
    return acc, positions
