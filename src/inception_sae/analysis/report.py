"""Write the analysis folder: per-direction JSON, branch/class/UMAP data and figures, summary, report."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import branches as br
from .branch_null import LEVEL
from .concept_records import label_text, records
from .examples import Family
from .labels import CORRECTION, Enrichment, class_enrichment
from .labels import LEVEL as LABEL_LEVEL
from .logits import class_top_features, top_classes
from .streaming import HIST_BINS, HIST_HI, HIST_LO

DENSE_FREQ = 0.1  #: a direction firing at more than this share of positions is "dense"


def dump(path: Path, obj) -> None:
    """Compact JSON written in place: the per-direction files are many, and an analysis whose summary.json (written
    last, atomically) is missing is redone whole, so a torn one is never read as complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")))


def example_dicts(ctx, files: dict, family: str, f: int, entries, flags: list[bool] | None = None) -> list[dict]:
    """(image, flat pos, value) entries -> dicts {image, y, x, value} (docs/formats.md) plus provenance and files.

    ``flags`` (one per entry): whether the argmax is one of the harvest rule's positions (``at_training_position``).
    """
    W = ctx.info.size
    out = []
    for j, (image, pos, value) in enumerate(entries):
        y, x = divmod(pos, W)
        d = {"image": ctx.dataset.image_id(image), "y": y, "x": x, "value": value, "image_index": image}
        d["rf_box"] = list(ctx.info.rf_box(y, x))
        if flags is not None:
            d["at_training_position"] = flags[j]
        d.update(files.get((family, f, image, pos), {}))
        out.append(d)
    return out


def stats_dict(s, f: int) -> dict:
    """Frequency, max, mean, histogram, dead/dense flags of direction ``f`` in the statistics ``s``."""
    fires = int(s.fire_pos[f])
    freq = fires / max(s.positions, 1)
    return {
        "frequency": freq,
        "frequency_image": int(s.fire_img[f]) / max(s.images, 1),
        "max": float(s.vmax[f]),
        "mean": float(s.total[f]) / max(s.positions, 1),
        "mean_when_firing": float(s.total[f]) / fires if fires else 0.0,
        "dead": fires == 0,
        "dense": freq > DENSE_FREQ,
        "histogram": {"log10_lo": -4, "log10_hi": 4, "bins": HIST_BINS, "counts": s.hist[f].tolist(),
                      "note": f"positive activations; first/last counts are < {HIST_LO} / >= {HIST_HI}"},
    }  # fmt: skip


def activation_dict(fam: Family, f: int) -> dict:
    """Frequency, max, mean, histogram, dead/dense flags of direction ``f`` over every position."""
    return stats_dict(fam.stats, f)


def training_dict(state, f: int) -> dict | None:
    """Feature ``f`` on the harvest rule's positions only (the training distribution); None without a rule."""
    if state.train_stats is None:
        return None
    iv = state.train_intervals[f]
    n_iv = int(iv.sum())
    return {
        **stats_dict(state.train_stats, f),
        "interval_counts": iv.tolist(),
        "interval_shares": [c / n_iv if n_iv else 0.0 for c in iv.tolist()],
        "interval_unit": "firing training positions per equal-width interval of [0, max over every position]",
    }


def spectrum_dict(ctx, files, family: str, fam: Family, f: int) -> dict:
    """Top examples, interval examples (flat: docs/formats.md, "Analysis folder") and interval ranges."""
    ranges, flat = [], []
    for j, iv in enumerate(fam.interval_examples(f)):
        ranges.append({k: iv[k] for k in ("lo", "hi", "count", "share")})
        for e in example_dicts(ctx, files, family, f, iv["examples"], iv["flags"]):
            flat.append({**e, "interval": j, "lo": iv["lo"], "hi": iv["hi"]})
    return {
        "top_examples": example_dicts(ctx, files, family, f, fam.top_examples(f), fam.top_flags(f)),
        "intervals": flat,
        "interval_ranges": ranges,
        "interval_unit": "images (value = max over positions); share = share of firing images",
    }


