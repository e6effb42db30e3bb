"""Restarts of dead latents on badly reconstructed inputs (after Bricken et al. 2023, "Towards Monosemanticity").

Every ``resample_every`` steps between ``resample_from`` and ``resample_until`` of the run (``TrainConfig``),
each latent that has not fired for the dead window restarts on the direction of one row's residual
``x - x_hat``, the row drawn with probability proportional to its squared residual: decoder row = that unit
direction, encoder row = the same direction times ``enc_scale`` x the median live encoder norm. Bricken et al.
set ``b_enc`` to 0 for a ReLU SAE; under TopK a new latent must also win a row's top k, so ``b_enc`` is set
for it to win its fair share of the batch (measured in benchmarks/LOG.md: with 0 it either wins too many
rows or none). Its Adam moments restart too: first moment 0, second moment the mean of the live rows' (so
the first steps are neither frozen by an old large second moment nor blown up by a zero one). AuxK keeps
training it until it fires.

The rows are drawn from the whole global batch by keys made of each row's bits, the SAE's seed and the step,
so a resumed run and a data-parallel run (which gathers the residuals, its rows in another order) draw the
same rows as one uninterrupted process: no state beyond the step is needed.
"""

from __future__ import annotations

import torch

from ..data.distributed import gather_rows
from .model import TopKSAE


def _row_uniforms(x: torch.Tensor, seed: int) -> torch.Tensor:
    """(B,) numbers in (0, 1) drawn from each row's float32 bits (integer arithmetic, so exactly the same
    whatever the row order or the batch split): a draw that does not depend on where a row sits in the batch."""
    g = torch.Generator().manual_seed(seed)
    mult = torch.randint(1, 2**16, (x.shape[1],), generator=g, dtype=torch.int64).to(x.device)
    h = (x.contiguous().view(torch.int32).to(torch.int64) * mult).sum(1)  # |h| < 2^47 * d: no overflow
    for shift in (33, 29, 32):  # xor-shift-multiply mixing (MurmurHash2's multiplier; int64 products wrap)
        h = (h ^ (h >> shift)) * 0x5BD1E995
        h = h & (2**62 - 1)
    return ((h & (2**24 - 1)).double() + 0.5) / 2**24


def _draw_rows(x: torch.Tensor, w: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` row ids drawn without replacement with probability proportional to ``w`` (an exponential race:
    the largest w / Exp(1)); once the rows with w > 0 run out, they are drawn again in the same order."""
    keys = w.double().log() - (-_row_uniforms(x, seed).log()).log()
    order = keys.argsort(descending=True)[: max(1, int((w > 0).sum()))]
    return order[torch.arange(n, device=order.device) % order.numel()]


@torch.no_grad()
def resample_dead(
    sae: TopKSAE,
    opt: torch.optim.Optimizer,
    dead: torch.Tensor,
    x: torch.Tensor,
    x_hat: torch.Tensor,
    kth: torch.Tensor,
    raw: torch.Tensor,
    step: int,
    enc_scale: float = 1.0,
    distributed: bool = False,
    world: int = 1,
) -> int:
    """Restart the (n,) latent ids ``dead`` on residual directions of this batch; returns how many.

    ``kth``: (B,) each row's k-th largest activation this step. ``raw``: the rows as read; their bits key the
    draw (the scaled rows can differ in the last bit between a one-process and a data-parallel run).

    A restarted latent's ``b_enc`` is set so that it would enter the top k of its fair share of the batch's
    rows (B k / m of them, its source row among them as a rule): a new latent that wins too many rows
    displaces trained ones (FVU falls), one that wins none stays dead.
    """
    n = int(dead.numel())
    if n == 0 or n == sae.d_sae:
        return 0
    e = gather_rows((x - x_hat).float(), distributed, world)
    w = e.pow(2).sum(1)
    if not bool(w.sum() > 0):
        return 0
    rows = _draw_rows(gather_rows(raw.float(), distributed, world), w, n, sae.cfg.seed * 1_000_003 + step)
    u = e[rows]
    u /= u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    live = torch.ones(sae.d_sae, dtype=torch.bool, device=dead.device)
    live[dead] = False
    scale = enc_scale * float(sae.enc[live].norm(dim=1).median()) if sae.dec is not None else 1.0
    # margin of each row over its k-th activation, were the new latent's bias 0; its share-th largest -> -bias
    margin = gather_rows((x - sae.b_dec).float() @ (u * scale).t() - kth.float()[:, None], distributed, world)
    share = max(1, min(margin.shape[0], round(margin.shape[0] * sae.k / sae.d_sae)))
    bias = -margin.topk(share, dim=0).values[-1]
    sae.enc[dead] = (u * scale).to(sae.enc.dtype)
    if sae.dec is not None:
        sae.dec[dead] = u.to(sae.dec.dtype)
    sae.b_enc[dead] = bias.to(sae.b_enc.dtype)
    for p in (sae.enc, sae.dec, sae.b_enc):
        if p is None:
            continue
        state = opt.state.get(p)
        if not state:
            continue
        state["exp_avg"][dead] = 0.0
        sq = state["exp_avg_sq"]
        sq[dead] = sq[live].mean(0)
    return n
