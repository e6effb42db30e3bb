"""Fake analysis / featvis / circuits folders in the formats of the other stages, for site tests.

``make_analysis`` mirrors ``inception-sae analyze``'s output (summary.json, features/<id>.json with the
required keys (docs/formats.md) plus the analysis stage's extras, neurons/, branches.json, umap.json, classes.json,
figures/, images/crops + images/heat). Heatmaps are hard links of a small pool of JPEGs so that
an 8,448-feature folder has realistic file counts but is quick to write.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

BRANCHES = ("1x1", "3x3", "5x5", "pool")
WORDS = ("dog", "cat", "car", "tree", "water", "sky", "text", "fur", "wheel", "grass", "eye", "stripe")


def tiny_jpeg(path: Path, rng, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=70)


def tiny_png(path: Path, rng, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")))


def example(rng, img: int, value: float, files: dict | None) -> dict:
    y, x = int(rng.integers(0, 14)), int(rng.integers(0, 14))
    d = {"image": f"n0144{img:04d}/img{img}.JPEG", "y": y, "x": x, "value": value, "image_index": img,
         "rf_box": [0, 0, 100, 100]}  # fmt: skip
    if files:
        d.update(files)
    return d


def feature_doc(rng, layer: str, f: int, n_neurons: int, pool: int, render: int = 5) -> dict:
    """One feature JSON with the required keys (docs/formats.md) and the analysis stage's extras."""
    shares = rng.dirichlet(np.ones(len(BRANCHES)))
    dom = BRANCHES[int(shares.argmax())] if shares.max() > 0.45 else "none"  # "none": no branch at q <= 0.01
    vmax = float(rng.uniform(1, 20))
    tops = sorted(rng.uniform(0.3, 1, 20) * vmax, reverse=True)
    top = []
    for j, v in enumerate(tops):
        img = int(rng.integers(0, 200))
        crop = f"images/crops/c{img % pool}.jpg"
        files = {"crop": crop, "heatmap": f"images/heat/f{f}_{j}.jpg"} if j < render else None
        top.append(example(rng, img, float(v), files))
    intervals, ranges = [], []
    for k in range(10):
        lo, hi = vmax * k / 10, vmax * (k + 1) / 10
        ranges.append({"lo": lo, "hi": hi, "count": int(rng.integers(1, 500)), "share": 0.1})
        for j in range(5):
            img = int(rng.integers(0, 200))
            crop = f"images/crops/c{img % pool}.jpg"
            files = {"crop": crop, "heatmap": f"images/heat/f{f}_i{k}.jpg"} if j == 0 else None
            ex = example(rng, img, float(rng.uniform(lo, hi)), files)
            intervals.append({**ex, "interval": k, "lo": lo, "hi": hi})
    word = WORDS[f % len(WORDS)]
    weights = sorted(rng.random(10), reverse=True)
    classes = [
        {"index": int(c), "name": f"class {c} {WORDS[c % 12]}", "weight": float(w)}
        for c, w in zip(rng.integers(1, 1001, 10), weights, strict=True)
    ]
    freq = float(rng.uniform(1e-4, 0.05))
    return {
        "id": f, "layer": layer, "kind": "feature", "frequency": freq, "frequency_image": min(1.0, freq * 30),
        "max": vmax, "mean": freq * vmax / 3, "dead": False, "dense": False,
        "histogram": {"log10_lo": -4, "log10_hi": 4, "bins": 32, "counts": rng.integers(0, 1000, 32).tolist()},
        "branch_share": dict(zip(BRANCHES, shares.tolist(), strict=True)),
        "branch_share_norm": dict(zip(BRANCHES, shares.tolist(), strict=True)),
        "branch_share_sq": dict(zip(BRANCHES, (shares**2 / (shares**2).sum()).tolist(), strict=True)),
        "branch_z": {b: float(rng.normal()) for b in BRANCHES},
        "branch_p": (pv := {b: float(rng.uniform(1e-4, 1)) for b in BRANCHES}),
        "branch_q": {b: min(1.0, 4 * v) for b, v in pv.items()},
        "dominant_branch": dom,
        "similar_neuron": {"neuron": int(rng.integers(0, n_neurons)), "cosine": float(rng.uniform(0.1, 0.9))},
        "top_examples": top, "intervals": intervals, "interval_ranges": ranges,
        "label": f"{word} (class {f % 37})", "label_score": float(rng.uniform(0.5, 1)),
        "label_classes": [{"index": 3, "name": f"{word}s", "count": 12, "share": 0.6, "enrichment": 30.0,
                           "class_images": 20, "p": 1e-12 if f % 2 == 0 else 0.01, "q": 3e-9 if f % 2 == 0 else 0.4},
                          {"index": 9, "name": "other", "count": 2, "share": 0.1, "enrichment": 5.0,
                           "class_images": 20, "p": 0.06, "q": 1.0}],
        "label_significant": f % 2 == 0,
        "top_classes": classes, "bottom_classes": [{**c, "weight": -c["weight"]} for c in classes],
        "umap": rng.normal(size=2).tolist(),
    }  # fmt: skip


