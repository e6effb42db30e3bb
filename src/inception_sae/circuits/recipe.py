"""Bozoukov's circuit recipe, step by step: ablate one activation vector, follow the change.

Bozoukov (2025, sec. 2.1 and Fig. 2) links SAE features of consecutive layers thus:

1. take an upstream feature i and its most related activation vector: the image
   position (y, x) where i is most active (:func:`upstream_sites`, one position per
   image, at the images where i is strongest);
2. zero-ablate that activation vector (all channels of the upstream map at (y, x));
3. run the next block on the original and the ablated maps (:func:`.linearize.exact_chain`,
   the true nonlinear path) and find the downstream position whose activation vector
   changed most, by the L2 norm of ``out - out_ablated``;
4. rank downstream features by the cosine similarity of that change vector with their
   decoder rows (:func:`ablation_recipe`).

The change is ``out - out_ablated``: what the upstream vector contributes to the
block's output. Its sign matters: a positive cosine with ``W_dec[j]`` means the
upstream position drives the output along feature j's direction, a negative one
that it pushes away from it. Per upstream feature the full cosine vector is
averaged over its sites (every downstream feature gets a value at every site).

What this can show: which downstream directions one upstream position writes,
through the real block, at the places where feature i matters most. What it
cannot: it ablates the whole vector at one position (all features present there,
not feature i alone, and one position at a time); a cosine with a decoder row is a
direction match, not the change of feature j's activation (TopK and the encoder
are never applied); and the block is nonlinear, so effects of several positions or
features do not add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.images import ImageDataset
from ..errors import UserError
from ..models.inception_v1 import InceptionV1
from ..sae.view import SAETensors
from .attribution import scan_sites
from .graph import Edge
from .linearize import Chain, block_out_channels, exact_chain

KIND = "recipe"  #: edge kind in circuit graphs

CAVEATS = (
    "one position at a time: the whole upstream activation vector at the feature's strongest position is "
    "zeroed (every feature present there, not the feature alone)",
    "the cosine of the change vector with a decoder row is a direction match, not the change of that "
    "feature's activation (no encoder, no TopK)",
    "the block is nonlinear (ReLU, max pool), so effects of several positions or features are not additive",
)


@dataclass(frozen=True)
class UpstreamSites:
    """The images where an upstream feature is most active, at its strongest position in each."""

    feature: int  #: upstream feature
    acts: Tensor  #: (n, d_a, H, W) upstream activations of those images
    pos: Tensor  #: (n, 2) (y, x) on the upstream grid
    value: Tensor  #: (n,) the feature's TopK activation there
    images: list[int]  #: dataset indices


@dataclass(frozen=True, eq=False)
class RecipeResult:
    """The recipe for one upstream feature over its sites."""

    feature: int  #: upstream feature i
    source: str  #: its node id, e.g. ``mixed4b/f/3``
    images: list[int]  #: dataset indices of the sites
    up_pos: Tensor  #: (n, 2) ablated position on the upstream grid
    up_value: Tensor  #: (n,) feature i's activation there
    down_pos: Tensor  #: (n, 2) most-changed position on the downstream grid
    change_norm: Tensor  #: (n,) ||out - out_ablated|| there
    change: Tensor  #: (n, d_b) the change vectors ``out - out_ablated`` at ``down_pos``
    cosine: Tensor  #: (n, m_b) cosine of each change vector with every downstream decoder row
    top: int  #: default number of downstream features in ``edges`` and per-site rankings
    down: SAETensors = field(repr=False)  #: the downstream SAE (node ids)

    @property
    def mean_cosine(self) -> Tensor:
        """(m_b,) cosine averaged over sites."""
        return self.cosine.mean(0)

    def ranking(self, top: int | None = None) -> tuple[Tensor, Tensor]:
        """The ``top`` downstream features with the largest mean cosine: (indices, mean cosines)."""
        k = min(self.top if top is None else top, self.down.m)
        values, indices = self.mean_cosine.topk(k)
        return indices, values

    def edges(self, top: int | None = None) -> list[Edge]:
        """Graph edges ``(up node, down node, mean cosine, "recipe")`` for the ``top`` best downstream features."""
        indices, values = self.ranking(top)
        ranked = _ranked(self.down, indices, values, "mean_cosine")
        return [(self.source, r["id"], r["mean_cosine"], KIND) for r in ranked]

    def to_dict(self, dataset: ImageDataset | None = None) -> dict[str, Any]:
        """JSON-safe record: sites (with their own top features) and the mean-cosine ranking."""
        k = min(self.top, self.down.m)
        per_site = self.cosine.topk(k, dim=1)
        sites = []
        for s, image in enumerate(self.images):
            site: dict[str, Any] = {"image": image}
            if dataset is not None:
                site["image_id"] = dataset.image_id(image)
            site |= {
                "up_pos": self.up_pos[s].tolist(),
                "activation": float(self.up_value[s]),
                "down_pos": self.down_pos[s].tolist(),
                "change_norm": float(self.change_norm[s]),
                "top": _ranked(self.down, per_site.indices[s], per_site.values[s], "cosine"),
            }
            sites.append(site)
        indices, values = self.ranking()
        return {"feature": self.feature, "sites": sites, "top": _ranked(self.down, indices, values, "mean_cosine")}


def _ranked(down: SAETensors, indices: Tensor, values: Tensor, key: str) -> list[dict[str, Any]]:
    pairs = zip(indices.tolist(), values.tolist(), strict=True)
    return [{"id": down.node(j), "feature": j, key: float(c)} for j, c in pairs]


@torch.no_grad()
def upstream_sites(
    model: InceptionV1,
    chain: Chain,
    up: SAETensors,
    features: list[int],
    dataset: ImageDataset,
    max_sites: int = 8,
    batch_size: int = 16,
) -> list[UpstreamSites]:
    """One scan of ``dataset``: per upstream feature, the ``max_sites`` images where it is most active.

    Each site is the feature's argmax position in that image (one per image), with the
    image's upstream activation map. Features that never fire get no entry, so the
    result may be shorter than ``features``. The scan is :func:`.attribution.scan_sites`,
    on the upstream grid.
    """
    width = model.layer_info(chain.upstream).channels
    if up.d != width:
        raise UserError(f"the upstream SAE reads {up.d} channels but {chain.upstream} has {width}")
    return [
        UpstreamSites(*t) for t in scan_sites(model, chain, up, features, dataset, "upstream", max_sites, batch_size)
    ]


def ablate_positions(acts: Tensor, pos: Tensor) -> Tensor:
    """Copy of (n, d, H, W) ``acts`` with the whole activation vector of image s at ``pos[s]`` set to zero."""
    out, pos = acts.clone(), pos.to(acts.device)
    out[torch.arange(acts.shape[0], device=acts.device), :, pos[:, 0], pos[:, 1]] = 0
    return out


@torch.no_grad()
def ablation_changes(model: InceptionV1, chain: Chain, acts: Tensor, pos: Tensor, batch_size: int = 16) -> Tensor:
    """``out - out_ablated`` (n, d_b, H', W'): the block output's change when ``pos[s]`` of image s is zeroed."""
    parts = []
    for start in range(0, acts.shape[0], batch_size):
        a, p = acts[start : start + batch_size], pos[start : start + batch_size]
        parts.append(exact_chain(model, chain, a) - exact_chain(model, chain, ablate_positions(a, p)))
    return torch.cat(parts)


