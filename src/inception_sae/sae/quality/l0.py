"""L0 advice from a sweep over k: where the FVU-vs-L0 curve bends (an elbow rule).

Rule (:func:`l0_advice`): put the sweep's SAEs on x = log L0 (measured L0 on the same held-out rows) and
y = FVU, scale both to [0, 1] over the sweep, draw the chord from the sparsest to the densest SAE and take
the SAE whose point lies farthest below it (Satopää et al. 2011, "Kneedle"). Below the true number of
active features per input, each extra latent removes a whole feature's variance; above it, only noise and
splits are left, so FVU flattens. The advice is the elbow SAE's L0, and its interval is the L0 of its
neighbours in the sweep (the sweep resolves the bend no finer). With fewer than three SAEs, a densest SAE
that reconstructs no better than the sparsest, or a curve with no point below its chord, there is no advice
and ``note`` says why.
"""

from __future__ import annotations

import numpy as np

RULE = ("elbow of FVU vs log L0: the sweep's SAE farthest below the chord from the sparsest to the densest, "
        "both axes scaled to [0, 1]; interval: its neighbours' L0")  # fmt: skip


def l0_advice(points: list[dict]) -> dict:
    """Advice from sweep ``points``: dicts with ``l0`` and ``fvu`` (and any other keys, e.g. ``sae``, ``k``,
    ``rows``), one per SAE measured on the same rows."""
    pts = sorted((p for p in points if p.get("l0") and p.get("fvu") is not None), key=lambda p: p["l0"])
    out: dict = {"rule": RULE, "points": pts, "sweep": len(pts)}
    if len({round(p["l0"], 6) for p in pts}) < 3:
        return {
            **out,
            "l0": None,
            "interval": None,
            "note": f"needs a sweep of >= 3 SAEs of different L0 (has {len(pts)})",
        }
    x = np.log([p["l0"] for p in pts])
    y = np.array([p["fvu"] for p in pts], dtype=float)
    if y[-1] >= y[0]:
        return {**out, "l0": None, "interval": None, "note": "FVU does not fall from the sparsest SAE to the densest"}
    xs = (x - x[0]) / (x[-1] - x[0])
    span = y.max() - y.min()
    ys = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    chord = ys[0] + (ys[-1] - ys[0]) * xs
    below = chord - ys
    i = int(np.argmax(below))
    if below[i] <= 1e-9:
        return {**out, "l0": None, "interval": None, "note": "no elbow: FVU falls no faster below any L0 than above"}
    lo, hi = pts[max(i - 1, 0)]["l0"], pts[min(i + 1, len(pts) - 1)]["l0"]
    return {**out, "l0": float(pts[i]["l0"]), "interval": [float(lo), float(hi)], "elbow": i,
            "distance_below_chord": float(below[i]), "sae": pts[i].get("sae"), "k": pts[i].get("k")}  # fmt: skip