def training_examples_dict(ctx, state, files, f: int) -> tuple[dict | None, str]:
    """Feature ``f``'s examples on the harvest rule's positions (None and why when there are none) and a note."""
    if state.train is None:
        return None, (
            "no training-position examples: the harvest rule is unknown (none in the SAE folder's "
            "cfg.json, or --harvest-rule none)"
        )
    if not state.train_examples:
        return None, "no training-position examples: switched off for this analysis (--no-training-examples)"
    from ..data.sampling import describe_rule

    d = spectrum_dict(ctx, files, "features", state.train, f)
    d["interval_unit"] = "images (value = max over the training positions); share = share of firing images"
    d["positions"] = (
        f"per image, the feature's max over the positions the harvest rule selects ({describe_rule(ctx.rule)}; "
        "0 if it fires at none); intervals: equal-width of [0, its max on those positions]"
    )
    firing = int(state.train.stats.fire_img[f])
    d["counts"] = {"images": firing, "per_interval": state.train.interval_counts[f].tolist()}
    note = "training_examples: on the positions the SAE was trained on; at_training_position: whether an "
    note += "every-position example's argmax is one of them"
    if firing == 0:
        note += "; this feature never fires at a training position, so it has no training-position examples"
    return d, note


def feature_json(ctx, state, derived, rec: dict | None, files, names, f: int, enr: Enrichment) -> dict:
    stats: br.BranchStats = derived["branches"]
    bn = stats.names
    share = lambda kind: {b: float(stats.shares[kind][f, j]) for j, b in enumerate(bn)}  # noqa: E731
    d = {"id": f, "layer": ctx.layer, "kind": "feature", **activation_dict(state.features, f)}
    d["positions"] = "frequency, max, mean, histogram, intervals: every position of every analysed image"
    d["training_positions"] = training_dict(state, f)  # the same on the positions the SAE was trained on
    d.update(branch_share=share("pos"), branch_share_norm=share("norm"), branch_share_sq=share("sq"),
             largest_share_branch=bn[int(stats.largest[f])])  # fmt: skip
    for kind, t in stats.tests.items():
        suffix = "" if kind == "pos" else f"_{kind}"
        dom = int(t.dominant[f])
        d[f"branch_z{suffix}"] = {b: float(t.z[f, j]) for j, b in enumerate(bn)}
        d[f"branch_p{suffix}"] = {b: float(t.p[f, j]) for j, b in enumerate(bn)}
        d[f"branch_q{suffix}"] = {b: float(t.q[f, j]) for j, b in enumerate(bn)}
        d[f"dominant_branch{suffix}"] = bn[dom] if dom >= 0 else br.NONE
    d["branch_share_note"] = (
        "branch_share = ||relu(d[b])||/||relu(d)|| (the paper's; tested: branch_z/p/q, dominant_branch), "
        "branch_share_norm = ||d[b]||/||d|| (tested: branch_z/p/q_norm, dominant_branch_norm); p: upper tail of "
        "the row's branch L1 mass in channel-RMS units against this layer's typical feature (empirical null); "
        f"q: Benjamini-Hochberg over all features x branches; dominant: most significant branch if q <= {LEVEL}, "
        "else 'none'; decoder rows"
    )
    n = int(derived["neuron"][f])
    d["similar_neuron"] = {
        "neuron": n,
        "cosine": float(derived["cosine"][f]),
        "share": float(derived["cosine"][f]) ** 2,
        "rule": "largest signed cosine of the unit decoder row with a channel",
    }
    d.update(spectrum_dict(ctx, files, "features", state.features, f))
    d["training_examples"], d["training_positions_note"] = training_examples_dict(ctx, state, files, f)
    d.update(label_dict(rec))
    d.update(label_enrichment(enr, f))
    d["logit_effect_kind"] = derived["effect_kind"]
    if derived["effect"] is not None:
        d["top_classes"], d["bottom_classes"] = top_classes(derived["effect"][f], names)
    if derived["umap"] is not None:
        d["umap"] = derived["umap"][f].tolist()
    return d


def neuron_json(ctx, state, rec: dict | None, files, names, j: int, enr: Enrichment) -> dict:
    branch = next(b.name for b in ctx.info.branches if b.slice[0] <= j < b.slice[1])
    d = {"id": j, "layer": ctx.layer, "kind": "neuron", "branch": branch, **activation_dict(state.neurons, j)}
    d.update(spectrum_dict(ctx, files, "neurons", state.neurons, j))
    d.update(label_dict(rec))
    d.update(label_enrichment(enr, j))
    return d