@torch.no_grad()
def ablation_recipe(
    model: InceptionV1,
    chain: Chain,
    up: SAETensors,
    down: SAETensors,
    sites: UpstreamSites,
    top: int = 5,
    batch_size: int = 16,
) -> RecipeResult:
    """Steps 2-4 of the recipe at every site of one upstream feature.

    Per site: zero the upstream vector at ``sites.pos``, run the true block on both
    maps, take the change ``out - out_ablated`` (the upstream vector's contribution)
    at the downstream position where its L2 norm is largest, and compute its cosine
    with every downstream decoder row. A positive cosine means the upstream position
    drives the output along that feature's direction. A change of zero (nothing
    reaches the block) gives cosine 0 throughout.
    """
    n = sites.acts.shape[0]
    if n == 0:
        raise UserError(f"upstream feature {sites.feature} has no sites: it never fires on the images scanned")
    width = block_out_channels(model, chain.downstream)
    if down.d != width:
        raise UserError(f"the downstream SAE reads {down.d} channels but {chain.downstream} has {width}")
    change = ablation_changes(model, chain, sites.acts, sites.pos, batch_size)  # (n, d_b, H', W')
    norms = change.norm(dim=1).flatten(1)  # (n, H'*W')
    norm, where = norms.max(1)
    W = change.shape[-1]
    down_pos = torch.stack([where // W, where % W], 1)
    vec = change[torch.arange(n, device=change.device), :, down_pos[:, 0], down_pos[:, 1]]  # (n, d_b)
    cosine = F.normalize(vec, dim=1) @ F.normalize(down.W_dec, dim=1).T  # (n, m_b)
    return RecipeResult(
        sites.feature, up.node(sites.feature), list(sites.images), sites.pos, sites.value,
        down_pos, norm, vec, cosine, top, down,
    )  # fmt: skip


def recipe_graph(
    model: InceptionV1,
    chain: Chain,
    up: SAETensors,
    down: SAETensors,
    dataset: ImageDataset,
    features: list[int],
    max_sites: int = 8,
    top: int = 5,
    batch_size: int = 16,
) -> tuple[list[Edge], dict[str, Any]]:
    """The recipe for several upstream features: graph edges (kind ``recipe``) and a JSON-safe summary.

    One scan finds every feature's sites; each feature then gets ``top`` edges to
    the downstream features with the largest mean cosine. Features that never fire
    are skipped and listed under ``skipped`` in the summary. The summary carries the
    recipe and its limits (``caveats``: one position at a time; a decoder-row cosine is
    not an activation change; the block is nonlinear, so effects do not add).
    """
    found = {s.feature: s for s in upstream_sites(model, chain, up, features, dataset, max_sites, batch_size)}
    edges: list[Edge] = []
    summary: dict[str, Any] = {
        "method": KIND,
        "description": (
            "Bozoukov (2025) recipe, step by step: for each upstream feature, its strongest position in each of "
            "its top images; zero the whole upstream activation vector there; run the true block; take the "
            "downstream position with the largest ||out - out_ablated||; rank downstream features by the cosine "
            "of that change vector (out - out_ablated, the upstream vector's contribution: positive = drives the "
            "feature's direction) with their decoder rows; edge weight = mean cosine over sites"
        ),
        "caveats": list(CAVEATS),
        "upstream": chain.upstream,
        "downstream": chain.downstream,
        "images": len(dataset),
        "max_sites": max_sites,
        "top": top,
        "features": {},
        "skipped": {},
    }
    for f in features:
        if f not in found:
            summary["skipped"][up.node(f)] = f"never fires on the {len(dataset)} images scanned"
            continue
        result = ablation_recipe(model, chain, up, down, found[f], top, batch_size)
        edges += result.edges()
        summary["features"][up.node(f)] = result.to_dict(dataset)
    return edges, summary
