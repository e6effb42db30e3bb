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

**Scores** (each on the score half; NeuronEval, Oikarinen & Weng 2025, keeps these because dropping true classes
or adding false ones lowers them): F1 and IoU of the concept as a detector of firing; AUPRC of the activation as a
ranker of the concept's images (activation binned in twentieths of the max: ties share a threshold, as in
scikit-learn); Pearson correlation of the concept's indicator with the activation. Baselines and p-values come from
permuting the image labels: F1 and IoU increase with the overlap count, which is hypergeometric under the
permutation (exact p; baseline at its mean); Pearson's permutation distribution has mean 0 and variance 1/(n-1)
(normal p); AUPRC's comes from 199 Monte Carlo permutations of the binned activations. AUROC is kept as a
secondary column only: it barely moves when a label misses or adds classes. A "what" label is shown when the F1
test survives Benjamini-Hochberg at ``LEVEL`` over every scored direction of the family and its F1 is at least
``MIN_EFFECT`` of the way from chance to 1; otherwise it is "no label". "Where" and "colour" are tested with the
image as the unit (cells of one image fire together): in each image where the direction fires and that has cells
in and out of the concept, d = the share of the concept's cells firing minus the share of the other cells firing;
z = mean(d) / its standard error, normal tail, BH over the family, and the same effect floor; their baseline F1
is at the overlap's mean under a within-image shuffle of the cells. They are shown as qualifiers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .concept_pixels import CELLS, COLOURS, WHERE, where_masks
from .concept_scores import (
    LEVEL_BINS,
    LEVELS,
    NB,
    ap_permutation,
    f1_score,
    fine_bins,
    hypergeom_sf_many,
    normal_sf,
    slot_scores,
)
from .labels import bh_qvalues

MAX_TERMS = 3
MIN_GAIN = 0.02  #: gain of F1 above chance (choice half) that earns a union term
RUNNERS = 4  #: single concepts scored beside the label
SLOTS = 1 + RUNNERS
LEVEL = 0.05  #: BH level
#: A part is shown only when its F1 is also this far above chance, as a share of what is left above chance:
#: (F1 - baseline) / (1 - baseline), the F1 analogue of Cohen's kappa. Significance alone labels weak real
#: associations (on a random network, "artifact" at F1 0.67 against 0.63: kappa 0.1, p 1e-3).
MIN_EFFECT = 0.2
MAX_COVER = 0.9  #: ancestors covering this share of the analysed classes or more say nothing
QUALIFIERS = ("where", "colour")
#: Extent (mean share of the map at or above half the image's max, where the direction fires): "small" below
#: SMALL (at 14 x 14, under 10 positions), "object-sized" from OBJECT_SIZED up, "medium" between. A descriptor with
#: the layer's median beside it, not a tested label.
SMALL, OBJECT_SIZED = 0.05, 0.25


# ------------------------------------------------------------------------------------------------ the space


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