LABEL_KIND = (
    "WordNet concept (class, ancestor or union of up to 3) chosen on one half of the images, F1 on "
    "the other half; where / colour qualifiers on (image, 3x3 cell) units; '' = nothing passed its test"
)


def label_dict(rec: dict | None) -> dict:
    """label (the labelled parts, '' = no label), label_score (held-out F1 when labelled), label_concept."""
    scores = (rec or {}).get("scores") or {}
    score = (scores.get("f1") or {}).get("value") if rec and rec.get("labelled") else None
    return {"label": label_text(rec), "label_score": score, "label_kind": LABEL_KIND, "label_concept": rec}


def label_enrichment(enr: Enrichment, f: int) -> dict:
    """label_classes (count, share, ratio, p, q per class), label_significant and what the test is."""
    return {
        "label_classes": enr.classes[f],
        "label_significant": enr.significant[f],
        "label_test": f"p: one-sided hypergeometric P(>= count of the top images in the class) drawn from the "
        f"{enr.images} analysed images; q: {CORRECTION} ({enr.family_size} tests); significant: q <= {LABEL_LEVEL}",
    }


def enrichments(state, names) -> dict[str, Enrichment]:
    """Class enrichment of the features' and the neurons' top images, each family corrected on its own."""
    counts = class_counts(state)
    return {k: class_enrichment(fam.top.image, state.image_class, counts, names)
            for k, fam in (("features", state.features), ("neurons", state.neurons))}  # fmt: skip


def class_counts(state) -> torch.Tensor:
    cls = state.image_class[state.seen & (state.image_class >= 0)]
    return torch.bincount(cls, minlength=1008)


def branch_family(cfg, stats: br.BranchStats, labels: list[str]) -> dict | None:
    """The configured family of features, its name and its test in every branch (None when none is given)."""
    from .branch_figure import family_test, select_family
    from .config import parse_family

    ids, text = parse_family(cfg.family)
    if ids is None and text is None:
        return None
    members = select_family(labels, ids=ids, substring=text)
    specialised = (stats.q <= LEVEL).numpy()
    result = family_test(stats.shares["pos"].numpy(), specialised, members, list(stats.names))
    name = f"label contains {text!r}" if text is not None else f"{len(members)} chosen features"
    return {"name": name, "spec": cfg.family, "share": "pos", **result}


def write_branch_outputs(out: Path, ctx, derived, family: dict | None = None) -> list[str]:
    stats: br.BranchStats = derived["branches"]
    data: dict = {kind: br.figure_data(stats, kind) for kind in br.KINDS}
    data["table"] = br.specialised_table(stats)
    data["table_norm"] = br.specialised_table(stats, kind="norm")
    data["dominant_counts"] = stats.dominant_counts()
    data["dominant_counts_norm"] = stats.dominant_counts("norm")
    data["specialised_fdr_1pct"] = stats.fdr_counts()
    data["specialised_fdr_1pct_norm"] = stats.fdr_counts("norm")
    data["agreement"] = agreement(stats)
    data["null"] = stats.null_dict()
    data["channel_scale"] = stats.scale.tolist()
    data["channel_live"] = stats.live.tolist()
    data["dominant_rule"] = f"most significant branch (largest z) if its q <= {LEVEL}, else 'none'"
    data["family"] = family
    dump(out / "branches.json", data)
    written = ["branches.json"]
    from .branch_figure import plot_branch_figure

    (out / "figures").mkdir(parents=True, exist_ok=True)
    for kind in br.KINDS if stats.names else ():  # layers that are not inception blocks have no branches
        name = f"figures/branch_shares_{kind}.png"
        band = {b: (v["null_q05"], v["null_median"], v["null_q95"]) for b, v in data[kind]["branches"].items()}
        fam = family if family is not None and kind == family["share"] else None
        plot_branch_figure(stats.shares[kind].numpy(), band, list(stats.names), ctx.layer, out / name,
                           br.SHARE_LABELS[kind], family=fam["family"] if fam else None,
                           family_name=fam["name"] if fam else None, family_result=fam,
                           untrained=bool(ctx.model.is_random))  # fmt: skip
        written.append(name)
    return written


