"""The records of the concept labels: scores on the score half, tests, and the family summary.

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
from collections import Counter
from typing import Any

import numpy as np

from .concept_pixels import COLOURS, WHERE
from .concept_scores import LEVEL_BINS, LEVELS, NB, ap_permutation, f1_score, hypergeom_sf_many, normal_sf, slot_scores
from .concepts import SLOTS, ConceptCounts
from .labels import bh_qvalues

LEVEL = 0.05  #: BH level
#: A part is shown only when its F1 is also this far above chance, as a share of what is left above chance:
#: (F1 - baseline) / (1 - baseline), the F1 analogue of Cohen's kappa. Significance alone labels weak real
#: associations (on a random network, "artifact" at F1 0.67 against 0.63: kappa 0.1, p 1e-3).
MIN_EFFECT = 0.2
QUALIFIERS = ("where", "colour")
#: Extent (mean share of the map at or above half the image's max, where the direction fires): "small" below
#: SMALL (at 14 x 14, under 10 positions), "object-sized" from OBJECT_SIZED up, "medium" between. A descriptor with
#: the layer's median beside it, not a tested label.
SMALL, OBJECT_SIZED = 0.05, 0.25

#: The "what" part of a record where no concept could be scored (no class with images in both halves fires).
NO_WHAT: dict[str, Any] = {"text": None, "kind": None, "category": None, "depth": None, "terms": [],
                           "under": [], "labelled": False, "scores": None, "images": None, "spectrum": [],
                           "runner_up": []}  # fmt: skip


def records(cc: ConceptCounts, seed: int = 0) -> list[dict | None]:
    """Per direction: the label record (``label_concept``) or None where nothing could be chosen."""
    if cc.hist_b is None:
        return [None] * cc.m
    assert cc.sum_in is not None and cc.mom_b is not None and cc.extent is not None
    assert cc.chosen is not None and cc.chosen_level is not None and cc.choice_f1 is not None
    sp = cc.space
    h = cc.hist_b.numpy().astype(np.float64)  # (m, S, 2, NB)
    pos, neg = h[:, :, 0], h[:, :, 1]
    lvl = np.array(LEVEL_BINS)[cc.chosen_level.numpy()]  # (m,)
    sc = slot_scores(pos, neg, lvl[:, None], cc.sum_in.numpy(), cc.mom_b.numpy()[:, None, :])
    tp, n_fire, k, n = sc["tp"], sc["n_fire"], sc["k"], sc["n"]
    f1, iou, ap, r, auroc = sc["f1"], sc["iou"], sc["auprc"], sc["pearson"], sc["auroc"]
    f1_base, iou_base = sc["f1_baseline"], sc["iou_baseline"]
    p_f1 = hypergeom_sf_many(tp, n_fire, k, n)
    ap_base, ap_p = ap_permutation(pos[:, 0] + neg[:, 0], k[:, 0], ap[:, 0], seed)
    r_p = normal_sf(np.nan_to_num(r) * np.sqrt(np.maximum(n - 1, 0)))
    scored = [f for f in range(cc.m) if cc.chosen[f, 0, 0] >= 0 and k[f, 0] > 0 and n_fire[f, 0] > 0]
    q = dict(zip(scored, bh_qvalues([float(p_f1[f, 0]) for f in scored], len(scored)), strict=True))
    quals = qualifier_records(cc)
    ext = cc.extent.numpy()
    share = np.where(ext[:, 1] > 0, ext[:, 0] / np.maximum(ext[:, 1], 1), np.nan)
    layer_median = float(np.nanmedian(share)) if np.isfinite(share).any() else None
    size_text = np.where(share < SMALL, "small", np.where(share >= OBJECT_SIZED, "object-sized", "medium"))
    out: list[dict | None] = []
    for f in range(cc.m):
        quals_f = {"where": quals[0][f], "colour": quals[1][f]}
        extent = None if not np.isfinite(share[f]) else {
            "share": fnum(share[f]), "images": int(ext[f, 1]), "layer_median": fnum(layer_median),
            "text": str(size_text[f])}  # fmt: skip
        if f not in q:
            has = any(quals_f.values())
            out.append({**NO_WHAT, **quals_f, "extent": extent} if has else None)
            continue
        terms = [int(c) for c in cc.chosen[f, 0].tolist() if c >= 0]
        kind = sp.kinds[terms[0]] if len(terms) == 1 else "classes" if all(
            sp.kinds[c] == "class" for c in terms) else "ancestor"  # fmt: skip
        common = set(sp.under[terms[0]])
        for c in terms[1:]:
            common &= set(sp.under[c])
        t = float(LEVELS[int(cc.chosen_level[f])])
        spectrum = []
        for j in range(10):  # tenths of the max: fine bins 1+2j, 2+2j
            sl = slice(1 + 2 * j, 3 + 2 * j)
            spectrum.append({"lo": j / 10, "hi": (j + 1) / 10, "in_concept": int(pos[f, 0, sl].sum()),
                             "images": int(pos[f, 0, sl].sum() + neg[f, 0, sl].sum())})  # fmt: skip
        runners = []
        for s in range(1, SLOTS):
            c = int(cc.chosen[f, s, 0])
            if c < 0:
                continue
            runners.append({"text": sp.names[c], "key": sp.keys[c], "kind": sp.kinds[c],
                            "category": sp.category[c], "f1": fnum(f1[f, s]), "baseline": fnum(f1_base[f, s]),
                            "p": fnum(p_f1[f, s]), "choice_f1": fnum(cc.choice_f1[f, s].item())})  # fmt: skip
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
            "images": {"choice": int(cc.n_a.sum()), "score": int(n[f, 0]), "in_concept": int(k[f, 0]),
                       "firing": int(n_fire[f, 0]), "both": int(tp[f, 0])},
            "choice_f1": fnum(cc.choice_f1[f, 0].item()),
            "spectrum": spectrum, "runner_up": runners, **quals_f, "extent": extent,
        })  # fmt: skip
    return out


def qualifier_records(cc: ConceptCounts) -> list[list[dict | None]]:
    """Per qualifier (where, colour), per direction: its record, BH over the family's tested directions."""
    assert cc.qhist_b is not None and cc.qnull is not None
    assert cc.qual is not None and cc.qual_level is not None
    out = []
    h = cc.qhist_b.numpy().astype(np.float64)  # (m, 2, 2, NB)
    names = (WHERE, COLOURS)
    for q in range(2):
        lvl = np.array(LEVEL_BINS)[cc.qual_level[:, q].numpy()]
        above = np.arange(NB)[None, :] >= lvl[:, None]
        pos, neg = h[:, q, 0], h[:, q, 1]
        tp = (pos * above).sum(-1)
        n_fire = ((pos + neg) * above).sum(-1)
        k = pos.sum(-1)
        f1 = f1_score(tp, k, n_fire)
        qn = cc.qnull[:, q].numpy()
        base = f1_score(qn[:, 0], k, n_fire)
        cnt, sd, sd2 = qn[:, 1], qn[:, 2], qn[:, 3]
        mean_d = sd / np.maximum(cnt, 1)
        var_d = (sd2 - cnt * mean_d**2) / np.maximum(cnt - 1, 1)
        z = np.where((cnt > 1) & (var_d > 0), mean_d / np.sqrt(np.maximum(var_d, 1e-300) / np.maximum(cnt, 1)), 0)
        p = np.where(cnt > 1, normal_sf(z), 1.0)
        tested = [f for f in range(cc.m) if cc.qual[f, q] >= 0 and n_fire[f] > 0 and k[f] > 0]
        qv = dict(zip(tested, bh_qvalues([float(p[f]) for f in tested], len(tested)), strict=True))
        rows: list[dict | None] = []
        for f in range(cc.m):
            if f not in qv:
                rows.append(None)
                continue
            c = int(cc.qual[f, q])
            effect = kappa(f1[f], base[f])
            rows.append({"text": names[q][c], "labelled": bool(qv[f] <= LEVEL and effect >= MIN_EFFECT),
                         "f1": fnum(f1[f]), "baseline": fnum(base[f]), "effect": fnum(effect),
                         "p": fnum(p[f]), "q": fnum(qv[f]),
                         "units": int(pos[f].sum() + neg[f].sum()), "images": int(cnt[f]),
                         "level": float(LEVELS[int(cc.qual_level[f, q])])})  # fmt: skip
        out.append(rows)
    return out


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