#: The fixture feature that never fires at a trained position (its training_examples are empty).
NEVER_TRAINED = 13


def add_training_examples(d: dict, pool: int, render: int = 5) -> None:
    """``training_examples`` (the analysis's format) and ``at_training_position`` flags, from the feature's own seed.

    Every-position examples are flagged at random (4 in 10); the training-position family has its own, smaller
    max. Feature ``NEVER_TRAINED`` fires at no trained position: no examples, counts 0.
    """
    f = int(d["id"])
    rng = np.random.default_rng([7, f])  # not the layer's stream: the other fields stay as they were
    for ex in d["top_examples"] + d["intervals"]:
        ex["at_training_position"] = bool(rng.random() < 0.4) and f != NEVER_TRAINED
    positions = "per image, the feature's max over the positions the harvest rule selects (top-norm, 10 positions "
    positions += "per image; 0 if it fires at none); intervals: equal-width of [0, its max on those positions]"
    if f == NEVER_TRAINED:
        d["training_examples"] = {"top_examples": [], "intervals": [], "positions": positions,
                                  "interval_ranges": [{"lo": 0.0, "hi": 0.0, "count": 0, "share": 0.0}] * 10,
                                  "counts": {"images": 0, "per_interval": [0] * 10}}  # fmt: skip
        d["training_positions_note"] = "this feature never fires at a training position"
        return
    vmax = d["max"] * float(rng.uniform(0.3, 1))

    def files(img: int, heat: str) -> dict:
        return {"crop": f"images/crops/c{img % pool}.jpg", "heatmap": f"images/heat/f{f}_{heat}.jpg"}

    top = []
    for j, v in enumerate(sorted(rng.uniform(0.3, 1, 20) * vmax, reverse=True)):
        img = int(rng.integers(0, 200))
        top.append(example(rng, img, float(v), files(img, f"t{j}") if j < render else None))
    intervals, ranges, counts = [], [], rng.integers(1, 300, 10).tolist()
    for k in range(10):
        lo, hi = vmax * k / 10, vmax * (k + 1) / 10
        ranges.append({"lo": lo, "hi": hi, "count": counts[k], "share": counts[k] / sum(counts)})
        for j in range(5):
            img = int(rng.integers(0, 200))
            ex = example(rng, img, float(rng.uniform(lo, hi)), files(img, f"ti{k}") if j == 0 else None)
            intervals.append({**ex, "interval": k, "lo": lo, "hi": hi})
    counts_d = {"images": sum(counts), "per_interval": counts}
    d["training_examples"] = {"top_examples": top, "intervals": intervals, "interval_ranges": ranges,
                              "positions": positions, "counts": counts_d}  # fmt: skip
    d["training_positions_note"] = "training_examples: on the positions the SAE was trained on"


