"""The WordNet 3.0 hierarchy above the model's 1,000 classes (package data, no download).

``wordnet.tsv`` (written by ``scripts/build_wordnet.py`` from Debian's ``wordnet-base``) holds every class synset
and every ancestor: wnid, name, lemmas, hypernyms (primary first). WordNet is a DAG: a synset may have two
hypernyms, and a node's classes are those below it by any path. Concepts for labelling are the classes and every
ancestor that covers at least two of them; each class also has one top-level category (animal, plant, artefact...)
for colouring and counting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import torch

from .labels import Labels, load_labels

PACKAGED_WORDNET = Path(__file__).with_name("wordnet.tsv")

#: Top-level categories, most specific first: a class takes the first whose subtree holds it. Chosen from the
#: tree's upper levels so that each is a node the papers name (animals / plants / objects...) and together they
#: cover every class; "other" takes what none covers.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("n00007846", "person"),
    ("n00015388", "animal"),
    ("n00017222", "plant"),
    ("n12992868", "fungus"),
    ("n00021265", "food"),
    ("n07555863", "food"),
    ("n09287968", "geological formation"),
    ("n00021939", "artifact"),
    ("n00019128", "natural object"),
)
OTHER = "other"
#: One colour per category, shared by the analysis's figures and the site's map and chips (static/labels.js).
CATEGORY_COLOURS = {"person": "#e7298a", "animal": "#d95f02", "plant": "#1b9e77", "fungus": "#a6761d",
                    "food": "#e6ab02", "geological formation": "#7570b3", "artifact": "#2764c4",
                    "natural object": "#66a61e", "other": "#555", "mixed": "#999"}  # fmt: skip
NO_LABEL_COLOUR = "#c8ccd1"


@dataclass(frozen=True)
class Node:
    wnid: str
    name: str
    lemmas: tuple[str, ...]
    parents: tuple[str, ...]


@dataclass
class Hierarchy:
    """Synsets above the classes, with the classes (model output indices) each one covers."""

    nodes: dict[str, Node]
    class_wnids: dict[int, str]  #: output index -> wnid, for the classes the labels name
    source: str = str(PACKAGED_WORDNET)
    _anc: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def ancestors(self, wnid: str) -> frozenset[str]:
        """Every synset above ``wnid`` by any path, and ``wnid`` itself."""
        if wnid not in self._anc:
            node = self.nodes.get(wnid)
            out = {wnid}
            for p in node.parents if node else ():
                out |= self.ancestors(p)
            self._anc[wnid] = frozenset(out)
        return self._anc[wnid]

    def chain(self, wnid: str) -> list[str]:
        """The primary hypernym chain, from ``wnid`` up to the root (first hypernym at each step)."""
        out = [wnid]
        while self.nodes.get(out[-1]) and self.nodes[out[-1]].parents:
            out.append(self.nodes[out[-1]].parents[0])
        return out

    def depth(self, wnid: str) -> int:
        """Length of the primary chain below the root (root: 0)."""
        return len(self.chain(wnid)) - 1

    @cached_property
    def covers(self) -> dict[str, list[int]]:
        """wnid -> sorted class indices below it (by any path), for every node above some class."""
        out: dict[str, list[int]] = {}
        for c, w in sorted(self.class_wnids.items()):
            for a in self.ancestors(w):
                out.setdefault(a, []).append(c)
        return out

    def name(self, wnid: str) -> str:
        node = self.nodes.get(wnid)
        return node.name if node else wnid

    def category(self, wnid: str) -> str:
        """Top-level category of a synset (see CATEGORIES)."""
        anc = self.ancestors(wnid)
        return next((name for w, name in CATEGORIES if w in anc), OTHER)

    def membership(self, concepts: list[str], n_classes: int) -> torch.Tensor:
        """(n_classes, len(concepts)) bool: class index c lies under concept j."""
        out = torch.zeros(n_classes, len(concepts), dtype=torch.bool)
        for j, w in enumerate(concepts):
            out[self.covers.get(w, []), j] = True
        return out


def parse_wordnet(path: str | Path) -> dict[str, Node]:
    nodes = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#") or line.startswith("wnid\t"):
            continue
        wnid, name, lemmas, hyper = [*line.split("\t"), "", "", ""][:4]
        nodes[wnid] = Node(wnid, name, tuple(lemmas.split("|")), tuple(h for h in hyper.split(",") if h))
    return nodes


@lru_cache(maxsize=4)
def _packaged(path: str) -> dict[str, Node]:
    return parse_wordnet(path)


def load_hierarchy(labels: Labels | None = None, path: str | Path | None = None) -> Hierarchy:
    """The hierarchy for ``labels``' classes (default: the packaged class names); classes without a wnid in the
    tree are left out (their concepts are the class alone)."""
    labels = labels if labels is not None else load_labels()
    nodes = _packaged(str(path or PACKAGED_WORDNET))
    classes = {i: w for i, w in enumerate(labels.wnids) if w and w in nodes}
    return Hierarchy(nodes, classes, str(path or PACKAGED_WORDNET))
