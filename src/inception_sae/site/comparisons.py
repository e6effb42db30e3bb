"""SAE comparisons on the site: one page per compared pair, and each feature's best matches.

Reads the ``compare.json`` written by ``inception-sae compare`` (a folder or the file). A side of
a comparison is "on the site" when the site has its layer and, where the analysis records its
SAE folder, that folder is the side's SAE (two SAEs of one layer cannot both be on the site).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import UserError
from ..fsio import read_json

#: Matched pairs listed on a comparison page (the strongest first).
PAIRS_SHOWN = 300


def read_compare(path: Path) -> tuple[dict, Path]:
    """(compare.json contents, its folder)."""
    p = Path(path)
    f = p / "compare.json" if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"--compare {path}: no compare.json there (run `inception-sae compare` first)")
    doc = read_json(f)
    for key in ("a", "b", "features_a", "features_b"):
        if key not in doc:
            raise UserError(f"{f} lacks '{key}': not written by `inception-sae compare`")
    return doc, f.parent


def _same_path(x: str | None, y: str | None) -> bool:
    if not x or not y:
        return False
    try:
        return os.path.samefile(x, y)
    except OSError:
        return Path(x).resolve() == Path(y).resolve()


def sides_on_site(doc: dict, site_saes: dict[str, tuple[str | None, int]]) -> dict[str, bool]:
    """Side ("a"/"b") -> whether its features are this site's features of its layer.

    ``site_saes``: layer -> (SAE folder recorded by the analysis, feature count on the site).
    """
    out = {}
    for side in ("a", "b"):
        layer = doc[side].get("layer")
        path, n = site_saes.get(layer, (None, -1))
        if n != doc[side].get("d_sae"):
            out[side] = False
        elif path and Path(path).is_dir():
            out[side] = _same_path(path, doc[side].get("path"))
        else:  # the analysis's SAE cannot be checked: side A of a same-layer pair, both sides otherwise
            out[side] = side == "a" or not doc.get("same_layer")
    return out


def _col(cols: dict, key: str, i: int):
    v = cols.get(key)
    return v[i] if v is not None and i < len(v) else None


def feature_matches(k: int, doc: dict, on_site: dict[str, bool]) -> dict[tuple[str, int], list[dict]]:
    """(layer, feature id) -> its best matches in comparison ``k`` (for the sides on the site)."""
    out: dict[tuple[str, int], list[dict]] = {}
    for side, other in (("a", "b"), ("b", "a")):
        if not on_site[side]:
            continue
        cols, layer = doc[f"features_{side}"], doc[side]["layer"]
        o_layer = doc[other]["layer"]
        for i in cols["id"]:
            m = {"pair": k, "other_layer": o_layer, "other_sae": Path(str(doc[other].get("path"))).name,
                 "same_layer": bool(doc.get("same_layer")), "linked": on_site[other]}  # fmt: skip
            for kind in ("cos", "corr"):
                if kind in cols:
                    m[kind] = [_col(cols, f"{kind}_match", i), _col(cols, kind, i)]
            if "corr_above_null" in cols:
                m["above_null"] = _col(cols, "corr_above_null", i)
            if "position_tied" in cols:
                m["position_tied"] = _col(cols, "position_tied", i)
            out.setdefault((layer, int(i)), []).append(m)
    return out


def model_of(doc: dict, layers: dict[str, tuple[str, bool]]) -> dict:
    """``{"identity", "untrained"}`` of a comparison: untrained when either SAE's recorded model is random
    ("random:...") or the site's analysis of either layer says so (``layers``: layer -> (identity, untrained))."""
    recorded = [str(doc[s]["model"]) for s in ("a", "b") if doc[s].get("model")]
    seen = [(i, i.startswith("random:")) for i in recorded]
    seen += [layers[doc[s].get("layer")] for s in ("a", "b") if doc[s].get("layer") in layers]
    random = [i for i, untrained in seen if untrained]
    return {"identity": (random or [i for i, _ in seen] or ["unknown"])[0], "untrained": bool(random)}


def pair_page(k: int, doc: dict, on_site: dict[str, bool], model: dict | None = None) -> dict:
    """Everything the comparison page shows: the summary, the strongest pairs, links."""
    fa, fb = doc["features_a"], doc["features_b"]
    key = "corr" if "corr" in fa else "cos"
    rows = []
    for i in fa["id"]:
        j = _col(fa, f"{key}_match", i)
        v = _col(fa, key, i)
        if j is None or v is None:
            continue
        cos, corr = _col(fa, "cos", i), _col(fa, "corr", i)
        rows.append([i, j, cos, corr, _col(fa, "corr_above_null", i), _col(fa, "dominant_branch", i),
                     _col(fb, "dominant_branch", j), _col(fa, "position_tied", i)])  # fmt: skip
    rows.sort(key=lambda r: -(r[3] if key == "corr" else r[2]))
    summary = {k_: v for k_, v in doc.items() if k_ not in ("features_a", "features_b")}
    return {"index": k, "summary": summary, "ranked_by": key, "pairs": rows[:PAIRS_SHOWN],
            "pair_columns": ["a", "b", "cos", "corr", "above_null", "branch_a", "branch_b", "position_tied_a"],
            "on_site": on_site, "figure": f"cmp/{k}/compare.png", **(model or {})}  # fmt: skip


def build_compares(paths, analyses, out: Path, write_js, layers: dict[str, tuple[str, bool]] | None = None):
    """Write ``data/compare/<k>.js`` and ``cmp/<k>/compare.png``; return site facts and feature matches.

    ``layers``: layer -> (model identity, untrained?) of the site's analysis of it (see :func:`model_of`).
    """
    site_saes = {a.layer: ((a.summary.get("sae") or {}).get("path"), len(a.feature_ids)) for a in analyses}
    facts: list[dict] = []
    matches: dict = {}
    for k, path in enumerate(paths):
        doc, folder = read_compare(path)
        on_site = sides_on_site(doc, site_saes)
        for key, val in feature_matches(k, doc, on_site).items():
            matches.setdefault(key, []).extend(val)
        model = model_of(doc, layers or {})
        write_js(out / "data" / "compare" / f"{k}.js", f"compare/{k}", pair_page(k, doc, on_site, model))
        if (folder / "compare.png").is_file():
            (out / "cmp" / str(k)).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / "compare.png", out / "cmp" / str(k) / "compare.png")
        facts.append({"index": k, "a": doc["a"].get("layer"), "b": doc["b"].get("layer"),
                      "same_layer": bool(doc.get("same_layer")), **model})  # fmt: skip
    return facts, matches