# ------------------------------------------------------------------------------------------- accumulation


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

    # -- results

    def results(self, seed: int = 0) -> list[dict | None]:
        """Per direction: the label record (``label_concept``) or None where nothing could be chosen."""
        if self.hist_b is None:
            return [None] * self.m
        assert self.sum_in is not None and self.mom_b is not None and self.extent is not None
        assert self.chosen is not None and self.chosen_level is not None and self.choice_f1 is not None
        sp = self.space
        h = self.hist_b.numpy().astype(np.float64)  # (m, S, 2, NB)
        pos, neg = h[:, :, 0], h[:, :, 1]
        lvl = np.array(LEVEL_BINS)[self.chosen_level.numpy()]  # (m,)
        sc = slot_scores(pos, neg, lvl[:, None], self.sum_in.numpy(), self.mom_b.numpy()[:, None, :])
        tp, n_fire, k, n = sc["tp"], sc["n_fire"], sc["k"], sc["n"]
        f1, iou, ap, r, auroc = sc["f1"], sc["iou"], sc["auprc"], sc["pearson"], sc["auroc"]
        f1_base, iou_base = sc["f1_baseline"], sc["iou_baseline"]
        p_f1 = hypergeom_sf_many(tp, n_fire, k, n)
        ap_base, ap_p = ap_permutation(pos[:, 0] + neg[:, 0], k[:, 0], ap[:, 0], seed)
        r_p = normal_sf(np.nan_to_num(r) * np.sqrt(np.maximum(n - 1, 0)))
        scored = [f for f in range(self.m) if self.chosen[f, 0, 0] >= 0 and k[f, 0] > 0 and n_fire[f, 0] > 0]
        q = dict(zip(scored, bh_qvalues([float(p_f1[f, 0]) for f in scored], len(scored)), strict=True))
        quals = self.qualifier_results()
        ext = self.extent.numpy()
        share = np.where(ext[:, 1] > 0, ext[:, 0] / np.maximum(ext[:, 1], 1), np.nan)
        layer_median = float(np.nanmedian(share)) if np.isfinite(share).any() else None
        size_text = np.where(share < SMALL, "small", np.where(share >= OBJECT_SIZED, "object-sized", "medium"))
        out: list[dict | None] = []
        for f in range(self.m):
            quals_f = {"where": quals[0][f], "colour": quals[1][f]}
            extent = None if not np.isfinite(share[f]) else {
                "share": fnum(share[f]), "images": int(ext[f, 1]), "layer_median": fnum(layer_median),
                "text": str(size_text[f])}  # fmt: skip
            if f not in q:
                has = any(quals_f.values())
                out.append({**NO_WHAT, **quals_f, "extent": extent} if has else None)
                continue
            terms = [int(c) for c in self.chosen[f, 0].tolist() if c >= 0]
            kind = sp.kinds[terms[0]] if len(terms) == 1 else "classes" if all(
                sp.kinds[c] == "class" for c in terms) else "ancestor"  # fmt: skip
            common = set(sp.under[terms[0]])
            for c in terms[1:]:
                common &= set(sp.under[c])
            t = float(LEVELS[int(self.chosen_level[f])])
            spectrum = []
            for j in range(10):  # tenths of the max: fine bins 1+2j, 2+2j
                sl = slice(1 + 2 * j, 3 + 2 * j)
                spectrum.append({"lo": j / 10, "hi": (j + 1) / 10, "in_concept": int(pos[f, 0, sl].sum()),
                                 "images": int(pos[f, 0, sl].sum() + neg[f, 0, sl].sum())})  # fmt: skip
            runners = []
            for s in range(1, SLOTS):
                c = int(self.chosen[f, s, 0])
                if c < 0:
                    continue
                runners.append({"text": sp.names[c], "key": sp.keys[c], "kind": sp.kinds[c],
                                "category": sp.category[c], "f1": fnum(f1[f, s]), "baseline": fnum(f1_base[f, s]),
                                "p": fnum(p_f1[f, s]), "choice_f1": fnum(self.choice_f1[f, s].item())})  # fmt: skip
            effect = kappa(f1[f, 0], f1_base[f, 0])
            labelled = bool(q[f] <= LEVEL and effect >= MIN_EFFECT)
            out.append({
                "text": " or ".join(sp.names[c] for c in terms), "kind": kind,
                "category": sp.category[terms[0]], "depth": sp.depth[terms[0]],
                "terms": [{"key": sp.keys[c], "name": sp.names[c], "kind": sp.kinds[c],
                           "classes": int(sp.member[:, c].sum()), "depth": sp.depth[c]} for c in terms],
                "under": sorted(common), "labelled": labelled,
                "fires": "per-image max > 0" if t == 0 else f"per-image max >= {t:g} x the direction's max",
                "level": t,
                "scores": {
                    "f1": {"value": fnum(f1[f, 0]), "baseline": fnum(f1_base[f, 0]), "p": fnum(p_f1[f, 0]),
                           "q": fnum(q[f]), "effect": fnum(effect)},
                    "iou": {"value": fnum(iou[f, 0]), "baseline": fnum(iou_base[f, 0]), "p": fnum(p_f1[f, 0])},
                    "auprc": {"value": fnum(ap[f, 0]), "baseline": fnum(ap_base[f]), "p": fnum(ap_p[f])},
                    "pearson": {"value": fnum(r[f, 0]), "baseline": 0.0, "p": fnum(r_p[f, 0])},
                    "auroc": {"value": fnum(auroc[f, 0]),
                              "note": "secondary: AUROC barely moves when a label misses or adds classes"},
                },
                "images": {"choice": int(self.n_a.sum()), "score": int(n[f, 0]), "in_concept": int(k[f, 0]),
                           "firing": int(n_fire[f, 0]), "both": int(tp[f, 0])},
                "choice_f1": fnum(self.choice_f1[f, 0].item()),
                "spectrum": spectrum, "runner_up": runners, **quals_f, "extent": extent,
            })  # fmt: skip
        return out

    def qualifier_results(self) -> list[list[dict | None]]:
        """Per qualifier (where, colour), per direction: its record, BH over the family's tested directions."""
        assert self.qhist_b is not None and self.qnull is not None
        assert self.qual is not None and self.qual_level is not None
        out = []
        h = self.qhist_b.numpy().astype(np.float64)  # (m, 2, 2, NB)
        names = (WHERE, COLOURS)
        for q in range(2):
            lvl = np.array(LEVEL_BINS)[self.qual_level[:, q].numpy()]
            above = np.arange(NB)[None, :] >= lvl[:, None]
            pos, neg = h[:, q, 0], h[:, q, 1]
            tp = (pos * above).sum(-1)
            n_fire = ((pos + neg) * above).sum(-1)
            k = pos.sum(-1)
            f1 = f1_score(tp, k, n_fire)
            qn = self.qnull[:, q].numpy()
            base = f1_score(qn[:, 0], k, n_fire)
            cnt, sd, sd2 = qn[:, 1], qn[:, 2], qn[:, 3]
            mean_d = sd / np.maximum(cnt, 1)
            var_d = (sd2 - cnt * mean_d**2) / np.maximum(cnt - 1, 1)
            z = np.where((cnt > 1) & (var_d > 0), mean_d / np.sqrt(np.maximum(var_d, 1e-300) / np.maximum(cnt, 1)), 0)
            p = np.where(cnt > 1, normal_sf(z), 1.0)
            tested = [f for f in range(self.m) if self.qual[f, q] >= 0 and n_fire[f] > 0 and k[f] > 0]
            qv = dict(zip(tested, bh_qvalues([float(p[f]) for f in tested], len(tested)), strict=True))
            rows: list[dict | None] = []
            for f in range(self.m):
                if f not in qv:
                    rows.append(None)
                    continue
                c = int(self.qual[f, q])
                effect = kappa(f1[f], base[f])
                rows.append({"text": names[q][c], "labelled": bool(qv[f] <= LEVEL and effect >= MIN_EFFECT),
                             "f1": fnum(f1[f]), "baseline": fnum(base[f]), "effect": fnum(effect),
                             "p": fnum(p[f]), "q": fnum(qv[f]),
                             "units": int(pos[f].sum() + neg[f].sum()), "images": int(cnt[f]),
                             "level": float(LEVELS[int(self.qual_level[f, q])])})  # fmt: skip
            out.append(rows)
        return out

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