def agreement(stats: br.BranchStats) -> dict:
    """How often the ``pos`` and ``norm`` tests give the same dominant branch, and their cross-table."""
    a, b = stats.dominant_names("pos"), stats.dominant_names("norm")
    table: dict[str, dict[str, int]] = {}
    for x, y in zip(a, b, strict=True):
        table.setdefault(x, {}).setdefault(y, 0)
        table[x][y] += 1
    same = sum(x == y for x, y in zip(a, b, strict=True))
    note = "rows: dominant branch of the positive-part share (headline); columns: of the norm share"
    return {"same_dominant_branch": same, "features": len(a), "table_pos_by_norm": table, "note": note}


def write_umap(out: Path, ctx, derived, recs: list | None = None) -> list[str]:
    from .embedding import UMAP_MISSING, plot_umap, plot_umap_categories

    if derived["umap"] is None:
        if derived["umap_requested"]:
            from .summary import say

            say(UMAP_MISSING)
        return []
    stats = derived["branches"]
    dom = stats.dominant_names()
    cats = [r["category"] if r and r.get("labelled") else None for r in recs or [None] * len(dom)]
    dump(out / "umap.json", {"coords": derived["umap"].tolist(), "dominant_branch": dom, "category": cats,
                             "method": "umap-learn, cosine, unit decoder rows"})  # fmt: skip
    (out / "figures").mkdir(parents=True, exist_ok=True)
    plot_umap_categories(derived["umap"], cats, ctx.layer, out / "figures/umap_category.png",
                         bool(ctx.model.is_random))  # fmt: skip
    paths = ["figures/umap_dominant_branch.png", "figures/umap_category.png"]
    for j, b in enumerate(stats.names):
        pair = ["figures/umap_dominant_branch.png", f"figures/umap_share_{b}.png"]
        plot_umap(derived["umap"], dom, stats.shares["pos"][:, j], b, ctx.layer, [out / p for p in pair],
                  untrained=bool(ctx.model.is_random))  # fmt: skip
        paths.append(pair[1])
    return ["umap.json", *paths]


def write_all(cfg, ctx, sae_cfg, state, derived, files, names, source, elapsed, ev=None) -> dict:
    """Write every file and return the summary (also written to summary.json)."""
    import time

    out = Path(cfg.out)
    t0 = time.perf_counter()
    m = state.features.m
    recs = {k: [None] * n for k, n in (("features", m), ("neurons", state.neurons.m))}
    recs.update({k: records(cc, cfg.seed) for k, cc in state.concepts.items()})
    state.timings["labels_s"] = time.perf_counter() - t0
    feat_labels = [label_text(r) for r in recs["features"]]
    enr = enrichments(state, names)  # the q-values need every direction at once
    for f in range(m):
        dump(out / "features" / f"{f}.json",
             feature_json(ctx, state, derived, recs["features"][f], files, names, f, enr["features"]))  # fmt: skip
    for j in range(state.neurons.m):
        dump(out / "neurons" / f"{j}.json",
             neuron_json(ctx, state, recs["neurons"][j], files, names, j, enr["neurons"]))  # fmt: skip
    family = branch_family(cfg, derived["branches"], feat_labels) if derived["branches"].names else None
    written = write_branch_outputs(out, ctx, derived, family) + write_umap(out, ctx, derived, recs["features"])
    if derived["effect"] is not None:
        classes = class_top_features(derived["effect"], names)
        dump(out / "classes.json", {"kind": derived["effect_kind"], "classes": classes})
        written.append("classes.json")
    from .folder import Analysis
    from .metrics import headline_metrics
    from .summary import build_summary, write_report

    summary = build_summary(cfg, ctx, sae_cfg, state, derived, recs, source, elapsed, written)
    summary["labels"].update(enr["features"].summary("features"))
    summary["labels"]["significant_neurons"] = sum(enr["neurons"].significant)
    summary["labels"]["family_size_neurons"] = enr["neurons"].family_size
    summary["metrics"] = headline_metrics(summary, sae_cfg, ev or {}, cfg.eval_report)
    write_report(out, summary, derived)
    Analysis.write_summary(out, summary)  # the completion marker: last
    return summary
