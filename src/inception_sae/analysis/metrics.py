"""The headline numbers of one layer (FVU, L0, dead, splice-back), written into the analysis's summary.json.

``analyze`` (and ``run``, for every layer) computes them once, from the evaluation report
(``inception-sae eval --report``, ``eval.json``), the SAE's ``cfg.json`` and the analysis's own
counts, so the dashboard reads one source per layer: ``summary["metrics"]``. Each number says
what it is computed on (``*_on``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..fsio import read_json


def _first(*values):
    return next((v for v in values if v is not None), None)


def read_eval_report(path: Path | None, layer: str, sae_path: Path) -> dict:
    """The evaluation report at ``path`` ({} for None), checked to be about an SAE of ``layer``."""
    if path is None:
        return {}
    ev = read_json(path, None)
    if not isinstance(ev, dict):
        raise UserError(f"evaluation report {path} is missing or not JSON (write it with `eval --report`)")
    named = ev.get("layer")
    if named is None and ev.get("sae"):  # reports written before they named their layer
        cfg = Path(ev["sae"]) / "cfg.json"
        named = read_json(cfg, {}).get("layer")
    if named is not None and named != layer:
        raise UserError(f"evaluation report {path} is about a {named} SAE, but {sae_path} is a {layer} SAE")
    return ev


def headline_firing(summary: dict, store: dict) -> dict:
    """Dead and dense with their sample: held-out store rows (the training distribution, never trained on) when
    evaluated, else the harvest rule's positions of the analysed images, else every analysed position."""
    if store.get("held_out") and store.get("firing"):
        return {**store["firing"], "on": "held-out store rows"}
    tp = (summary.get("training_positions") or {}).get("firing")
    if tp:
        return {**tp, "on": "training positions of the analysed images"}
    if store.get("firing"):
        return {**store["firing"], "on": "store rows that training read"}
    return {}


def headline_metrics(summary: dict, sae_cfg: dict, ev: dict, ev_path: Path | None = None) -> dict:
    """FVU, L0, dead fraction and splice-back agreement of one layer, each with what it is computed on.

    Sources, first found wins: the evaluation report ``ev`` (its ``store`` rows, then
    splice-back on the harvest rule's positions, then at every position), the SAE's
    ``cfg.json`` (``training``: means over the last training steps), and the analysis's own
    counts in ``summary``. Dead and dense follow one definition (``sae.metrics.firing_summary``)
    with the rows they rest on and an interval; below its minimum sample the dead share is None
    and ``dead_status`` says "too few rows".
    """
    train = sae_cfg.get("training") or {}
    store, splice = ev.get("store") or {}, ev.get("splice") or {}
    trained_splice = splice.get("training_positions") or {}
    vec = (trained_splice or splice).get("vectors") or {}  # splice-back images' own vectors
    counts = summary.get("training_positions") or summary.get("counts") or {}
    n_feat = (summary.get("counts") or {}).get("features") or (summary.get("sae") or {}).get("d_sae")
    firing = headline_firing(summary, store)
    fvu_sources = [
        (store.get("fvu"), "held-out store rows" if store.get("held_out") else "store rows that training read"),
        (trained_splice.get("fvu"), "splice-back images, trained positions"),
        (splice.get("fvu"), "splice-back images, every position"),
        (train.get("final_fvu"), "training batches (recent mean)"),
    ]
    fvu, fvu_on = next(((v, on) for v, on in fvu_sources if v is not None), (None, None))
    top1 = _first(trained_splice.get("top1_agreement"), splice.get("top1_agreement"))
    splice_on = None
    if splice:
        splice_on = "trained positions" if trained_splice and top1 == trained_splice.get("top1_agreement") else (
            "every position")  # fmt: skip
    return {
        "fvu": fvu,
        "fvu_on": fvu_on,
        "l0": _first(store.get("l0"), vec.get("l0"), train.get("l0")),
        "dead_fraction": firing.get("dead_fraction"),
        "dead_interval": firing.get("dead_interval"),
        "dense_fraction": firing.get("dense_fraction"),
        "dense_interval": firing.get("dense_interval"),
        "dead_on": firing.get("on"),
        "dead_rows": firing.get("rows"),
        "dead_status": firing.get("status"),
        "dead_definition": firing.get("definition"),
        "splice_top1": top1,
        "splice_kl": _first(trained_splice.get("kl"), splice.get("kl")),
        "splice_on": splice_on,
        "splice_images": splice.get("images"),
        "splice_note": splice.get("note") or trained_splice.get("note"),
        "k": _first((summary.get("sae") or {}).get("k"), sae_cfg.get("k")),
        "features": n_feat,
        "dead": counts.get("dead"),
        "dense": counts.get("dense"),
        "images": (summary.get("images") or {}).get("analysed"),
        "eval_report": str(ev_path) if ev and ev_path else None,
        "quality": ev.get("quality"),  # absorption, probing, stability, L0 advice (docs/quality.md)
    }
