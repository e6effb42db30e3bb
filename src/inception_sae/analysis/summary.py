"""summary.json (names every output) and report.md (headline numbers and figures)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..display import fmt_num, fmt_p
from ..fsio import atomic_write_text
from ..sae.metrics import firing_summary
from .branch_null import NULL_TEXT
from .branches import specialised_table
from .streaming import HIST_BINS

P_MEANING = (
    "p: upper normal tail of the row's branch L1 mass (channel-RMS units, standardised against its own entries in "
    "random channel order) above this layer's typical feature. Small p: the feature holds more of its mass in "
    "the branch than the layer's typical feature, beyond what its own entries could put there by chance. It is "
    "not the probability that the feature is specialised, and says nothing about what the feature detects"
)


def fdr_status(stats) -> str:
    """One sentence on the FDR counts of both tests."""
    pos, norm = sum(stats.fdr_counts().values()), sum(stats.fdr_counts("norm").values())
    return f"{pos} features x branches at q <= 0.01 (positive-part share), {norm} (norm share)"


def say(msg: str) -> None:
    """A note for the user on stderr (library code never prints to stdout)."""
    print(msg, file=sys.stderr)


def list_files(out: Path) -> list[str]:
    """Every file under the analysis folder except images (counted instead), relative, sorted."""
    skip = ("images", "features", "neurons", "checkpoint")
    return sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.parts[len(out.parts)] not in skip
    )


def training_counts(cfg, ctx, state) -> dict | None:
    """Dead/dense/frequency of the features on the harvest rule's positions (None: the rule is unknown)."""
    ts = state.train_stats
    if ts is None:
        return None
    freq = ts.fire_pos.double() / max(ts.positions, 1)
    rule = ctx.rule
    crop = rule.get("harvest_crop")
    if crop is None:
        grid = " (the harvest's crop is not recorded: if it was another, an approximation)"
    else:
        grid = "" if crop == cfg.input_size else f" (harvested at crop {crop}: an approximation)"
    return {
        "rule": rule, "positions": ts.positions, "images": ts.images,
        "dead": int((ts.fire_pos == 0).sum()), "dense": int((freq > 0.1).sum()), "mean_frequency": float(freq.mean()),
        "firing": firing_summary(ts.fire_pos, ts.positions, "the harvest rule's positions of the analysed images"),
        "note": f"positions selected by the harvest rule (from {rule.get('from')}), replayed on the analysis's crop "
                f"{cfg.input_size}{grid}",
    }  # fmt: skip


def build_summary(cfg, ctx, sae_cfg, state, derived, recs, source, elapsed, written) -> dict:
    """Counts, identities and the file list of the analysis."""
    s, stats = state.features.stats, derived["branches"]
    freq = s.fire_pos.double() / max(s.positions, 1)
    out = Path(cfg.out)
    n_images = state.packed_images  # JPEGs in images/examples.pack
    return {
        "layer": ctx.layer,
        "sae": {"path": str(cfg.sae), "d_in": int(sae_cfg.get("d_in", ctx.info.channels)),
                "d_sae": state.features.m, "k": sae_cfg.get("k"), "model": sae_cfg.get("model")},
        "model": {"identity": ctx.model.identity, "untrained_weights": bool(ctx.model.is_random),
                  "matches_sae": sae_cfg.get("model") in (None, ctx.model.identity)},
        "images": {"root": str(ctx.dataset.root), "requested": len(ctx.indices), "analysed": int(state.seen.sum()),
                   "skipped": ctx.skips.to_dict(), "input_size": cfg.input_size, "positions": s.positions,
                   "subset": ctx.subset},
        "counts": {
            "features": state.features.m, "neurons": state.neurons.m,
            "dead": int((s.fire_pos == 0).sum()), "dense": int((freq > 0.1).sum()),
            "mean_frequency": float(freq.mean()), "median_max": float(s.vmax.median()),
            "dominant_branch": stats.dominant_counts(),
            "specialised_fdr_1pct": stats.fdr_counts(),
            "dominant_branch_norm": stats.dominant_counts("norm"),
            "specialised_fdr_1pct_norm": stats.fdr_counts("norm"),
            "image_files": n_images,
            "similar_neuron_cosine_mean": float(derived["cosine"].mean()),
            "similar_neuron_cosine_over_0.5": int((derived["cosine"] > 0.5).sum()),
        },
        "distribution": "counts: every position of every analysed image; training_positions: the harvest "
                        "rule's positions only (what the SAE was trained on)",
        "training_positions": training_counts(cfg, ctx, state),
        "harvest": ctx.harvest,
        "branch_test": {"null": NULL_TEXT, "units": stats.units_text(),
                        "statistic": "positive-part share ||relu(d[b])|| / ||relu(d)|| (headline); the norm share "
                                     "||d[b]|| / ||d|| tested the same way (the _norm counts)",
                        "rows": f"{state.features.m} decoder rows", "tests": stats.p.numel(),
                        "correction": "Benjamini-Hochberg over features x branches, each share on its own",
                        "dominant": "most significant branch if its q <= 0.01, else 'none'",
                        "fit": stats.null_dict()["fit"], "fdr_1pct_status": fdr_status(stats),
                        "meaning": P_MEANING},
        "labels": {"source": source, "concepts": concept_summary(state, recs, stats.dominant_names())},
        "logit_effect": derived["effect_kind"],
        "examples": {"n_top": cfg.n_top, "n_intervals": cfg.n_intervals, "per_interval": cfg.per_interval,
                     "scheme": "two-pass: exact top-N (pass 1), exact uniform interval reservoirs (pass 2)",
                     "histogram_bins": HIST_BINS,
                     "training_examples": "features/<id>.json training_examples: the same on per-image maxima "
                                          "over the harvest rule's positions" if state.train_examples else None},
        "state_bytes": state.nbytes(),
        "timings_s": {**state.timings, "total": elapsed},
        "config": cfg.to_dict(),
        "files": sorted({*written, *list_files(out), "summary.json", "report.md"}),
        "directories": {"features": {"pattern": "features/<id>.json", "count": state.features.m},
                        "neurons": {"pattern": "neurons/<id>.json", "count": state.neurons.m},
                        "images": {"pattern": "images/examples.pack#<offset>+<length> (JPEG crops and heatmaps "
                                              "packed in one file)", "count": n_images}},
    }  # fmt: skip