#: A piece of the WordNet tree above the classes (wnid, name, primary hypernym), for the fixture's concept labels.
TREE = {
    "n00001740": ("entity", None), "n00001930": ("physical entity", "n00001740"),
    "n00002684": ("object", "n00001930"), "n00003553": ("whole", "n00002684"),
    "n00004258": ("living thing", "n00003553"), "n00004475": ("organism", "n00004258"),
    "n00015388": ("animal", "n00004475"), "n01466257": ("chordate", "n00015388"),
    "n01471682": ("vertebrate", "n01466257"), "n01861778": ("mammal", "n01471682"),
    "n01886756": ("placental", "n01861778"), "n02075296": ("carnivore", "n01886756"),
    "n02083346": ("canine", "n02075296"), "n02084071": ("dog", "n02083346"),
    "n02120997": ("feline", "n02075296"), "n02121620": ("cat", "n02120997"),
    "n02121808": ("domestic cat", "n02121620"), "n02123045": ("tabby", "n02121808"),
    "n02124075": ("Egyptian cat", "n02121808"), "n00021939": ("artifact", "n00003553"),
    "n04574999": ("wheel", "n00021939"), "n02974003": ("car wheel", "n04574999"),
}  # fmt: skip
DOG, TABBY, EGYPTIAN, CAR_WHEEL, ANIMAL = "n02084071", "n02123045", "n02124075", "n02974003", "n00015388"


def chain(wnid: str) -> list[str]:
    """wnid and every node above it, up to entity."""
    out = [wnid]
    while TREE[out[-1]][1]:
        out.append(TREE[out[-1]][1])
    return out


class FixtureHierarchy:
    """The part of the WordNet hierarchy's interface the site reads (name, depth, category, ancestors), on ``TREE``."""

    def name(self, wnid: str) -> str:
        return TREE[wnid][0] if wnid in TREE else wnid

    def depth(self, wnid: str) -> int:
        return len(chain(wnid)) - 1

    def ancestors(self, wnid: str) -> frozenset[str]:
        return frozenset(chain(wnid)) if wnid in TREE else frozenset({wnid})

    def category(self, wnid: str) -> str:
        anc = self.ancestors(wnid)
        return "animal" if ANIMAL in anc else "artifact" if "n00021939" in anc else "other"


def concept_kind(i: int) -> str | None:
    """Which concept label unit ``i`` gets: most get none ("no label", their best candidate failing its test)."""
    return {0: "dog", 5: "dog", 1: "classes", 3: "class"}.get(i % 10) if i % 10 != 9 else "null"


def term(wnid: str, kind: str, classes: int) -> dict:
    return {"key": wnid, "name": TREE[wnid][0], "kind": kind, "classes": classes, "depth": len(chain(wnid)) - 1}


def score(value: float, baseline: float, p: float, q: float | None = None) -> dict:
    return {"value": value, "baseline": baseline, "p": p, **({} if q is None else {"q": q})}


