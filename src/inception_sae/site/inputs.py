"""Read the inputs of ``site build`` tolerantly: analysis folders, featvis folders, circuit graphs.

Analysis folders are read by :class:`~inception_sae.analysis.folder.Analysis`; every key beyond the required
ones of docs/formats.md is optional so the site can be built from partial or older outputs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.folder import Analysis
from ..errors import UserError
from ..fsio import read_json

_DIV = re.compile(r"^(\d+)(?:_div(\d+))?\.png$")


def read_analysis(root: Path) -> Analysis:
    """Open an analysis folder (:meth:`.Analysis.read`)."""
    return Analysis.read(root)


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
