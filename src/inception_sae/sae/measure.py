"""The measurements of `eval`: reconstruction on store vectors and splice-back on images (the stage, its config
and its report are in ``eval_stage``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from .metrics import FVUAccumulator, firing_stats, firing_summary, frequency_histogram
from .model import TopKSAE


@dataclass
class VectorEval:
    """Reconstruction quality on a set of vectors."""

    n: int  #: vectors evaluated
    fvu: float  #: fraction of variance unexplained (per-dimension mean)
    l0: float  #: mean active latents per vector
    dead_fraction: float  #: latents that never fired on these vectors
    dense_fraction: float  #: latents firing on > 10% of them
    histogram: dict = field(repr=False, default_factory=dict)  #: log-spaced firing-frequency histogram
    firing: dict = field(default_factory=dict)  #: dead/dense with their sample and intervals (metrics.firing_summary)
    nonfinite_skipped: int = 0  #: input vectors holding NaN/inf, left out of every number above


@dataclass
class SpliceEval:
    """The rest of the network run on reconstructed activations vs the original."""

    images: int  #: images evaluated
    top1_agreement: float  #: share of images whose top-1 class is unchanged
    kl: float  #: mean KL(p_original || p_spliced) in nats
    fvu: float  #: FVU over all positions of these images
    classes_predicted: int = 0  #: distinct top-1 classes of the original network on these images
    note: str | None = None  #: why top-1 agreement cannot carry information here, when it cannot


class _Acc:
    def __init__(self, sae: TopKSAE) -> None:
        self.fvu = FVUAccumulator(sae.d_in)
        self.counts = torch.zeros(sae.d_sae, dtype=torch.float64)
        self.active = 0.0

    @torch.no_grad()
    def add(self, sae: TopKSAE, x: torch.Tensor) -> torch.Tensor:
        vals, idx = sae.encode(x)
        x_hat = sae.decode(vals, idx)
        live = vals > 0
        self.fvu.add(x, x_hat)
        self.counts += torch.bincount(idx[live].cpu(), minlength=sae.d_sae).double()
        self.active += float(live.sum())
        return x_hat

    def result(self) -> VectorEval:
        n = self.fvu.n
        fs = firing_stats(self.counts, n)
        return VectorEval(
            n, self.fvu.value, self.active / max(n, 1), fs.dead_fraction, fs.dense_fraction,
            frequency_histogram(fs.frequency), firing_summary(self.counts, n, "these vectors"),
        )  # fmt: skip


def check_dims(sae: TopKSAE, d: int, layer: str | None, what: str) -> None:
    """One-line UserError when the SAE does not fit the data."""
    if sae.layer and layer and sae.layer != layer:
        raise UserError(f"the SAE was trained on layer {sae.layer} but {what} holds {layer}")
    if d != sae.d_in:
        raise UserError(f"the SAE expects d={sae.d_in} but {what} has d={d}")


def evaluate_vectors(sae: TopKSAE, vectors: Any, batch_size: int = 4096, device: str = "cpu") -> VectorEval:
    """FVU, L0, dead/dense fractions over an (N, d) array-like (e.g. held-out store rows)."""
    acc, skipped = _Acc(sae), 0
    for start in range(0, len(vectors), batch_size):
        x = torch.as_tensor(vectors[start : start + batch_size], dtype=torch.float32).to(device)
        ok = torch.isfinite(x).all(1)
        skipped += int((~ok).sum())
        acc.add(sae, x[ok])
    result = acc.result()
    result.nonfinite_skipped = skipped
    return result


class _SpliceAcc:
    """Top-1 agreement, KL and the reconstruction statistics of one position set."""

    def __init__(self, sae: TopKSAE) -> None:
        self.acc, self.n, self.agree, self.kl_sum = _Acc(sae), 0, 0, 0.0
        self.classes: set[int] = set()

    def add_logits(self, logits: torch.Tensor, spliced: torch.Tensor) -> None:
        logp, logq = F.log_softmax(logits, -1), F.log_softmax(spliced, -1)
        self.kl_sum += float((logp.exp() * (logp - logq)).sum())
        self.agree += int((logits.argmax(-1) == spliced.argmax(-1)).sum())
        self.classes.update(logits.argmax(-1).tolist())
        self.n += logits.shape[0]

    def result(self) -> tuple[SpliceEval, VectorEval]:
        if self.n == 0:
            raise UserError("no images could be decoded for splice-back")
        vec = self.acc.result()
        note = None
        if len(self.classes) == 1 and self.n > 1:
            note = (f"the network predicts one class for all {self.n} images, so top-1 agreement carries no "
                    "information here (a random network does this); read the KL")  # fmt: skip
        return SpliceEval(self.n, self.agree / self.n, self.kl_sum / self.n, vec.fvu, len(self.classes), note), vec


@torch.no_grad()
def splice_both(sae: TopKSAE, model, layer: str, batches, device: str = "cpu", select=None):
    """Splice-back at every position, and (with ``select``) at selected positions only, in one pass.

    ``select(acts (B, C, H, W), indices) -> (B, H*W) bool`` marks the positions to
    replace by their reconstruction (the others keep their activations); its FVU,
    L0 and firing statistics are over those positions only. Returns ``((SpliceEval,
    VectorEval) for every position, the same for the selected positions or None)``.
    """
    every, chosen = _SpliceAcc(sae), (_SpliceAcc(sae) if select is not None else None)
    for images, *rest in batches:
        idx = rest[0] if rest else list(range(images.shape[0]))
        images = images.to(device)
        acts = model.capture(images, [layer])[layer]  # (B, C, H, W)
        B, C, H, W = acts.shape
        flat = acts.permute(0, 2, 3, 1).reshape(-1, C)  # one vector per position
        recon_flat = every.acc.add(sae, flat)
        recon = recon_flat.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
        logits = model.forward_from(layer, acts)
        every.add_logits(logits, model.forward_from(layer, recon))
        if chosen is not None:
            mask = select(acts, idx).reshape(-1)  # (B*H*W,) in (b, y, x) order, as ``flat``
            chosen.acc.add(sae, flat[mask])
            mixed = torch.where(mask[:, None], recon_flat, flat).reshape(B, H, W, C).permute(0, 3, 1, 2)
            chosen.add_logits(logits, model.forward_from(layer, mixed.contiguous()))
    return every.result(), (chosen.result() if chosen is not None else None)


def splice_back(sae: TopKSAE, model, layer: str, batches, device: str = "cpu") -> tuple[SpliceEval, VectorEval]:
    """Replace ``layer``'s activations by their reconstruction at every position; compare logits.

    ``batches`` yields (images (B, 3, H, W), indices, ...) tuples, e.g. :func:`~..data.images.iter_batches`.
    """
    every, _ = splice_both(sae, model, layer, batches, device)
    return every