def add_concept_label(d: dict, i: int) -> None:
    """The analysis's concept label keys (``label``, ``label_score``, ``label_concept``) for unit ``i``."""
    kind = concept_kind(i)
    if kind == "null":  # nothing to test (e.g. it fires on too few images)
        d.update(label="", label_score=None, label_concept=None)
        return
    where = colour = None
    if kind == "dog":
        terms, under, text, cat, ck = [term(DOG, "ancestor", 118)], chain(DOG), "dog", "animal", "ancestor"
        where = {"text": "left", "labelled": i % 10 == 0, "f1": 0.6, "baseline": 0.33, "p": 1e-6 if i % 10 == 0
                 else 0.2, "q": 1e-5 if i % 10 == 0 else 0.5, "units": 4500}  # fmt: skip
    elif kind == "classes":
        terms = [term(TABBY, "class", 1), term(EGYPTIAN, "class", 1)]
        under, text, cat, ck = chain("n02121808"), "tabby + Egyptian cat", "animal", "classes"
        colour = {"text": "brown", "labelled": True, "f1": 0.5, "baseline": 0.2, "p": 1e-4, "q": 1e-3, "units": 4500}
    else:  # class, or the best candidate of an unlabelled unit
        terms, under, text, cat, ck = [term(CAR_WHEEL, "class", 1)], chain(CAR_WHEEL), "car wheel", "artifact", "class"
    labelled = kind is not None
    f1 = 0.9 - 0.01 * (i % 7) if labelled else 0.12
    p = 3.1e-12 if labelled else 0.3
    n = [40 - 3 * k for k in range(10)]  # held-out examples per tenth of the max; labelled: more in it higher up
    inside = [round(n[k] * (0.05 + 0.1 * k)) if labelled else 1 for k in range(10)]
    spectrum = [{"lo": k / 10, "hi": (k + 1) / 10, "images": n[k], "in_concept": inside[k]} for k in range(10)]
    lc = {
        "text": text, "kind": ck, "category": cat, "depth": terms[0]["depth"], "terms": terms, "under": under,
        "labelled": labelled, "fires": "per-image max >= 0.25 x the feature's max", "level": 0.05,
        "scores": {"f1": score(f1, 0.1, p, 1e-10 if labelled else 0.9), "iou": score(0.8, 0.05, 1e-20),
                   "auprc": score(0.85, 0.12, 0.001), "pearson": score(0.7, 0.0, 0.0),
                   "auroc": {"value": 0.95, "note": "secondary: AUROC fails NeuronEval's sanity tests"}},
        "images": {"choice": 500, "score": 500, "in_concept": 59, "firing": 60, "both": 55},
        "choice_f1": 0.85, "spectrum": spectrum,
        "runner_up": [{"text": "terrier", "kind": "ancestor", "category": "animal", "f1": 0.5, "baseline": 0.05,
                       "p": 1e-5}],
        "where": where, "colour": colour,
        "extent": {"share": 0.12, "images": 60, "layer_median": 0.2} if labelled else None,
    }  # fmt: skip
    parts = [text] + [q["text"] for q in (where, colour) if q and q["labelled"]]
    d.update(label=" · ".join(parts) if labelled else "", label_score=f1 if labelled else None, label_concept=lc)


def concepts_summary(docs: list[dict]) -> dict:
    """summary.json's ``labels.concepts`` for the units ``docs``, counted as the analysis counts them."""
    out = {"method": "WordNet concept chosen on one half of the images, scored on the other (fixture)",
           "labelled": 0, "scored": len(docs), "level": 0.05, "by_category": {}, "category_by_branch": {},
           "by_kind": {}, "where": {}, "colour": {},
           "split": {"choice": 500, "score": 500, "how": "images split in two halves by index parity"}}  # fmt: skip
    for d in docs:
        lc = d.get("label_concept")
        if not (lc and lc["labelled"]):
            continue
        out["labelled"] += 1
        cat = lc["category"]
        out["by_category"][cat] = out["by_category"].get(cat, 0) + 1
        by_branch = out["category_by_branch"].setdefault(cat, {})
        by_branch[d["dominant_branch"]] = by_branch.get(d["dominant_branch"], 0) + 1
        out["by_kind"][lc["kind"]] = out["by_kind"].get(lc["kind"], 0) + 1
        for q in ("where", "colour"):
            if lc[q] and lc[q]["labelled"]:
                out[q][lc[q]["text"]] = out[q].get(lc[q]["text"], 0) + 1
    return out


def all_examples(d: dict) -> list[dict]:
    """Every example of a feature or neuron document, both distributions."""
    t = d.get("training_examples") or {}
    return d["top_examples"] + d["intervals"] + t.get("top_examples", []) + t.get("intervals", [])


def neuron_doc(rng, layer: str, j: int, pool: int) -> dict:
    d = feature_doc(rng, layer, j, 1, pool, render=3)
    for ex in d["top_examples"] + d["intervals"]:
        if ex.get("heatmap"):
            ex["heatmap"] = ex["heatmap"].replace("/f", "/n", 1)
    d.update(kind="neuron", branch=BRANCHES[j % 4])
    for k in ("similar_neuron", "dominant_branch", "top_classes", "bottom_classes", "umap"):
        d.pop(k)
    return d


