"""A class logit split into one term per SAE feature, the SAE's error, and biases.

At every position p of the layer the activation splits exactly as
``a_p = sum_i z_{p,i} d_i + b_dec + e_p`` (SAE codes z, decoder rows d_i, reconstruction error e).

**mixed5b (exact).** The head is a global average pool and one linear layer (no dropout at
inference, no auxiliary head), so with ``zbar_i`` the mean of feature i over positions and
``ebar`` the mean error::

    logit_c = sum_i zbar_i (W_c . d_i) + W_c . ebar + W_c . b_dec + b_c

to float precision (computed here in float64).

**Other layers (approximation).** Integrated gradients (Sundararajan et al. 2017) from the
all-zero activation map to the image's: ``G = mean_s grad logit_c(alpha_s a)`` over ``steps``
points ``alpha_s = (s - 1/2) / steps``, then the same split of ``sum_p G_p . a_p`` into
``sum_p z_{p,i} (G_p . d_i)`` per feature, ``sum_p G_p . e_p`` and ``sum_p G_p . b_dec``.
The parts sum to the IG total, which approximates the true ``logit_c(a) - logit_c(0)``; both
numbers are reported. With ``steps=1`` and ``alpha=1`` this is gradient x activation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

EXACT_LAYER = "mixed5b"


class ImageCodes(NamedTuple):
    """One image at one layer: activations, dense SAE codes and the reconstruction error."""

    acts: Tensor  #: (C, H, W) post-ReLU activations
    codes: Tensor  #: (H*W, m) non-negative SAE codes
    error: Tensor  #: (H*W, C) activation minus reconstruction
    grid: tuple[int, int]  #: (H, W)


class ClassSplit(NamedTuple):
    """The split of one class's logit (or logit difference) into parts."""

    #: the class (a field that shadows tuple.index, which is never called on a split)
    index: int  # type: ignore[assignment]
    target: float  #: mixed5b: the model's logit; otherwise logit(a) - logit(0), the true difference
    features: Tensor  #: (m,) float64 term of every feature
    error: float  #: the SAE reconstruction error's term
    decoder_bias: float  #: the SAE decoder bias's term (W_c . b_dec, or sum_p G_p . b_dec)
    bias: float  #: the classifier's bias b_c (exact split only; 0 otherwise)

    @property
    def total(self) -> float:
        """Sum of every part (equals ``target`` exactly for mixed5b; approximately otherwise)."""
        return float(self.features.sum()) + self.error + self.decoder_bias + self.bias


@torch.no_grad()
def image_codes(model, sae, x: Tensor, layer: str) -> ImageCodes:
    """Activations of one image ``x`` (1, 3, H, W), its dense SAE codes and the SAE's error."""
    acts = model.capture(x, [layer])[layer][0].float()
    C, H, W = acts.shape
    v = acts.permute(1, 2, 0).reshape(-1, C)
    values, indices = sae.encode(v)
    values = values.float().clamp_min(0)
    recon = sae.decode(values, indices).float()
    codes = torch.zeros(v.shape[0], sae.d_sae, device=v.device).scatter_(1, indices.long(), values)
    return ImageCodes(acts, codes.cpu(), (v - recon).cpu(), (H, W))


def exact_split(model, sae, ic: ImageCodes, classes: list[int]) -> list[ClassSplit]:
    """mixed5b: the exact split of each class logit (float64)."""
    W_fc = model.fc.weight.detach().double().cpu()[classes]  # (n, C)
    b_fc = model.fc.bias.detach().double().cpu()[classes]
    D = sae.W_dec.detach().double().cpu()  # (m, C)
    zbar = ic.codes.double().mean(0)  # (m,)
    ebar = ic.error.double().mean(0)  # (C,)
    b_dec = sae.b_dec.detach().double().cpu()
    terms = zbar[None, :] * (W_fc @ D.T)  # (n, m)
    err, dec_b = W_fc @ ebar, W_fc @ b_dec
    pooled = ic.acts.double().cpu().mean((1, 2))
    logits = W_fc @ pooled + b_fc
    return [
        ClassSplit(c, float(logits[j]), terms[j], float(err[j]), float(dec_b[j]), float(b_fc[j]))
        for j, c in enumerate(classes)
    ]


def integrated_gradients(model, layer: str, acts: Tensor, cls: int, steps: int = 32) -> tuple[Tensor, float]:
    """Mean gradient (C, H, W) of ``logit_cls`` along the straight path 0 -> ``acts``; and logit(a) - logit(0)."""
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps if steps > 1 else torch.ones(1)
    grads = torch.zeros_like(acts)
    for chunk in alphas.split(8):
        a = (chunk.view(-1, 1, 1, 1).to(acts.device) * acts[None]).requires_grad_(True)
        logit = model.forward_from(layer, a)[:, cls].sum()
        (g,) = torch.autograd.grad(logit, a)
        grads += g.sum(0)
    with torch.no_grad():
        ends = model.forward_from(layer, torch.stack([acts, torch.zeros_like(acts)]))[:, cls]
    return grads / len(alphas), float(ends[0] - ends[1])


def gradient_split(model, sae, ic: ImageCodes, layer: str, classes: list[int], steps: int = 32) -> list[ClassSplit]:
    """Other layers: the integrated-gradients split of ``logit_c(a) - logit_c(0)`` (approximate)."""
    D = sae.W_dec.detach().double().cpu()
    b_dec = sae.b_dec.detach().double().cpu()
    out = []
    for c in classes:
        G, diff = integrated_gradients(model, layer, ic.acts, c, steps)
        Gp = G.double().cpu().permute(1, 2, 0).reshape(-1, G.shape[0])  # (P, C)
        terms = (ic.codes.double() * (Gp @ D.T)).sum(0)
        out.append(ClassSplit(c, diff, terms, float((Gp * ic.error.double()).sum()), float(Gp.sum(0) @ b_dec), 0.0))
    return out


def split_logits(model, sae, ic: ImageCodes, layer: str, classes: list[int], steps: int = 32) -> list[ClassSplit]:
    """The exact split on mixed5b, the integrated-gradients split elsewhere."""
    if layer == EXACT_LAYER:
        return exact_split(model, sae, ic, classes)
    return gradient_split(model, sae, ic, layer, classes, steps)
