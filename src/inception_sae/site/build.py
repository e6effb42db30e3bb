"""``site build``: one function from analysis (+ featvis, circuits) folders to a static, offline site.

Layout of the site folder::

    index.html, static/*.js, static/app.css     the single page (hash routes, e.g. #/mixed4d/f/123)
    data/site.js                                 layers and build facts
    data/<layer>/index.js                        the layer table: one column per field, one row per feature
    data/<layer>/f/<id>.js, n/<id>.js            one file per feature / neuron, loaded on demand
    data/<layer>/classes.js                      class -> its top features
    data/concepts.js, data/concept/<wnid>.js     WordNet nodes with labelled features under them, across layers
    a/<layer>/figures/...                        the analysis's figures (hard links)
    a/<layer>/sheets/<f|n><id>.jpg              one sprite sheet per unit: the pictures its page shows
    a/<layer>/thumbs/<k>.jpg                     thumbnail sprite sheets (see ``pictures.py``)
    fv/<layer>/{f,n}/...                         feature visualisations (hard links)
    site.json                                    build report: counts, bytes, seconds

Data files are JavaScript (``SAE.receive(key, {...})``) rather than JSON because
browsers refuse ``fetch()`` from ``file://``; a ``<script>`` tag works from disk and over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from ..analysis.render import PACK, is_packed
from ..errors import UserError
from ..fsio import atomic_write_text
from .concepts import ConceptIndex, category_of
from .config import SiteConfig
from .folder import SiteFolder
from .inputs import Analysis, Circuits, read_analysis, read_circuits, read_featvis
from .pictures import Pictures, resolve, sheet_workers

GENERATED = ("index.html", "static", "data", "a", "fv", "cmp", "site.json")
IMAGE_KEYS = ("crop", "heatmap", "image_file")
#: static/ scripts, in load order
SCRIPTS = ("core.js", "charts.js", "labels.js", "layer.js", "feature.js", "live.js", "explain.js", "compare.js")


class BuildResult(NamedTuple):
    """What ``build_site`` wrote."""

    out: Path  #: site folder
    features: int  #: feature pages (all layers)
    files: int  #: files in the site
    bytes: int  #: their total size
    seconds: float  #: build time


def write_js(path: Path, key: str, obj) -> None:
    """``SAE.receive(key, obj);`` as a small script file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        body = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or inf somewhere: JSON cannot carry them, so they become null
        body = json.dumps(clean(obj), separators=(",", ":"), allow_nan=False)
    path.write_text(f"SAE.receive({json.dumps(key)},{body});\n", encoding="utf-8")


def link_tree(src: Path, dst: Path) -> int:
    """Hard-link every file under ``src`` into ``dst`` (copy across file systems); never re-encode."""
    n = 0
    for dirpath, _dirs, files in os.walk(src):
        target = dst / Path(dirpath).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            s, d = Path(dirpath) / name, target / name
            try:
                os.link(s, d)
            except OSError:
                shutil.copyfile(s, d)
            n += 1
    return n


def prepare_out(out: Path) -> None:
    """Create ``out``, or clear a previous site there; refuse a non-empty folder that is not a site."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out} is a file")
        if any(out.iterdir()) and not (out / "site.json").is_file():
            raise UserError(f"--out {out} is not empty and holds no previous site (site.json); choose a new folder")
        for name in GENERATED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def clean(x):
    """Replace NaN/inf (which JSON cannot carry) by None, recursively."""
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [clean(v) for v in x]
    return x


def rebase_examples(d: dict, prefix: str, pics: Pictures | None = None, unit: str = "") -> None:
    """Point every example's pictures (every-position and training-position ones) at what the site serves:
    their tiles in the unit's sheet (``unit``: ``f<id>`` / ``n<id>``), or the linked copy of single files."""
    examples = [ex for g in (d, d.get("training_examples")) if isinstance(g, dict)
                for key in ("top_examples", "intervals") for ex in g.get(key) or []]  # fmt: skip
    packed = [ex[k] for ex in examples for k in IMAGE_KEYS if is_packed(ex.get(k))]
    sprites = pics.sheet(unit, packed) if pics is not None and packed else {}
    for ex in examples:
        for k in IMAGE_KEYS:
            resolve(ex, k, prefix, sprites)


