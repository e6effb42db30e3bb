"""Read the inputs of ``site build`` tolerantly: analysis folders, featvis folders, circuit graphs.

Only the required keys of docs/formats.md, "Analysis folder", are needed (``summary.json`` with ``layer``;
``features/<id>.json``); every other key is optional so the site can be built from partial or older outputs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.metrics import headline_metrics
from ..errors import UserError
from ..fsio import read_json

_DIV = re.compile(r"^(\d+)(?:_div(\d+))?\.png$")


def numbered_json(folder: Path) -> list[int]:
    """Sorted integer ids of ``<id>.json`` files in ``folder`` (empty if it is missing)."""
    if not folder.is_dir():
        return []
    return sorted(int(e.name[:-5]) for e in os.scandir(folder) if e.name.endswith(".json") and e.name[:-5].isdigit())


@dataclass
class Analysis:
    """One analysis folder (one layer): its summary, ids, and the optional side files."""

    root: Path  #: the folder
    summary: dict  #: summary.json
    layer: str  #: layer name, from summary.json
    feature_ids: list[int]  #: ids of features/<id>.json, sorted
    neuron_ids: list[int]  #: ids of neurons/<id>.json, sorted
    branches: dict  #: branches.json ({} when absent)
    umap: dict  #: umap.json ({} when absent)
    classes: dict  #: classes.json ({} when absent)
    headline: dict = field(default_factory=dict)  #: FVU, L0, dead, splice-back: summary.json's ``metrics``

    def feature(self, i: int) -> dict:
        return read_json(self.root / "features" / f"{i}.json", {})

    def neuron(self, i: int) -> dict:
        return read_json(self.root / "neurons" / f"{i}.json", {})


def read_analysis(root: Path) -> Analysis:
    """Open an analysis folder written by ``inception-sae analyze`` (or by hand: docs/formats.md, "Analysis folder").

    The headline numbers are summary.json's ``metrics`` (written by ``analyze``, with the
    evaluation report's held-out FVU and splice-back agreement when it was given one); a summary
    without them (written by hand or by an older version) gets the counts it has.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"analysis folder {root} does not exist")
    summary = read_json(root / "summary.json", None)
    if summary is None:
        raise UserError(f"{root} is not an analysis folder: summary.json is missing")
    layer = summary.get("layer")
    if not isinstance(layer, str) or not re.fullmatch(r"[A-Za-z0-9_]+", layer):
        raise UserError(f"{root}/summary.json names no valid 'layer' (got {layer!r})")
    ids = numbered_json(root / "features")
    if not ids:
        raise UserError(f"{root}/features holds no <id>.json files")
    a = Analysis(root, summary, layer, ids, numbered_json(root / "neurons"), read_json(root / "branches.json", {}),
                 read_json(root / "umap.json", {}), read_json(root / "classes.json", {}))  # fmt: skip
    a.headline = summary.get("metrics") or headline_metrics(summary, {}, {})
    return a


def read_featvis(root: Path | None) -> dict[tuple[str, str, int], list[str]]:
    """(layer, 'f'|'n', id) -> [main png, diverse pngs...] relative to ``root`` (main may be '')."""
    out: dict[tuple[str, str, int], list[str]] = {}
    if root is None:
        return out
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"featvis folder {root} does not exist")
    for layer_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for kind in ("f", "n"):
            d = layer_dir / kind
            if not d.is_dir():
                continue
            for e in os.scandir(d):
                m = _DIV.match(e.name)
                if not m:
                    continue
                key = (layer_dir.name, kind, int(m.group(1)))
                files = out.setdefault(key, [""])
                rel = f"{layer_dir.name}/{kind}/{e.name}"
                if m.group(2) is None:
                    files[0] = rel
                else:
                    files.append(rel)
    for files in out.values():
        files[1:] = sorted(files[1:], key=lambda s: int(s.rsplit("_div", 1)[1][:-4]))
    return out


@dataclass
class Circuits:
    """Top upstream and downstream neighbours per node id (e.g. ``mixed4c/f/12``)."""

    up: dict[str, list[dict]] = field(default_factory=dict)  #: node -> [{id, weight, kind}], by |weight|
    down: dict[str, list[dict]] = field(default_factory=dict)
    n_edges: int = 0


def _add(c: Circuits, source: str, target: str, weight: float, kind: str) -> None:
    c.down.setdefault(source, []).append({"id": target, "weight": weight, "kind": kind})
    c.up.setdefault(target, []).append({"id": source, "weight": weight, "kind": kind})
    c.n_edges += 1


def _read_neighbours(c: Circuits, path: Path) -> None:
    """``neighbours.json`` of ``inception-sae circuits``: node -> {"upstream"|"downstream": [{id, weight}]}."""
    nb = read_json(path, {})
    kind = nb.get("kind", "")
    for node, lists in (nb.get("features") or {}).items():
        for n in lists.get("upstream", []):
            _add(c, str(n["id"]), node, float(n.get("weight", 0.0)), kind)
        for n in lists.get("downstream", []):
            _add(c, node, str(n["id"]), float(n.get("weight", 0.0)), kind)


def _read_graph(c: Circuits, path: Path) -> None:
    graph = read_json(path, None)
    if graph is None:
        raise UserError(f"no circuit graph at {path}")
    for e in graph.get("edges", []):
        try:
            _add(c, str(e["source"]), str(e["target"]), float(e.get("weight", 0.0)), str(e.get("kind", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{path}: malformed edge {e!r}") from err


def read_circuits(roots, top: int = 10) -> Circuits:
    """Neighbours per node from circuit folders (``neighbours.json`` and/or ``graph.json``) or graph files.

    Every kind of edge is kept (weight, weight_1x1, attribution, ablation, recipe); an edge seen twice
    (same neighbour and kind) counts once; each list is cut to the ``top`` largest |weight|.
    """
    c = Circuits()
    for root in [roots] if isinstance(roots, (str, Path)) else list(roots or ()):
        path = Path(root)
        if path.is_dir():
            if not (path / "neighbours.json").is_file() and not (path / "graph.json").is_file():
                raise UserError(f"{path} holds neither graph.json nor neighbours.json")
            if (path / "neighbours.json").is_file():
                _read_neighbours(c, path / "neighbours.json")
            if (path / "graph.json").is_file():
                _read_graph(c, path / "graph.json")
        else:
            _read_graph(c, path)
    for table in (c.up, c.down):
        for k, lst in table.items():
            seen, uniq = set(), []
            for d in sorted(lst, key=lambda d: -abs(d["weight"])):
                if (d["id"], d["kind"]) not in seen:
                    seen.add((d["id"], d["kind"]))
                    uniq.append(d)
            table[k] = uniq[:top]
    return c
