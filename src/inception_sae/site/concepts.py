"""Concept pages: the WordNet nodes that labelled features lie under, across every layer of the site.

The analysis labels a feature (or neuron) with a concept from the WordNet hierarchy above the classes and
records, in ``label_concept.under``, every node its label's terms lie under. A node's page lists every
labelled unit of every layer under it (all "dog" features, say), and those whose label names it as one of a set
of classes ("tabby + Egyptian cat" on the tabby page); the concept index lists every node with at least one.
Written as ``data/concepts.js`` (the index) and ``data/concept/<wnid>.js`` (one node's units).

Names, depths and categories of nodes come from the packaged WordNet hierarchy when the package has one;
otherwise from the label terms themselves (a node named by no term keeps its wnid as its name).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: A node id that may name a data file (WordNet ids are ``n`` + 8 digits; anything odd is left out).
SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def load_wordnet():
    """The packaged WordNet hierarchy, or None where this version of the package has none (or it fails)."""
    try:
        from ..data.wordnet import load_hierarchy

        return load_hierarchy()
    except Exception:  # an older package, missing class names: the site falls back on the label terms
        return None


def is_labelled(d: dict) -> bool:
    """A unit whose concept passed its test (the new-format ``label_concept.labelled``)."""
    lc = d.get("label_concept")
    return isinstance(lc, dict) and lc.get("labelled") is True


def category_of(d: dict) -> str:
    """The unit's label category for the layer table: "" when it has no label (or no concept labels at all)."""
    return str(d["label_concept"].get("category") or "") if is_labelled(d) else ""


def f1_of(lc: dict):
    """Held-out F1 of a concept label (``scores.f1.value``)."""
    f1 = ((lc.get("scores") or {}).get("f1") or {}).get("value")
    return None if f1 is None else round(float(f1), 4)


class ConceptIndex:
    """Collects labelled units while the layers are written; ``write`` emits the concept data files."""

    def __init__(self, loader: Callable[[], object] | None = None) -> None:
        self.loader = loader  #: the hierarchy's loader (default: the packaged WordNet), called only if needed
        self.h: Any = None  #: the loaded hierarchy (WordNet or the loader's), None until ``write``
        self.units: dict[str, list[dict]] = {}  #: wnid -> units under it
        self.names: dict[str, str] = {}  #: from label terms
        self.depths: dict[str, int] = {}
        self.categories: dict[str, set[str]] = {}  #: wnid -> categories of the units under it
        self.ancestors: dict[str, set[str]] = {}  #: wnid -> nodes above it (incl. itself), from single-term labels
        self.partial: dict[str, set[str]] = {}  #: wnid -> some nodes above it, from the labels that combine classes

    def add(self, layer: str, kind: str, i: int, d: dict, thumb: str = "") -> None:
        """Record unit ``layer/kind/i`` under every node of its label's ``under`` list (labelled units only)."""
        if not is_labelled(d):
            return
        lc = d["label_concept"]
        under = [w for w in dict.fromkeys(lc.get("under") or []) if isinstance(w, str) and SAFE_KEY.match(w)]
        terms = [t for t in lc.get("terms") or [] if isinstance(t, dict)]
        for t in terms:
            key = t.get("key")
            if isinstance(key, str) and key:
                if t.get("name"):
                    self.names.setdefault(key, str(t["name"]))
                if t.get("depth") is not None:
                    self.depths.setdefault(key, int(t["depth"]))
        keys = [t["key"] for t in terms if isinstance(t.get("key"), str) and SAFE_KEY.match(t["key"])]
        for k in keys:  # one term: `under` is exactly its ancestors; several: their common ones, a part of each's
            (self.ancestors if len(terms) == 1 else self.partial).setdefault(k, set(under) | {k})
        cat = str(lc.get("category") or "")
        unit = {"layer": layer, "kind": kind, "id": int(i), "label": str(d.get("label") or lc.get("text") or ""),
                "concept_kind": lc.get("kind"), "category": cat,
                "f1": f1_of(lc), "thumb": thumb}  # fmt: skip
        for w in dict.fromkeys([*under, *keys]):
            self.units.setdefault(w, []).append({**unit, "direct": w in keys})
            if cat:
                self.categories.setdefault(w, set()).add(cat)

    def node_facts(self, w: str) -> dict:
        """name, depth and category of node ``w`` (the hierarchy's where known, else the label terms')."""
        name, depth, cat = self.names.get(w, w), self.depths.get(w), None
        if self.h is not None:
            try:
                if self.h.name(w) != w:
                    name, depth, cat = self.h.name(w), int(self.h.depth(w)), self.h.category(w)
            except Exception:
                pass
        if cat is None:
            cats = self.categories.get(w) or set()
            cat = next(iter(cats)) if len(cats) == 1 else ("mixed" if cats else "")
        return {"wnid": w, "name": name, "depth": depth, "category": cat}

    def above(self, w: str) -> set[str]:
        """Nodes above ``w`` (itself included) as far as the site knows."""
        if self.h is not None:
            try:
                if self.h.name(w) != w:
                    return set(self.h.ancestors(w))
            except Exception:
                pass
        return self.ancestors.get(w) or self.partial.get(w) or {w}

    def write(self, out: Path, write_js: Callable[[Path, str, object], None], layers: list[str]) -> int:
        """Write the index and one file per node; return the number of nodes (0: nothing written)."""
        if not self.units:
            return 0
        self.h = (self.loader or load_wordnet)()
        order = {layer: j for j, layer in enumerate(layers)}
        facts = {w: self.node_facts(w) for w in self.units}
        above = {w: self.above(w) & set(self.units) for w in self.units}
        nodes = []
        for w, units in self.units.items():
            f = facts[w]
            per_layer: dict[str, int] = {}
            for u in units:
                if u["kind"] == "f":
                    per_layer[u["layer"]] = per_layer.get(u["layer"], 0) + 1
            nodes.append({**f, "features": sum(per_layer.values()), "neurons": sum(u["kind"] == "n" for u in units),
                          "layers": per_layer})  # fmt: skip
        # most features first; among equals, the broader node first (entity, physical entity, object...)
        nodes.sort(
            key=lambda n: (-n["features"], -n["neurons"], 99 if n["depth"] is None else n["depth"], n["name"].lower())
        )
        # a node's parents on the site: the nodes above it with no other node above it in between
        narrower: dict[str, list[str]] = {}
        for v, anc in above.items():
            up = anc - {v}
            for p in up:
                if not any(x != p and p in above[x] for x in up):
                    narrower.setdefault(p, []).append(v)
        for w, units in self.units.items():
            units.sort(key=lambda u: (u["kind"] != "f", order.get(u["layer"], 99), -(u["f1"] or 0), u["id"]))
            broader = sorted(above[w] - {w}, key=lambda v: -len(above[v]))
            below = [dict(facts[v], features=sum(u["kind"] == "f" for u in self.units[v])) for v in narrower.get(w, [])]
            below.sort(key=lambda n: (-n["features"], n["name"].lower()))
            doc = {**facts[w], "units": units, "broader": [facts[v] for v in broader], "narrower": below}
            write_js(out / "data" / "concept" / f"{w}.js", f"concept/{w}", doc)
        write_js(out / "data" / "concepts.js", "concepts", {"nodes": nodes, "layers": layers,
                                                           "wordnet": self.h is not None})  # fmt: skip
        return len(nodes)
