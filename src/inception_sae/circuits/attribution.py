"""Data-based connections: gradient x activation and ablation on real images.

Both start from *sites*: images where the downstream feature fires, at the
position of its largest activation. The measured quantity is always the
downstream feature's encoder pre-activation ``p_j = e_j . (block(A) - b_dec) + b_enc[j]``
at the site (continuous, defined even where TopK drops the feature).

* Gradient x activation: ``A = sum_i z_i d_i + b_dec + err``; the attribution of
  upstream feature i is ``sum_pos z_i(pos) d_i . dp_j/dA(pos)``; the SAE error
  ``err`` and the decoder bias ``b_dec`` are nodes of their own, so the parts
  sum to ``sum_pos A(pos) . dp_j/dA(pos)``.
* Ablation (Bozoukov's method): subtract ``z_i(pos) d_i`` at every position
  from the upstream activations, run the true block, and report
  ``p_j(A) - p_j(A_ablated)`` (positive: i excites j).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.images import ImageDataset, iter_batches
from ..models.inception_v1 import InceptionV1
from ..sae.view import SAETensors
from .linearize import Chain, exact_chain


@dataclass(frozen=True)
class Sites:
    """Upstream activations of the images where a downstream feature fires most."""

    feature: int  #: downstream feature
    acts: Tensor  #: (n, d_a, H, W) upstream activations
    pos: Tensor  #: (n, 2) (y, x) on the downstream grid
    value: Tensor  #: (n,) the feature's TopK activation there
    images: list[int]  #: dataset indices


@dataclass(frozen=True)
class Attribution:
    """Gradient x activation of one downstream feature over its sites."""

    per_image: Tensor  #: (n, m_a) attribution of every upstream feature, per site
    error: Tensor  #: (n,) attribution of the upstream SAE's error term
    bias: Tensor  #: (n,) attribution of the upstream SAE's b_dec
    total: Tensor  #: (n,) sum_pos A . grad (the parts add up to this)

    @property
    def mean(self) -> Tensor:
        """(m_a,) mean attribution over sites."""
        return self.per_image.mean(0)


def feature_maps(sae: SAETensors, acts: Tensor) -> Tensor:
    """(B, d, H, W) activations -> (B, m, H, W) TopK feature activations (dense; small SAEs/maps)."""
    B, d, H, W = acts.shape
    z = sae.dense_codes(acts.permute(0, 2, 3, 1).reshape(-1, d))
    return z.reshape(B, H, W, -1).permute(0, 3, 1, 2)


def preact_at(sae: SAETensors, feature: int, out: Tensor, pos: Tensor) -> Tensor:
    """Encoder pre-activation of ``feature`` at one position per image: out (n, d, H, W), pos (n, 2) -> (n,)."""
    v = out[torch.arange(out.shape[0]), :, pos[:, 0], pos[:, 1]]  # (n, d)
    return (v - sae.b_dec) @ sae.W_enc[:, feature] + sae.b_enc[feature]


@torch.no_grad()
def scan_sites(
    model: InceptionV1,
    chain: Chain,
    sae: SAETensors,
    features: list[int],
    dataset: ImageDataset,
    on: str = "downstream",
    max_sites: int = 16,
    batch_size: int = 16,
) -> list[tuple[int, Tensor, Tensor, Tensor, list[int]]]:
    """One scan of ``dataset``: per feature of ``sae`` (read on the ``on`` layer of ``chain``: "downstream" or
    "upstream"), the ``max_sites`` images where it fires most, at its argmax, with the upstream activation maps.

    Returns (feature, upstream acts (n, d_a, H, W), pos (n, 2) on the ``on`` grid, value (n,), dataset indices);
    features that never fire get no entry (the result may be shorter than ``features``).
    """
    best: dict[int, list[tuple[float, int, tuple[int, int], Tensor]]] = {f: [] for f in features}
    cols = torch.tensor(features, dtype=torch.long)
    layers = [chain.upstream] if on == "upstream" else [chain.upstream, chain.downstream]
    for x, idx in iter_batches(dataset, batch_size):
        acts = model.run(x, layers)
        a = acts[chain.upstream]
        grid = a if on == "upstream" else acts[chain.downstream]
        fire = feature_maps(sae, grid)[:, cols].flatten(2)  # (B, F, H*W)
        top, where = fire.max(2)
        W = grid.shape[-1]
        for b, f in torch.nonzero(top > 0).tolist():
            best[features[f]].append((float(top[b, f]), idx[b], divmod(int(where[b, f]), W), a[b]))
        for f in features:
            best[f] = sorted(best[f], key=lambda t: -t[0])[:max_sites]
    return [
        (f, torch.stack([t[3] for t in best[f]]), torch.tensor([t[2] for t in best[f]]),
         torch.tensor([t[0] for t in best[f]]), [t[1] for t in best[f]])
        for f in features
        if best[f]
    ]  # fmt: skip


@torch.no_grad()
def find_sites(
    model: InceptionV1,
    chain: Chain,
    down: SAETensors,
    features: list[int],
    dataset: ImageDataset,
    max_sites: int = 16,
    batch_size: int = 16,
) -> list[Sites]:
    """For each downstream feature, the ``max_sites`` images where it fires most (at its argmax): its sites."""
    return [Sites(*t) for t in scan_sites(model, chain, down, features, dataset, "downstream", max_sites, batch_size)]


@torch.no_grad()
def firing_counts(model: InceptionV1, down: SAETensors, dataset: ImageDataset, batch_size: int = 16) -> Tensor:
    """(m,) number of images on which each downstream feature fires somewhere."""
    assert down.layer is not None, "the SAE must name its layer"
    counts = torch.zeros(down.m)
    for x, _ in iter_batches(dataset, batch_size):
        counts += (feature_maps(down, model.capture(x, [down.layer])[down.layer]).amax((2, 3)) > 0).sum(0)
    return counts


def gradient_x_activation(
    model: InceptionV1, chain: Chain, up: SAETensors, down: SAETensors, sites: Sites
) -> Attribution:
    """Attribute the downstream pre-activation at each site to upstream features, error and bias."""
    A = sites.acts.clone().requires_grad_(True)
    with torch.enable_grad():
        p = preact_at(down, sites.feature, exact_chain(model, chain, A), sites.pos)
        (grad,) = torch.autograd.grad(p.sum(), A)  # images are independent: one backward for all
    n, d, H, W = A.shape
    v = sites.acts.permute(0, 2, 3, 1).reshape(-1, d)  # (N, d), N = n*H*W
    g = grad.permute(0, 2, 3, 1).reshape(-1, d)
    values, indices = up.encode(v)
    contrib = values * torch.einsum("nkd,nd->nk", up.W_dec[indices], g)  # (N, k)
    image = torch.arange(n).repeat_interleave(H * W).unsqueeze(1).expand_as(indices)
    per_image = torch.zeros(n, up.m).index_put_((image, indices), contrib, accumulate=True)
    err = ((v - up.decode(values, indices)) * g).sum(1).reshape(n, -1).sum(1)
    bias = (g @ up.b_dec).reshape(n, -1).sum(1)
    total = (v * g).sum(1).reshape(n, -1).sum(1)
    return Attribution(per_image, err, bias, total)


@torch.no_grad()
def ablation_effects(
    model: InceptionV1,
    chain: Chain,
    up: SAETensors,
    down: SAETensors,
    sites: Sites,
    candidates: list[int],
    batch_size: int = 64,
) -> Tensor:
    """(len(candidates), n): ``p_j(A) - p_j(A without feature i)`` per candidate and site, batched."""
    A = sites.acts
    n = A.shape[0]
    base = preact_at(down, sites.feature, exact_chain(model, chain, A), sites.pos)  # (n,)
    z = feature_maps(up, A)  # (n, m_a, H, W)
    jobs = [(c, s) for c in range(len(candidates)) for s in range(n) if z[s, candidates[c]].any()]
    effects = torch.zeros(len(candidates), n)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        ci = torch.tensor([candidates[c] for c, _ in chunk])
        si = torch.tensor([s for _, s in chunk])
        # (b, d, H, W): remove z_i(pos) d_i everywhere the feature fires
        ablated = A[si] - z[si, ci].unsqueeze(1) * up.W_dec[ci][:, :, None, None]
        p = preact_at(down, sites.feature, exact_chain(model, chain, ablated), sites.pos[si])
        effects[torch.tensor([c for c, _ in chunk]), si] = base[si] - p
    return effects