def write_report(out: Path, summary: dict, derived) -> None:
    """report.md: headline numbers, the branch table and the figures."""
    c, stats = summary["counts"], derived["branches"]
    warn = (
        "\n**UNTRAINED WEIGHTS**: these numbers describe a random network.\n"
        if summary["model"]["untrained_weights"]
        else ""
    )
    lines = [
        f"# Analysis of {summary['layer']} ({summary['sae']['d_sae']} features, k={summary['sae']['k']})", warn,
        f"- model: `{summary['model']['identity']}`; images: {summary['images']['analysed']} analysed "
        f"({summary['images']['skipped']['total']} skipped), {summary['images']['positions']} positions",
        metrics_line(summary.get("metrics") or {}),
        f"- dead features: {c['dead']}; dense (> 10% of positions): {c['dense']}; "
        f"mean firing frequency {fmt_num(c['mean_frequency'])}",
        f"- dominant branch (most significant branch of the positive-part share against this layer's typical "
        f"feature, if q <= 0.01; else none): {c['dominant_branch']}; by the norm share: {c['dominant_branch_norm']}",
        f"- specialised at FDR 1% (Benjamini-Hochberg q <= 0.01 over features x branches): "
        f"{c['specialised_fdr_1pct']} ({summary['branch_test']['fdr_1pct_status']})",
        f"- nearest neuron: mean cosine {fmt_num(c['similar_neuron_cosine_mean'])}; "
        f"{c['similar_neuron_cosine_over_0.5']} features with cosine > 0.5 (the rest are not single neurons)",
        labels_line(summary["labels"]),
        f"- logit effect: {summary['logit_effect']}",
        f"- time: {summary['timings_s']['total']:.1f} s",
        "", "## Branch shares (positive-part share, the paper's score; grey: typical features 5-95%)", "",
        "![branch shares](figures/branch_shares_pos.png)", "",
        "Plain norm share: ![](figures/branch_shares_norm.png) Squared-norm share: ![](figures/branch_shares_sq.png)",
        "", "## Most branch-specialised features", "", "| branch | feature | share | z | p | q |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for b, rows in specialised_table(stats, 5).items():
        lines += [f"| {b} | {r['id']} | {fmt_num(r['share'])} | {fmt_num(r['z'], 2)} | {fmt_p(r['p'])} | "
                  f"{fmt_p(r['q'])} |" for r in rows]  # fmt: skip
    if derived["umap"] is not None:
        lines += [
            "",
            "## UMAP of decoder vectors",
            "",
            "![](figures/umap_dominant_branch.png) ![](figures/umap_share_5x5.png)",
        ]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


def concept_summary(state, recs, dominant: list[str]) -> dict:
    """summary.json ``labels.concepts``: counts of the features' labels (and the neurons'), with what they are on."""
    from .concept_records import summarise

    cc = state.concepts.get("features")
    split = {"choice": int(cc.n_a.sum()), "score": int(cc.n_b.sum())} if cc is not None else {"choice": 0, "score": 0}
    out = summarise(recs["features"], dominant)
    out["neurons"] = summarise(recs["neurons"], None)
    out["split"] = {**split, "how": "images with a known class, split in halves stratified by class (seeded)"}
    return out


def labels_line(labels: dict) -> str:
    c = labels.get("concepts") or {}
    cats = ", ".join(f"{k} {v}" for k, v in sorted((c.get("by_category") or {}).items(), key=lambda kv: -kv[1]))
    split = c.get("split") or {}
    return (f"- labels ({labels.get('source')} classes; chosen on {split.get('choice')} images, scored on "
            f"{split.get('score')} others): {c.get('labelled', 0)} of {c.get('scored', 0)} scored features labelled "
            f"(F1 permutation test, BH q <= {c.get('level')}){': ' + cats if cats else ''}; where: "
            f"{c.get('where_labelled', 0)}, colour: {c.get('colour_labelled', 0)}")  # fmt: skip


def metrics_line(m: dict) -> str:
    """The reconstruction and splice-back numbers of ``summary["metrics"]``, each with what it is computed on."""
    parts = []
    if m.get("fvu") is not None:
        parts.append(f"FVU {fmt_num(m['fvu'])} on {m['fvu_on']}")
    if m.get("l0") is not None:
        parts.append(f"L0 {fmt_num(m['l0'])}")
    if m.get("splice_top1") is not None:
        parts.append(f"splice-back top-1 agreement {fmt_num(m['splice_top1'])} and KL {fmt_num(m['splice_kl'])} "
                     f"({m['splice_on']}, {m.get('splice_images')} images)")  # fmt: skip
    if not parts:
        return "- reconstruction: not evaluated (give analyze --eval-report, or use `run`)"
    return "- reconstruction: " + "; ".join(parts)