#: The "what" part of a record where no concept could be scored (no class with images in both halves fires).
NO_WHAT: dict[str, Any] = {"text": None, "kind": None, "category": None, "depth": None, "terms": [],
                           "under": [], "labelled": False, "scores": None, "images": None, "spectrum": [],
                           "runner_up": []}  # fmt: skip


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


def kappa(f1: float, base: float) -> float:
    """(F1 - baseline) / (1 - baseline): how far above chance, as a share of the room above chance."""
    return float((f1 - base) / (1 - base)) if base < 1 else 0.0


def fnum(x) -> float | None:
    """A float for JSON (None for NaN / inf)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def summarise(recs: list[dict | None], dominant: list[str] | None) -> dict:
    """Counts over one family's records: labelled, by category / kind / qualifier, category x dominant branch."""
    from collections import Counter

    scored = [r for r in recs if r and r.get("scores")]
    labelled = [r for r in scored if r["labelled"]]
    out: dict = {
        "method": "WordNet concepts (class, ancestor, or a union of up to 3) chosen on one half of the images by F1, "
                  "scored on the other half against label permutations; labelled: F1 test BH q <= 0.05",
        "level": LEVEL, "scored": len(scored), "labelled": len(labelled),
        "by_category": dict(Counter(r["category"] for r in labelled)),
        "by_kind": dict(Counter(r["kind"] for r in labelled)),
        "mean_f1": fnum(np.mean([r["scores"]["f1"]["value"] for r in scored])) if scored else None,
        "mean_f1_baseline": fnum(np.mean([r["scores"]["f1"]["baseline"] for r in scored])) if scored else None,
    }  # fmt: skip
    for q in QUALIFIERS:
        hits = [r[q]["text"] for r in recs if r and r.get(q) and r[q]["labelled"]]
        out[q] = dict(Counter(hits))
        out[f"{q}_labelled"] = len(hits)
        out[f"{q}_tested"] = sum(1 for r in recs if r and r.get(q))
    if dominant is not None:
        table: dict[str, dict[str, int]] = {}
        for r, b in zip(recs, dominant, strict=True):
            cat = r["category"] if r and r["labelled"] else "no label"
            table.setdefault(cat, {}).setdefault(b, 0)
            table[cat][b] += 1
        out["category_by_branch"] = table
        out["category_by_branch_note"] = (
            "rows: category of the feature's label ('no label' where none passed); "
            "columns: dominant branch (positive-part share test)"
        )
    return out


def label_text(rec: dict | None) -> str:
    """The shown label: the labelled parts joined by " · " ("" = no label)."""
    if rec is None:
        return ""
    parts = [rec["text"]] if rec.get("labelled") else []
    parts += [rec[q]["text"] for q in QUALIFIERS if rec.get(q) and rec[q].get("labelled")]
    return " · ".join(parts)
