"""Read the inputs of ``site build`` tolerantly: analysis folders, featvis folders, circuit graphs.

Only the contract's keys are required (``summary.json`` with ``layer``; ``features/<id>.json``);
every other key is optional so the site can be built from partial or older outputs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

_DIV = re.compile(r"^(\d+)(?:_div(\d+))?\.png$")


def read_json(path: Path, default=None):
    """Parse a JSON file; ``default`` when it is absent; a one-line UserError when it is broken."""
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON: {e}") from e


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
    headline: dict = field(default_factory=dict)  #: FVU, L0, dead, splice-back (see :func:`headline_metrics`)

    def feature(self, i: int) -> dict:
        return read_json(self.root / "features" / f"{i}.json", {})

    def neuron(self, i: int) -> dict:
        return read_json(self.root / "neurons" / f"{i}.json", {})


def read_analysis(root: Path, sae: Path | None = None, eval_report: Path | None = None) -> Analysis:
    """Open an analysis folder written by ``inception-sae analyze`` (or by hand, with the contract's keys)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"analysis folder {root} does not exist")
    summary = read_json(root / "summary.json")
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
    a.headline = headline_metrics(summary, sae, eval_report)
    return a


def _first(*values):
    return next((v for v in values if v is not None), None)


def _same_layer(sae_dir: Path, layer: str | None) -> bool:
    """False only when ``sae_dir``'s cfg.json names a layer other than ``layer``."""
    cfg = read_json(sae_dir / "cfg.json", {}) if sae_dir.is_dir() else {}
    return cfg.get("layer") in (None, layer)


def headline_metrics(summary: dict, sae: Path | None, eval_report: Path | None) -> dict:
    """FVU, L0, dead fraction and splice-back agreement from whatever records them, on the training distribution.

    Sources, first found wins: ``summary["metrics"]``, the evaluation report
    (``inception-sae eval --report``: ``store`` rows, then splice-back on the
    harvest rule's positions, then at every position), the SAE's ``cfg.json``
    (``training``), the analysis counts (dead and dense features on the training
    positions, else on every position). ``*_on`` says what each number is computed on.
    """
    given = dict(summary.get("metrics") or {})
    layer = summary.get("layer")
    ev = read_json(Path(eval_report), {}) if eval_report else {}
    if ev.get("sae") and not _same_layer(Path(ev["sae"]), layer):
        ev = {}  # a report about another layer's SAE (several --analysis folders, one --eval)
    sae_dir = Path(sae) if sae and _same_layer(Path(sae), layer) else None
    if sae_dir is None and (summary.get("sae") or {}).get("path"):
        sae_dir = Path(summary["sae"]["path"])
    cfg = read_json(sae_dir / "cfg.json", {}) if sae_dir and sae_dir.is_dir() else {}
    train = cfg.get("training") or {}
    store, splice = ev.get("store") or {}, ev.get("splice") or {}
    trained_splice = splice.get("training_positions") or {}
    vec = (trained_splice or splice).get("vectors") or {}  # splice-back images' own vectors
    counts = summary.get("training_positions") or summary.get("counts") or {}
    n_feat = (summary.get("counts") or {}).get("features") or (summary.get("sae") or {}).get("d_sae")
    dead_frac = counts["dead"] / n_feat if counts.get("dead") is not None and n_feat else None
    fvu_sources = [
        (given.get("fvu"), "given"),
        (store.get("fvu"), "held-out store rows" if store.get("held_out") else "store rows that training read"),
        (trained_splice.get("fvu"), "splice-back images, trained positions"),
        (splice.get("fvu"), "splice-back images, every position"),
        (train.get("final_fvu"), "training batches (recent mean)"),
    ]
    fvu, fvu_on = next(((v, on) for v, on in fvu_sources if v is not None), (None, None))
    top1 = _first(given.get("splice_top1"), trained_splice.get("top1_agreement"), splice.get("top1_agreement"))
    return {
        "fvu": fvu,
        "fvu_on": fvu_on,
        "l0": _first(given.get("l0"), store.get("l0"), vec.get("l0"), train.get("l0")),
        "dead_fraction": _first(
            given.get("dead_fraction"), dead_frac, store.get("dead_fraction"), train.get("dead_fraction")
        ),
        "dead_on": "training positions" if summary.get("training_positions") else "every position",
        "splice_top1": top1,
        "splice_kl": _first(given.get("splice_kl"), trained_splice.get("kl"), splice.get("kl")),
        "splice_on": "trained positions"
        if trained_splice and top1 == trained_splice.get("top1_agreement")
        else ("every position" if splice else None),
        "k": _first((summary.get("sae") or {}).get("k"), cfg.get("k")),
        "features": n_feat,
        "dead": counts.get("dead"),
        "dense": counts.get("dense"),
        "images": (summary.get("images") or {}).get("analysed"),
    }


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
    graph = read_json(path)
    if graph is None:
        raise UserError(f"no circuit graph at {path}")
    for e in graph.get("edges", []):
        try:
            _add(c, str(e["source"]), str(e["target"]), float(e.get("weight", 0.0)), str(e.get("kind", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{path}: malformed edge {e!r}") from err


def read_circuits(roots, top: int = 10) -> Circuits:
    """Neighbours per node from circuit folders (``neighbours.json`` and/or ``graph.json``) or graph files.

    Every kind of edge is kept (expanded, exact_1x1, attribution, ablation); an edge seen twice
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