def make_analysis(root: Path, layer: str = "mixed4d", n_features: int = 50, n_neurons: int = 16, seed: int = 0,
                  untrained: bool = True, pool: int = 12, training: bool = False,
                  concepts: bool = False, packed: bool = False) -> Path:  # fmt: skip
    """Write a fake analysis folder of ``n_features`` features; return ``root``.

    ``training``: the features have examples on the trained positions too (an SAE whose harvest rule is known).
    ``concepts``: features and neurons carry WordNet concept labels (see ``concept_kind``), summary.json their
    counts; without it, the folder is one written before concept labels.
    ``packed``: the pictures are in ``images/examples.pack`` as ``analyze`` writes them (:func:`pack_pictures`);
    without it, one file per picture, as analyses written before the pack.
    """
    rng = np.random.default_rng(seed)
    for i in range(pool):
        tiny_jpeg(root / "images" / "crops" / f"c{i}.jpg", rng)
    heat = root / "images" / "heat"
    heat.mkdir(parents=True, exist_ok=True)
    src = root / "images" / "crops" / "c0.jpg"
    docs = []
    for f in range(n_features):
        d = feature_doc(rng, layer, f, n_neurons, pool)
        if training:
            add_training_examples(d, pool)
        if concepts:
            add_concept_label(d, f)
            docs.append(d)
        dump(root / "features" / f"{f}.json", d)
        for ex in all_examples(d):
            if ex.get("heatmap") and not (root / ex["heatmap"]).exists():
                os.link(root / "images" / "crops" / f"c{f % pool}.jpg", root / ex["heatmap"])
    for j in range(n_neurons):
        d = neuron_doc(rng, layer, j, pool)
        if concepts:
            add_concept_label(d, j)
        dump(root / "neurons" / f"{j}.json", d)
        for ex in d["top_examples"] + d["intervals"]:
            if ex.get("heatmap") and not (root / ex["heatmap"]).exists():
                os.link(src, root / ex["heatmap"])
    write_side_files(root, layer, n_features, rng, untrained)
    if concepts:
        summary = json.loads((root / "summary.json").read_text())
        summary["labels"] = {"kind": "WordNet concepts (fixture)", "concepts": concepts_summary(docs)}
        dump(root / "summary.json", summary)
    if packed:
        pack_pictures(root)
    return root


def pack_pictures(root: Path) -> None:
    """Move every picture a feature or neuron document names into ``images/examples.pack`` (the analysis stage's
    layout: one file, documents hold ``<pack>#<offset>+<length>`` references); the picture folders go."""
    from inception_sae.analysis.render import PACK, PackWriter

    refs: dict[str, str] = {}
    with open(root / PACK, "wb") as f:
        writer = PackWriter(f)
        for doc_path in sorted([*(root / "features").glob("*.json"), *(root / "neurons").glob("*.json")]):
            d = json.loads(doc_path.read_text())
            for ex in all_examples(d):
                for key in ("crop", "heatmap"):
                    if ex.get(key):
                        if ex[key] not in refs:
                            refs[ex[key]] = writer.add_bytes((root / ex[key]).read_bytes())
                        ex[key] = refs[ex[key]]
            dump(doc_path, d)
    for folder in ("crops", "heat"):
        shutil.rmtree(root / "images" / folder)