def thumb_of(d: dict, fv: list[str] | None, pics: Pictures | None = None, slot: int = 0, prefix: str = "") -> str:
    """A small picture for the unit: its visualisation, else its top example crop (a sprite tile when packed).

    Call before :func:`rebase_examples` (it reads the analysis's own references).
    """
    if fv and fv[0]:
        return "fv/" + fv[0]
    for ex in d.get("top_examples") or []:
        crop = ex.get("crop")
        if crop and is_packed(crop):
            return pics.tile(slot, crop) if pics is not None else ""
        if crop:
            one = {"crop": crop}
            resolve(one, "crop", prefix, {})
            return one["crop"] or ""
    return ""


def fmt_float(x, nd: int = 5):
    """``x`` to ``nd`` decimals for the site's data; a nonzero value too small for them keeps ``nd`` digits."""
    if x is None:
        return None
    r = round(float(x), nd)
    return r if r != 0 or x == 0 or x != x else float(f"{float(x):.{nd}g}")


def fmt_sig(x, digits: int = 3):
    """A p- or q-value to ``digits`` significant digits (1e-12 stays 1e-12, never rounds to 0), with more where
    fewer would round it across (or onto) a significance line (:func:`inception_sae.display.round_p`)."""
    from ..display import round_p

    return round_p(x, digits)


def table_row(cols: dict, d: dict, umap_xy) -> None:
    """Append one feature's summary fields to the layer table's columns."""
    dom = d.get("dominant_branch")
    pvals: dict[str | None, float] = d.get("branch_p") or {}
    sig = dom if dom in pvals else min(pvals, key=pvals.__getitem__, default=None)  # "none": the most significant
    cols["id"].append(int(d["id"]))
    cols["label"].append(str(d.get("label") or ""))
    cols["score"].append(fmt_float(d.get("label_score"), 4))
    cols["cat"].append(category_of(d))
    cols["freq"].append(fmt_float(d.get("frequency"), 7))
    cols["max"].append(fmt_float(d.get("max"), 4))
    cols["dom"].append(dom or "")
    cols["share"].append(fmt_float((d.get("branch_share") or {}).get(sig), 4))
    cols["p"].append(fmt_sig(pvals.get(sig)))
    cols["q"].append(fmt_sig((d.get("branch_q") or {}).get(sig)))
    xy = d.get("umap") or umap_xy
    cols["x"].append(fmt_float(xy[0], 4) if xy else None)
    cols["y"].append(fmt_float(xy[1], 4) if xy else None)


COLUMNS = ("id", "label", "score", "cat", "freq", "max", "dom", "share", "p", "q", "x", "y", "thumb")


def feature_extras(layer: str, kind: str, i: int, fv: dict, circ: Circuits) -> dict:
    node = f"{layer}/{kind}/{i}"
    files = fv.get((layer, kind, i))
    out: dict[str, Any] = {"layer": layer, "kind": "feature" if kind == "f" else "neuron", "node": node}
    out["featvis"] = ["fv/" + p if p else None for p in files] if files else []
    out["up"], out["down"] = circ.up.get(node, []), circ.down.get(node, [])
    return out


def build_features(
    a: Analysis,
    out: Path,
    fv: dict,
    circ: Circuits,
    tick: Callable[[], None],
    matches: dict | None = None,
    concepts: ConceptIndex | None = None,
    pics: Pictures | None = None,
) -> tuple[dict, dict]:
    """Write ``data/<layer>/f/<id>.js`` for every feature; return the table columns and neuron -> features."""
    layer = a.layer
    prefix = f"a/{layer}/"
    coords = (a.umap or {}).get("coords") or []
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    by_neuron: dict[int, list] = {}
    for i in a.feature_ids:
        d = a.feature(i)
        d.setdefault("id", i)
        if int(d["id"]) != i:
            raise UserError(f"{a.root}/features/{i}.json says id {d['id']}")
        table_row(cols, d, coords[i] if i < len(coords) else None)
        cols["thumb"].append(thumb_of(d, fv.get((layer, "f", i)), pics, i, prefix))
        rebase_examples(d, prefix, pics, f"f{i}")
        d.update(feature_extras(layer, "f", i, fv, circ))
        d["matches"] = (matches or {}).get((layer, i), [])  # best matches in compared SAEs / layers
        if concepts is not None:
            concepts.add(layer, "f", i, d, cols["thumb"][-1])
        n = (d.get("similar_neuron") or {}).get("neuron")
        if n is not None:
            by_neuron.setdefault(int(n), []).append([i, fmt_float((d["similar_neuron"]).get("cosine"), 4)])
        write_js(out / "data" / layer / "f" / f"{i}.js", f"{layer}/f/{i}", d)
        tick()
    return cols, by_neuron


