"""Automated labels without a language model: WordNet concepts, where and colour, scored on held-out images.

**Units and activation.** A direction's activation on an image is its per-image maximum over positions. An image
*fires* at a level ``t`` when that maximum is at least ``t`` x the direction's maximum over every analysed image
(``t = 0``: above zero); the level is chosen with the concept.

**Candidates.** "What" concepts: every class, and every WordNet 3.0 ancestor covering at least two of the analysed
classes and under 90% of them (``data/wordnet.py``); a label is one concept or the union of at most ``MAX_TERMS``.
"Where" concepts: the left / right / top / bottom third and the centre cell of a 3 x 3 grid on the layer's map,
over (image, cell) units whose activation is the direction's maximum within the cell. "Colour" concepts: the
dominant colour name (11 basic colours) of the cell's pixels, over the same units.

**Choice and score.** Images are split in two, stratified by class and seeded: the *choice* half picks, for each
direction, the concept and firing level with the best F1, then greedily adds union terms while F1 gains at least
``MIN_GAIN``; the *score* half (never seen by the choice) scores the label and the next ``RUNNERS`` single
concepts. Concepts are restricted to those with images in both halves (a class seen once cannot be checked).

The space of candidates and the halves are in ``concept_space.py``; the scores, tests and records in
``concept_records.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .concept_pixels import CELLS, COLOURS, where_masks
from .concept_scores import LEVEL_BINS, LEVELS, NB, fine_bins
from .concept_space import MAX_COVER, ConceptSpace, build_space, choice_split

MAX_TERMS = 3
MIN_GAIN = 0.02  #: gain of F1 above chance (choice half) that earns a union term
RUNNERS = 4  #: single concepts scored beside the label
SLOTS = 1 + RUNNERS


@dataclass
class ConceptCounts:
    """The streaming state of one family (features or neurons): choice-half counts, then score-half histograms."""

    m: int
    space: ConceptSpace
    n_a: Tensor  #: (n_cls,) choice-half images per class
    n_b: Tensor  #: (n_cls,) score-half images per class
    fire_a: Tensor  #: (L, m, n_cls) choice-half images firing at each level
    cell_a: Tensor  #: (L, m, 9) choice-half (image, cell) units firing per cell
    colour_a: Tensor  #: (L, m, 11) choice-half units firing per cell colour
    colour_units_a: Tensor  #: (11,) choice-half units per colour
    chosen: Tensor | None = None  #: (m, SLOTS, MAX_TERMS) concept ids (-1 empty); slot 0 the label
    chosen_level: Tensor | None = None  #: (m,) level index of the label (runner-ups use the same)
    choice_f1: Tensor | None = None  #: (m, SLOTS) F1 on the choice half
    qual: Tensor | None = None  #: (m, 2) chosen where / colour concept (-1 none)
    qual_level: Tensor | None = None  #: (m, 2) their level index
    hist_b: Tensor | None = None  #: (m, SLOTS, 2, NB) score-half images in / out of the concept per fine bin
    sum_in: Tensor | None = None  #: (m, SLOTS) float64 sum of activation over concept images
    mom_b: Tensor | None = None  #: (m, 3) float64 score-half n, sum a, sum a^2
    qhist_b: Tensor | None = None  #: (m, 2, 2, NB) score-half units in / out of each qualifier per fine bin
    #: (m, 2, 4) float64 per qualifier: the overlap's within-image permutation mean, and over the images where the
    #: direction fires with cells in and out of the concept, the count, sum and sum of squares of d = (share of
    #: concept cells firing) - (share of the other cells firing)
    qnull: Tensor | None = None
    extent: Tensor | None = None  #: (m, 2) float64 sum of extent over firing score-half images, their count
    timings: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, m: int, space: ConceptSpace, n_a: Tensor, n_b: Tensor) -> ConceptCounts:
        big = int(max(n_a.max().item() if len(n_a) else 0, 1)) >= 32767
        dt = torch.int32 if big else torch.int16
        L, long = len(LEVELS), torch.long
        return cls(m, space, n_a, n_b, torch.zeros(L, m, len(n_a), dtype=dt), torch.zeros(L, m, CELLS, dtype=long),
                   torch.zeros(L, m, len(COLOURS), dtype=long), torch.zeros(len(COLOURS), dtype=long))  # fmt: skip

    def compact(self, image_class: Tensor) -> Tensor:
        """Model output classes -> compact class ids of this space (-1: not analysed / unknown)."""
        lut = torch.full((int(max(self.space.classes.max().item(), 0)) + 2,), -1, dtype=torch.long)
        lut[self.space.classes] = torch.arange(len(self.space.classes))
        c = image_class.clamp(-1, len(lut) - 1)
        return torch.where(c >= 0, lut[c.clamp_min(0)], torch.full_like(c, -1))

    def masks(self) -> Tensor:
        """``slot_masks()``, computed once after the choice."""
        if getattr(self, "_masks", None) is None:
            self._masks = self.slot_masks()
        return self._masks

    # -- choice half

    def add_choice(self, vmax: Tensor, cls: Tensor, top: Tensor, cellmax: Tensor, colours: Tensor) -> None:
        """A batch of choice-half images: vmax (B, m), compact class (B,), maxima (m,), cellmax (B, 9, m),
        cell colours (B, 9)."""
        vb, cb = fine_bins(vmax, top), fine_bins(cellmax, top)  # (B, m), (B, 9, m)
        onehot = torch.nn.functional.one_hot(colours, len(COLOURS)).float()  # (B, 9, 11)
        for li, lb in enumerate(LEVEL_BINS):
            self.fire_a[li].index_add_(1, cls, (vb >= lb).T.to(self.fire_a.dtype))
            cf = cb >= lb  # (B, 9, m)
            self.cell_a[li] += cf.sum(0).T.long()
            self.colour_a[li] += torch.einsum("bjm,bjc->mc", cf.float(), onehot).round().long()
        self.colour_units_a += torch.bincount(colours.reshape(-1), minlength=len(COLOURS))

    def choose(self) -> None:
        """Pick each direction's label (and runner-ups) and its where / colour concepts on the choice half.

        The criterion is F1 above chance: F1 minus its value at the permutation mean of the overlap. Plain F1
        favours concepts much larger than the firing set once weak firing spreads over many images (a concept
        holding every image has F1 = 2 rho / (1 + rho) at firing rate rho); above chance that concept scores 0.
        """
        sp, m = self.space, self.m
        member = sp.member.float()
        k_a = self.n_a.double() @ member.double()  # (n_con,)
        k_b = self.n_b.double() @ member.double()
        n_a = float(self.n_a.sum())
        ok = (k_a > 0) & (k_b > 0) & (k_a < MAX_COVER * n_a)
        best = torch.full((m,), -1.0, dtype=torch.float64)
        best_level = torch.zeros(m, dtype=torch.long)
        top_ids = torch.full((m, 8), -1, dtype=torch.long)
        top_lift = torch.zeros(m, 8, dtype=torch.float64)
        top_f1 = torch.zeros(m, 8, dtype=torch.float64)
        member_t = sp.member.T.float().to_sparse()  # (n_con, n_cls): ~10 ancestors per class
        for li in range(len(LEVELS)):
            fa = self.fire_a[li].float()  # (m, n_cls), exact counts below 2^24
            n_fire = fa.sum(1, keepdim=True).double()
            tp = torch.sparse.mm(member_t, fa.T).T.double()  # (m, n_con)
            f1 = 2 * tp / (k_a + n_fire).clamp_min(1e-12)
            lift = f1 - 2 * (n_fire * k_a / max(n_a, 1)) / (k_a + n_fire).clamp_min(1e-12)
            lift = torch.where(ok & (n_fire > 0), lift, torch.full_like(lift, -1.0))
            vals, ids = lift.topk(min(8, lift.shape[1]), dim=1)
            better = vals[:, 0] > best + 1e-12
            best = torch.where(better, vals[:, 0], best)
            best_level = torch.where(better, torch.full_like(best_level, li), best_level)
            top_ids[better, : ids.shape[1]] = ids[better]
            top_lift[better, : vals.shape[1]] = vals[better]
            top_f1[better, : ids.shape[1]] = f1.gather(1, ids)[better]
        chosen, choice_f1 = self.grow_unions(best, best_level, top_ids, top_lift, top_f1)
        self.chosen, self.chosen_level, self.choice_f1 = chosen, best_level, choice_f1
        self.qual = torch.full((m, 2), -1, dtype=torch.long)
        self.qual_level = torch.zeros(m, 2, dtype=torch.long)
        n_img = float(self.n_a.sum())
        wm = where_masks().double()  # (5, 9)
        for q, (counts, units) in enumerate(((self.cell_a.double() @ wm.T, wm.sum(1) * n_img),
                                             (self.colour_a.double(), self.colour_units_a.double()))):  # fmt: skip
            best = torch.full((m,), -1.0, dtype=torch.float64)
            for li in range(len(LEVELS)):
                tp = counts[li]  # (m, n_q)
                n_fire = self.cell_a[li].sum(1, keepdim=True).double()
                n_units = CELLS * n_img
                f1 = 2 * tp / (units + n_fire).clamp_min(1e-12)
                lift = f1 - 2 * (n_fire * units / max(n_units, 1)) / (units + n_fire).clamp_min(1e-12)
                lift = torch.where((units > 0) & (n_fire > 0), lift, torch.full_like(lift, -1.0))
                v, i = lift.max(1)
                better = v > best + 1e-12
                best = torch.where(better, v, best)
                self.qual[better, q] = i[better]
                self.qual_level[better, q] = li
            self.qual[best <= 0, q] = -1
        S = SLOTS
        self.hist_b = torch.zeros(m, S, 2, NB, dtype=torch.long)
        self.sum_in = torch.zeros(m, S, dtype=torch.float64)
        self.mom_b = torch.zeros(m, 3, dtype=torch.float64)
        self.qhist_b = torch.zeros(m, 2, 2, NB, dtype=torch.long)
        self.qnull = torch.zeros(m, 2, 4, dtype=torch.float64)
        self.extent = torch.zeros(m, 2, dtype=torch.float64)

    def grow_unions(self, best: Tensor, level: Tensor, ids: Tensor, lift: Tensor, f1: Tensor,
                    chunk: int = 512) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Greedy unions from each direction's best single concept, vectorised over directions.

        best (m,) the best single lift, level (m,) its level, ids / lift / f1 (m, C) the top C singles at that
        level. A term is added while the union's lift gains ``MIN_GAIN`` and covers under ``MAX_COVER`` of the
        images; returns chosen (m, SLOTS, MAX_TERMS) and choice_f1 (m, SLOTS).
        """
        sp, m = self.space, self.m
        n_a = float(self.n_a.sum())
        C = ids.shape[1]
        chosen = torch.full((m, SLOTS, MAX_TERMS), -1, dtype=torch.long)
        choice_f1 = torch.full((m, SLOTS), float("nan"), dtype=torch.float64)
        memb = torch.cat([sp.member.T, torch.zeros(1, sp.member.shape[0], dtype=torch.bool)])  # row -1: empty
        n_cls = self.n_a.double()
        for lo in range(0, m, chunk):
            f = torch.arange(lo, min(lo + chunk, m))
            live = best[f] > 0
            fa = self.fire_a[level[f], f].double()  # (c, n_cls)
            n_fire = fa.sum(1)
            cand = torch.where(lift[f] > 0, ids[f], torch.full_like(ids[f], -1))  # (c, C)
            cmask = memb[cand]  # (c, C, n_cls)
            cur = cmask[:, 0].clone()  # the best single
            taken = torch.zeros(len(f), C, dtype=torch.bool)
            taken[:, 0] = True
            score, f1_now = best[f].clone(), f1[f, 0].clone()
            terms = torch.full((len(f), MAX_TERMS), -1, dtype=torch.long)
            terms[:, 0] = cand[:, 0]
            for t in range(1, MAX_TERMS):
                u = cur.unsqueeze(1) | cmask  # (c, C, n_cls)
                k = (u.double() * n_cls).sum(2)
                tp = (u.double() * fa.unsqueeze(1)).sum(2)
                den = (k + n_fire.unsqueeze(1)).clamp_min(1e-12)
                uf1 = 2 * tp / den
                ul = uf1 - 2 * (n_fire.unsqueeze(1) * k / max(n_a, 1)) / den
                ul = torch.where(taken | (cand < 0) | (k >= MAX_COVER * n_a), torch.full_like(ul, -9.0), ul)
                v, j = ul.max(1)
                grow = live & (v >= score + MIN_GAIN)
                rows = torch.nonzero(grow).view(-1)
                cur[rows] = u[rows, j[rows]]
                taken[rows, j[rows]] = True
                terms[rows, t] = cand[rows, j[rows]]
                score = torch.where(grow, v, score)
                f1_now = torch.where(grow, uf1.gather(1, j.view(-1, 1)).view(-1), f1_now)
            chosen[f[live], 0] = terms[live]
            choice_f1[f[live], 0] = f1_now[live]
            rest = torch.where(taken | (cand < 0), torch.full_like(cand, -1), cand)
            for r, row in enumerate(rest.tolist()):
                if not live[r]:
                    continue
                runners = [(c, i) for i, c in enumerate(row) if c >= 0][:RUNNERS]
                for s, (c, i) in enumerate(runners, 1):
                    chosen[f[r], s, 0] = c
                    choice_f1[f[r], s] = f1[f[r], i]
        return chosen, choice_f1

    # -- score half

    def slot_masks(self) -> Tensor:
        """(m, SLOTS, n_cls) bool: the classes of each slot's concept (union of its terms)."""
        assert self.chosen is not None
        n_cls = self.space.member.shape[0]
        memb = torch.cat([self.space.member.T, torch.zeros(1, n_cls, dtype=torch.bool)])  # row -1 -> empty
        return memb[self.chosen].any(2)

    def add_score(self, vmax: Tensor, cls: Tensor, top: Tensor, cellmax: Tensor, colours: Tensor,
                  extent: Tensor, masks: Tensor) -> None:  # fmt: skip
        """A batch of score-half images (as ``add_choice``) with extent (B, m) and ``slot_masks()``."""
        assert self.hist_b is not None and self.sum_in is not None and self.mom_b is not None
        assert self.qhist_b is not None and self.qnull is not None and self.extent is not None
        assert self.qual is not None and self.qual_level is not None
        B, m = vmax.shape
        bins = fine_bins(vmax, top)  # (B, m)
        inside = masks[:, :, cls].permute(2, 0, 1)  # (B, m, S)
        f_idx = torch.arange(m).view(1, m, 1).expand(B, m, SLOTS)
        s_idx = torch.arange(SLOTS).view(1, 1, SLOTS).expand(B, m, SLOTS)
        key = ((f_idx * SLOTS + s_idx) * 2 + (~inside).long()) * NB + bins.unsqueeze(2).expand(B, m, SLOTS)
        self.hist_b += torch.bincount(key.reshape(-1), minlength=m * SLOTS * 2 * NB).view(m, SLOTS, 2, NB)
        a = vmax.double()
        self.sum_in += (a.unsqueeze(2) * inside).sum(0)
        self.mom_b[:, 0] += B
        self.mom_b[:, 1] += a.sum(0)
        self.mom_b[:, 2] += (a * a).sum(0)
        on = vmax > 0
        self.extent[:, 0] += (extent.double() * on).sum(0)
        self.extent[:, 1] += on.sum(0)
        wm = where_masks()
        cb = fine_bins(cellmax, top)  # (B, 9, m)
        fq = torch.arange(m).view(1, 1, m)
        for q in range(2):
            concept = self.qual[:, q]  # (m,)
            if q == 0:
                in_cell = wm[concept.clamp_min(0)].T.unsqueeze(0).expand(B, CELLS, m)  # (B, 9, m)
            else:
                in_cell = colours.unsqueeze(2) == concept.view(1, 1, m)  # (B, 9, m)
            in_cell = in_cell & (concept >= 0).view(1, 1, m)
            key = ((fq * 2 + q) * 2 + (~in_cell).long()) * NB + cb
            self.qhist_b += torch.bincount(key.reshape(-1), minlength=m * 2 * 2 * NB).view(m, 2, 2, NB)
            level_bin = torch.tensor(LEVEL_BINS)[self.qual_level[:, q]].view(1, 1, m)
            fires = cb >= level_bin
            n_i = fires.sum(1).double()  # (B, m) firing cells per image
            r_i = in_cell.sum(1).double()  # (B, m) concept cells per image
            in_i = (fires & in_cell).sum(1).double()  # (B, m) firing concept cells
            self.qnull[:, q, 0] += (n_i * r_i / CELLS).sum(0)
            ok = (n_i > 0) & (r_i > 0) & (r_i < CELLS)
            d = torch.where(ok, in_i / r_i.clamp_min(1) - (n_i - in_i) / (CELLS - r_i).clamp_min(1), 0.0)
            self.qnull[:, q, 1] += ok.sum(0)
            self.qnull[:, q, 2] += d.sum(0)
            self.qnull[:, q, 3] += (d * d).sum(0)

    # -- checkpoint

    def tensors(self, prefix: str) -> dict[str, Tensor]:
        t = {"n_a": self.n_a, "n_b": self.n_b, "fire_a": self.fire_a, "cell_a": self.cell_a, "colour_a": self.colour_a,
             "colour_units_a": self.colour_units_a}  # fmt: skip
        for name in ("chosen", "chosen_level", "choice_f1", "qual", "qual_level", "hist_b", "sum_in", "mom_b",
                     "qhist_b", "qnull", "extent"):  # fmt: skip
            v = getattr(self, name)
            if v is not None:
                t[name] = v
        return {f"{prefix}.{k}": v.contiguous() for k, v in t.items()}

    def restore(self, prefix: str, t: dict[str, Tensor]) -> None:
        for k, v in t.items():
            if k.startswith(prefix + "."):
                setattr(self, k[len(prefix) + 1 :], v)


def start(image_class: Tensor, seen: Tensor, sizes: dict[str, int], names, seed: int, saved: dict | None = None):
    """The halves and an empty (or checkpoint-restored) ``ConceptCounts`` per family; ({}, None) with no classes.

    image_class (n,) model output per image (-1 unknown), seen (n,) decoded images, sizes family -> directions.
    """
    from ..data.wordnet import load_hierarchy

    known = torch.where(seen, image_class, torch.full_like(image_class, -1))
    split = choice_split(known, seed)
    classes = torch.unique(known[split >= 0])
    if len(classes) == 0:
        return {}, None
    hierarchy = load_hierarchy(names) if getattr(names, "available", False) else None
    space = build_space(classes, names, hierarchy)
    compact = torch.full((int(classes.max()) + 1,), -1, dtype=torch.long)
    compact[classes] = torch.arange(len(classes))
    n_a = torch.bincount(compact[known[split == 0]], minlength=len(classes))
    n_b = torch.bincount(compact[known[split == 1]], minlength=len(classes))
    out = {}
    for name, m in sizes.items():
        cc = ConceptCounts.empty(m, space, n_a.clone(), n_b.clone())
        if saved:
            cc.restore(f"concepts.{name}", saved)
        out[name] = cc
    return out, split