def write_side_files(root: Path, layer: str, n: int, rng, untrained: bool) -> None:
    figs = ["figures/branch_shares_pos.png", "figures/umap_dominant_branch.png"]
    for f in figs:
        tiny_png(root / f, rng, 64)
    null = {b: {"sorted_shares": [], "null_q05": 0.1, "null_median": 0.2, "null_q95": 0.35} for b in BRANCHES}
    dump(root / "branches.json", {"pos": {"kind": "pos", "branches": null},
                                  "dominant_counts": {b: n // 4 for b in BRANCHES}})  # fmt: skip
    dump(root / "umap.json", {"coords": rng.normal(size=(n, 2)).tolist(), "method": "fixture"})
    classes = [{"index": c, "name": f"class {c} {WORDS[c % 12]}",
                "features": [{"id": int(i), "weight": float(w)} for i, w in zip(rng.integers(0, n, 5), rng.random(5),
                                                                                 strict=True)]}
               for c in range(1, 1001)]  # fmt: skip
    dump(root / "classes.json", {"kind": "exact (W_fc · d, mixed5b)", "classes": classes})
    identity = "random:0" if untrained else "inception5h.pth:sha256:abc"
    summary = {"layer": layer, "sae": {"path": "/nonexistent", "d_in": 528, "d_sae": n, "k": 32, "model": identity},
               "model": {"identity": identity, "untrained_weights": untrained, "matches_sae": True},
               "images": {"analysed": 200, "positions": 39200},
               "counts": {"features": n, "neurons": 16, "dead": 1, "dense": 0,
                          "specialised_fdr_1pct": {b: 0 for b in BRANCHES}},
               "branch_test": {"null": "empirical null (fixture)", "units": "channel RMS (fixture)",
                               "fdr_1pct_status": "0 features x branches at q <= 0.01 (positive-part share), "
                                                  "3 (norm share)"},
               "metrics": {"fvu": 0.123, "l0": 31.5, "splice_top1": 0.87},
               "files": ["summary.json", *figs]}  # fmt: skip
    dump(root / "summary.json", summary)


def make_featvis(root: Path, layer: str, ids, diversity: int = 2, neurons=(), seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    for i in ids:
        tiny_png(root / layer / "f" / f"{i}.png", rng)
        for j in range(diversity):
            tiny_png(root / layer / "f" / f"{i}_div{j}.png", rng)
    for j in neurons:
        tiny_png(root / layer / "n" / f"{j}.png", rng)
    dump(root / "featvis.json", {"format": 1, "model": "random:0", "layers": {}})
    return root


def make_graph(path: Path, lower: str, upper: str, n_lower: int, n_upper: int, seed: int = 2) -> Path:
    """A graph.json with edges lower -> upper for every upper feature, and a few to classes."""
    rng = np.random.default_rng(seed)
    nodes = [{"id": f"{lower}/f/{i}", "layer": lower, "feature": i} for i in range(n_lower)]
    nodes += [{"id": f"{upper}/f/{i}", "layer": upper, "feature": i} for i in range(n_upper)]
    edges = []
    for t in range(n_upper):
        for s in rng.choice(n_lower, 3, replace=False):
            edges.append({"source": f"{lower}/f/{int(s)}", "target": f"{upper}/f/{t}",
                          "weight": float(rng.normal()), "kind": "expanded"})  # fmt: skip
        edges.append({"source": f"{upper}/f/{t}", "target": f"class/{t + 1}", "weight": 0.5, "kind": "attribution"})
    dump(path / "graph.json", {"nodes": nodes, "edges": edges})
    return path


def small_site_inputs(root: Path, lower: str = "mixed4c", n_lower: int = 30) -> dict:
    """Two layers (``lower``: ``n_lower`` features, mixed4d: 50), featvis for even mixed4d ids, a graph between them.

    mixed4d's SAE has a known harvest rule (training-position examples), the lower layer's has not. Both carry
    concept labels (``concept_kind``).
    """
    a_lo = make_analysis(root / "lower", lower, n_lower, seed=3, concepts=True)
    a4d = make_analysis(root / "a4d", "mixed4d", 50, seed=4, training=True, concepts=True)
    fv = make_featvis(root / "fv", "mixed4d", range(0, 50, 2), neurons=range(8))
    circ = make_graph(root / "circ", lower, "mixed4d", n_lower, 50)
    return {"analyses": (a_lo, a4d), "featvis": fv, "circuits": circ}


def read_js(path: Path) -> tuple[str, dict]:
    """Parse a data script ``SAE.receive("key",{...});`` back into (key, data)."""
    text = path.read_text()
    assert text.startswith("SAE.receive(") and text.rstrip().endswith(");")
    key, _, body = text[len("SAE.receive(") : text.rstrip().rindex(")")].partition(",")
    return json.loads(key), json.loads(body)