def build_neurons(
    a: Analysis,
    out: Path,
    fv: dict,
    circ: Circuits,
    by_neuron: dict,
    concepts: ConceptIndex | None = None,
    pics: Pictures | None = None,
    first_slot: int = 0,
) -> dict:
    """Write ``data/<layer>/n/<id>.js``; return the neuron table."""
    layer = a.layer
    table: dict[str, list] = {"id": [], "label": [], "score": [], "cat": [], "branch": [], "freq": [], "thumb": []}
    ids = a.neuron_ids or sorted(by_neuron)
    for j in ids:
        d = a.neuron(j) or {"id": j, "note": "no neuron file in the analysis"}
        thumb = thumb_of(d, fv.get((layer, "n", j)), pics, first_slot + j, f"a/{layer}/")
        rebase_examples(d, f"a/{layer}/", pics, f"n{j}")
        d.update(feature_extras(layer, "n", j, fv, circ))
        d["similar_features"] = sorted(by_neuron.get(j, []), key=lambda t: -abs(t[1] or 0))[:50]
        for k, v in (("id", j), ("label", d.get("label") or ""), ("score", fmt_float(d.get("label_score"), 4)),
                     ("cat", category_of(d)), ("branch", d.get("branch") or ""),
                     ("freq", fmt_float(d.get("frequency"), 7))):  # fmt: skip
            table[k].append(v)
        table["thumb"].append(thumb)
        if concepts is not None:
            concepts.add(layer, "n", j, d, table["thumb"][-1])
        write_js(out / "data" / layer / "n" / f"{j}.js", f"{layer}/n/{j}", d)
    return table


def branch_null(branches: dict, kind: str = "pos") -> dict:
    """Branch -> [5%, median, 95%] of the typical features' ``kind`` share (the feature page's reference band)."""
    pos = (branches.get(kind) or {}).get("branches") or {}
    return {b: [v.get("null_q05"), v.get("null_median"), v.get("null_q95")] for b, v in pos.items()}


def layer_model(a: Analysis) -> tuple[str, bool]:
    """(model identity, untrained?) of an analysis: its summary's ``model``, else its SAE's recorded model."""
    s = a.summary
    model = s.get("model") or {}
    identity = model.get("identity") or (s.get("sae") or {}).get("model") or "unknown"
    return identity, bool(model.get("untrained_weights", str(identity).startswith("random:")))


def layer_index(a: Analysis, cols: dict, neurons: dict, fv: dict) -> dict:
    """Everything the layer page needs, in one file."""
    from ..analysis.embedding import BRANCH_COLOURS

    s = a.summary
    identity, untrained = layer_model(a)
    figures = sorted(f for f in (s.get("files") or []) if f.startswith("figures/") and f.endswith(".png"))
    if not figures and (a.root / "figures").is_dir():
        figures = sorted(f"figures/{p.name}" for p in (a.root / "figures").glob("*.png"))
    branch_names = list(branch_null(a.branches)) or sorted({b for b in cols["dom"] if b})
    return clean({
        "layer": a.layer, "identity": identity, "untrained": untrained, "headline": a.headline,
        "sae": s.get("sae") or {}, "images": s.get("images") or {}, "labels": s.get("labels") or {},
        "logit_effect": s.get("logit_effect"), "counts": s.get("counts") or {},
        "branches": branch_names, "null": branch_null(a.branches), "null_norm": branch_null(a.branches, "norm"),
        "branch_colours": BRANCH_COLOURS,
        "dominant_counts": a.branches.get("dominant_counts") or (s.get("counts") or {}).get("dominant_branch"),
        "branch_test": s.get("branch_test") or {},
        "figures": [f"a/{a.layer}/{f}" for f in figures if (a.root / f).is_file()],
        "cols": cols, "neurons": neurons, "classes": bool((a.classes or {}).get("classes")),
        "class_kind": (a.classes or {}).get("kind"),
        "featvis": sum(1 for k in fv if k[0] == a.layer and k[1] == "f"),
        "umap_method": (a.umap or {}).get("method"),
    })  # fmt: skip


