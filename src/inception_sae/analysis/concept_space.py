"""The "what" candidates of the concept labels, and the seeded split of the images into choice and score halves.

Candidates are every analysed class and every WordNet 3.0 ancestor covering at least two of the analysed classes
and under ``MAX_COVER`` of them (``data/wordnet.py``), one node per distinct class set (the most specific).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MAX_COVER = 0.9  #: ancestors covering this share of the analysed classes or more say nothing


@dataclass
class ConceptSpace:
    """The "what" candidates over the analysed classes (compact class ids 0..n_cls-1)."""

    keys: list[str]  #: wnid, or "class:<output index>" for a class without one
    names: list[str]
    kinds: list[str]  #: "class" | "ancestor"
    depth: list[int | None]
    category: list[str]
    under: list[list[str]]  #: wnids each concept lies under (itself included); [] without a hierarchy
    member: Tensor  #: (n_cls, n_concepts) bool
    classes: Tensor  #: (n_cls,) long model output index of each compact class

    @property
    def n(self) -> int:
        return len(self.keys)


def build_space(classes: Tensor, names, hierarchy=None) -> ConceptSpace:
    """Concepts over the analysed classes ``classes`` (output indices): each class, and ancestors covering
    2 or more of them and under ``MAX_COVER`` of them (one node per distinct class set, the most specific)."""
    from ..data.wordnet import OTHER

    cls = [int(c) for c in classes.tolist()]
    keys, nm, kinds, depth, cat, under, cols = [], [], [], [], [], [], []
    wn = hierarchy.class_wnids if hierarchy is not None else {}
    for j, c in enumerate(cls):
        w = wn.get(c)
        keys.append(w or f"class:{c}")
        nm.append(str(names[c]))
        kinds.append("class")
        depth.append(hierarchy.depth(w) if w else None)
        cat.append(hierarchy.category(w) if w else OTHER)
        under.append(sorted(hierarchy.ancestors(w)) if w else [])
        cols.append([j])
    if hierarchy is not None:
        compact = {c: j for j, c in enumerate(cls)}
        best: dict[tuple[int, ...], str] = {}
        for w, cover in hierarchy.covers.items():
            members = tuple(sorted(compact[c] for c in cover if c in compact))
            if len(members) < 2 or len(members) >= MAX_COVER * len(cls) or w in hierarchy.class_wnids.values():
                continue
            if members not in best or hierarchy.depth(w) > hierarchy.depth(best[members]):
                best[members] = w
        for members, w in sorted(best.items(), key=lambda kv: kv[1]):
            keys.append(w)
            nm.append(hierarchy.name(w))
            kinds.append("ancestor")
            depth.append(hierarchy.depth(w))
            cat.append(hierarchy.category(w))
            under.append(sorted(hierarchy.ancestors(w)))
            cols.append(list(members))
    member = torch.zeros(len(cls), len(keys), dtype=torch.bool)
    for j, rows in enumerate(cols):
        member[rows, j] = True
    return ConceptSpace(keys, nm, kinds, depth, cat, under, member, torch.tensor(cls, dtype=torch.long))


def choice_split(image_class: Tensor, seed: int) -> Tensor:
    """(n,) long: 0 choice half, 1 score half, -1 not used (unknown class); stratified by class, seeded.

    Within a class the images are shuffled and alternate halves; the halves of odd-sized classes' last images
    alternate across classes, so both halves stay within one image of each other.
    """
    g = torch.Generator().manual_seed(seed)
    out = torch.full_like(image_class, -1)
    flip = 0
    for c in torch.unique(image_class[image_class >= 0]).tolist():
        idx = torch.nonzero(image_class == c).view(-1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        half = (torch.arange(len(idx)) + flip) % 2
        out[idx] = half
        flip = (flip + len(idx)) % 2
    return out
