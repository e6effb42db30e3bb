"""Planted concept truth for the labeller, made the way real activations are made, not from its null.

Images have skewed class frequencies (a few classes with many images, most with few); each image has a 3 x 3 grid
of cells with colours (mostly background greys / greens / blues, some red cells) and an object cell. A direction's
activation lives on cells: a concept direction fires at the object cell of its concept's images with a lognormal
magnitude and misses some of them (recall below 1); every direction also leaks weak activation on other images
(and the dense ones fire almost everywhere). Per-image activation is the maximum over cells, as in the analysis.
Nothing here is drawn from the permutation null the labeller tests against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inception_sae.analysis import concepts as cn
from inception_sae.analysis.concept_pixels import COLOURS
from inception_sae.analysis.concept_records import records
from inception_sae.data.labels import load_labels
from inception_sae.data.wordnet import load_hierarchy

DOG = "n02084071"
BIRD = "n01503061"
FISH = "n02512053"


@dataclass
class Planted:
    image_class: torch.Tensor  #: (n,) model output index
    cellmax: torch.Tensor  #: (n, 9, m)
    colours: torch.Tensor  #: (n, 9)
    kinds: list[str]  #: what each direction was planted as
    truth: list[object]  #: the planted concept (wnid, set of output indices, "left", "red" or None)


def classes_under(wnid: str, names) -> list[int]:
    h = load_hierarchy(names)
    return sorted(h.covers[wnid])


def planted(seed: int = 0, n_classes: int = 400, n_null: int = 30, n_blob: int = 20, recall: float = 0.85) -> Planted:
    """Directions: dog (a whole subtree), three terriers (a class set), bird or fish (a union of two subtrees),
    left (a position in any image), red (a colour), a dense one, ``n_null`` with no concept, and ``n_blob``
    that fire on a block of neighbouring cells (a row, a column or a 2 x 2 square, each cell equally often):
    no position or colour preference, but cells that fire together, as real maps do."""
    g = torch.Generator().manual_seed(seed)
    names = load_labels()
    dogs = classes_under(DOG, names)
    all_birds = classes_under(BIRD, names)
    birds = all_birds[:30]  # the other birds are not analysed: the planted set is the node "bird" here
    fish = classes_under(FISH, names)
    pool = [c for c in range(1, 1001) if c not in dogs and c not in all_birds and c not in fish]
    others = [pool[int(i)] for i in torch.randperm(len(pool), generator=g)[: n_classes - 60 - 30 - len(fish)]]
    classes = dogs[:60] + birds + fish + others
    pareto = torch.rand(len(classes), generator=g).pow(-1 / 1.3)  # Pareto(1, 1.3) by inversion
    sizes = (3 * pareto).clamp(2, 40).round().long()  # skewed: most classes 3-6 images, a few up to 40
    terriers = [c for c in dogs[:60] if "terrier" in names[c]][:3]
    sizes[[classes.index(c) for c in terriers]] = 16  # a small class set, with enough images to be seen in both halves
    image_class = torch.cat([torch.full((int(k),), c) for c, k in zip(classes, sizes.tolist(), strict=True)])
    n = len(image_class)
    colours = torch.multinomial(torch.tensor([3.0, 2, 6, 0, 1, 1, 5, 5, 0.5, 0.5, 3]), n * 9, replacement=True,
                                generator=g).view(n, 9)  # fmt: skip
    red = COLOURS.index("red")
    reddish = torch.rand(n, 9, generator=g) < 0.08
    colours[reddish] = red
    obj = torch.randint(0, 9, (n,), generator=g)  # the object's cell
    kinds = ["dog", "terriers", "bird_or_fish", "left", "red", "dense"] + ["null"] * n_null + ["blob"] * n_blob
    truth: list[object] = [DOG, set(terriers), {BIRD, FISH}, "left", "red", None] + [None] * (n_null + n_blob)
    m = len(kinds)
    cellmax = torch.zeros(n, 9, m)
    mag = lambda *shape: torch.exp(0.5 * torch.randn(*shape, generator=g))  # noqa: E731
    rows = torch.arange(n)
    in_dog = torch.isin(image_class, torch.tensor(dogs))
    in_terrier = torch.isin(image_class, torch.tensor(terriers))
    in_union = torch.isin(image_class, torch.tensor(birds + fish))
    for f, concept in ((0, in_dog), (1, in_terrier), (2, in_union)):
        hit = concept & (torch.rand(n, generator=g) < recall)
        cellmax[rows[hit], obj[hit], f] = mag(int(hit.sum()))
    left_img = torch.rand(n, generator=g) < 0.4
    for cell in (0, 3, 6):
        on = left_img & (torch.rand(n, generator=g) < 0.8)
        cellmax[on, cell, 3] = mag(int(on.sum()))
    cellmax[:, :, 4] = torch.where(colours == red, mag(n, 9), torch.zeros(n, 9)) * (torch.rand(n, 9, generator=g) < 0.9)
    cellmax[:, :, 5] = mag(n, 9) * (torch.rand(n, 9, generator=g) < 0.7)
    for f in range(6, 6 + n_null):  # no concept: fires on a random fifth of the images, at a random cell
        on = torch.rand(n, generator=g) < 0.2
        cellmax[rows[on], torch.randint(0, 9, (int(on.sum()),), generator=g), f] = mag(int(on.sum()))
    # rows, columns and 2 x 2 squares wrapping round the grid: every cell lies in 6 of the 15 blocks
    blocks = [[3 * r, 3 * r + 1, 3 * r + 2] for r in range(3)] + [[c, c + 3, c + 6] for c in range(3)]
    blocks += [[3 * r + c, 3 * r + (c + 1) % 3, 3 * ((r + 1) % 3) + c, 3 * ((r + 1) % 3) + (c + 1) % 3]
               for r in range(3) for c in range(3)]  # fmt: skip
    for f in range(6 + n_null, m):
        on = torch.nonzero(torch.rand(n, generator=g) < 0.3).view(-1)
        for i, b in zip(on.tolist(), torch.randint(0, len(blocks), (len(on),), generator=g).tolist(), strict=True):
            cellmax[i, blocks[b], f] = mag(len(blocks[b]))
    leak = (torch.rand(n, 9, m, generator=g) < 0.02) * 0.15 * mag(n, 9, m)  # weak stray firing everywhere
    cellmax = torch.maximum(cellmax, leak)
    return Planted(image_class, cellmax, colours, kinds, truth)


def label_directions(p: Planted, seed: int = 0, batch: int = 64) -> list[dict | None]:
    """Run the labeller's streaming counts on planted activations, as the analysis's pass 2 does."""
    names = load_labels()
    n, _, m = p.cellmax.shape
    seen = torch.ones(n, dtype=torch.bool)
    fams, split = cn.start(p.image_class, seen, {"f": m}, names, seed)
    cc = fams["f"]
    vmax = p.cellmax.amax(1)
    top = vmax.amax(0)
    extent = (p.cellmax >= 0.5 * vmax.unsqueeze(1)).float().mean(1) * (vmax > 0)
    for half in (0, 1):
        idx = torch.nonzero(split == half).view(-1)
        if half == 1:
            cc.choose()
        for s in range(0, len(idx), batch):
            i = idx[s : s + batch]
            cls = cc.compact(p.image_class[i])
            if half == 0:
                cc.add_choice(vmax[i], cls, top, p.cellmax[i], p.colours[i])
            else:
                cc.add_score(vmax[i], cls, top, p.cellmax[i], p.colours[i], extent[i], cc.masks())
    return records(cc, seed)