def copy_assets(out: Path, analyses: list[Analysis], featvis: Path | None) -> int:
    """Templates' static files, the analyses' images and figures, the feature visualisations."""
    n = 0
    pkg = resources.files("inception_sae.site")
    (out / "static").mkdir(parents=True, exist_ok=True)
    for name in (*SCRIPTS, "app.css"):
        (out / "static" / name).write_bytes(pkg.joinpath("static").joinpath(name).read_bytes())
    for a in analyses:
        if (a.root / "figures").is_dir():
            n += link_tree(a.root / "figures", out / "a" / a.layer / "figures")
        images = a.root / "images"
        if images.is_dir() and not (a.root / PACK).is_file():  # single files (older analyses): linked as before
            n += link_tree(images, out / "a" / a.layer / "images")
    if featvis is not None:
        for layer_dir in Path(featvis).iterdir():
            if layer_dir.is_dir():
                n += link_tree(layer_dir, out / "fv" / layer_dir.name)
    return n


def render_index(out: Path, title: str) -> None:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("inception_sae.site", "templates"), autoescape=jinja2.select_autoescape()
    )
    html = env.get_template("index.html").render(title=title, scripts=SCRIPTS)
    atomic_write_text(out / "index.html", html)


def folder_size(out: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _d, names in os.walk(out):
        for name in names:
            files += 1
            size += os.stat(os.path.join(dirpath, name)).st_size
    return files, size


def build_site(cfg: SiteConfig, progress: Callable[[int, int], None] | None = None) -> BuildResult:
    """Build the static site of ``cfg`` (see the module docstring); ``progress(done, total)`` per feature."""
    t0 = time.perf_counter()
    analyses = [read_analysis(p) for p in cfg.analyses]
    layers = [a.layer for a in analyses]
    if len(set(layers)) != len(layers):
        raise UserError(f"two analysis folders describe the same layer: {layers}")
    fv, circ = read_featvis(cfg.featvis), read_circuits(cfg.circuits, cfg.top_neighbours)
    out = Path(cfg.out)
    prepare_out(out)
    SiteFolder.mark_building(out)  # marks the folder as ours if the build fails
    total, done = sum(len(a.feature_ids) for a in analyses), 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None and (done % 64 == 0 or done == total):
            progress(done, total)

    from .comparisons import build_compares

    identities = {a.layer: layer_model(a) for a in analyses}
    compares, matches = build_compares(cfg.compares, analyses, out, write_js, identities)
    layer_facts = []
    concepts = ConceptIndex()
    sheets = 0
    for a in analyses:
        pics = Pictures(a.root, out, a.layer, sheet_workers())
        try:
            cols, by_neuron = build_features(a, out, fv, circ, tick, matches, concepts, pics)
            first = max(a.feature_ids, default=-1) + 1  # neuron thumbnails follow the features' tiles
            neurons = build_neurons(a, out, fv, circ, by_neuron, concepts, pics, first)
        finally:
            sheets += pics.close()
        index = layer_index(a, cols, neurons, fv)
        write_js(out / "data" / a.layer / "index.js", f"{a.layer}/index", index)
        if index["classes"]:
            write_js(out / "data" / a.layer / "classes.js", f"{a.layer}/classes", clean(a.classes))
        layer_facts.append({"layer": a.layer, "features": len(a.feature_ids), "neurons": len(neurons["id"]),
                            "untrained": index["untrained"], "identity": index["identity"],
                            "classes": index["classes"]})  # fmt: skip
    n_concepts = concepts.write(out, write_js, layers)
    images = copy_assets(out, analyses, cfg.featvis) + sheets
    site = {"title": cfg.title, "layers": layer_facts, "circuit_edges": circ.n_edges,
            "featvis": len(fv), "built": time.strftime("%Y-%m-%d %H:%M:%S"), "compares": compares,
            "concepts": n_concepts}  # fmt: skip
    write_js(out / "data" / "site.js", "site", site)
    render_index(out, cfg.title)
    files, size = folder_size(out)
    seconds = time.perf_counter() - t0
    report = {**site, "files": files, "bytes": size, "seconds": round(seconds, 2), "linked_images": images}
    SiteFolder.write_report(out, report)  # the completion marker: written last
    return BuildResult(out, total, files, size, seconds)


def run(cfg: SiteConfig, *, on_progress: Callable[[int, int], None] | None = None) -> BuildResult:
    """The site stage (:func:`build_site`; it loads no network): ``on_progress(done, total)`` per feature."""
    return build_site(cfg, progress=on_progress)
