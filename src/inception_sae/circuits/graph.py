"""Circuit graphs: ``graph.json`` (docs/formats.md, "Circuits folder"), k-hop neighbourhoods, figures.

Nodes ``{"id": "mixed4c/f/12", "layer", "feature", "branch", "label"}``, class
nodes ``class/<index>``, error nodes ``<layer>/error``; edges ``{"source",
"target", "weight", "kind"}`` with kind weight | weight_1x1 | attribution |
ablation (and ``logit`` for the exact mixed5b -> class edges).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..display import NEGATIVE_COLOUR, POSITIVE_COLOUR, sign_colour
from ..fsio import atomic_write_json
from ..models.layers import STAGE_NAMES

Edge = tuple[str, str, float, str]  #: (source, target, weight, kind), source upstream of target


@dataclass
class CircuitGraph:
    """Nodes by id and edges; node attributes are filled from the id and optional lookups."""

    nodes: dict[str, dict] = field(default_factory=dict)
    edges: list[dict] = field(default_factory=list)

    def add_edges(self, edges: Iterable[Edge], branches: dict[str, str] | None = None, labels=None) -> None:
        """Add edges and their end nodes (``branches``/``labels``: anything with ``.get(node id)`` -> text)."""
        for src, dst, w, kind in edges:
            for nid in (src, dst):
                if nid not in self.nodes:
                    self.nodes[nid] = make_node(nid, (branches or {}).get(nid), (labels or {}).get(nid))
            self.edges.append({"source": src, "target": dst, "weight": float(w), "kind": kind})

    def to_dict(self) -> dict:
        return {"nodes": list(self.nodes.values()), "edges": self.edges}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict())
        return path

    def neighbourhood(self, centre: str, hops: int = 1, kinds: Iterable[str] | None = None) -> CircuitGraph:
        """The sub-graph within ``hops`` edges of ``centre`` (edges in either direction)."""
        kinds = set(kinds) if kinds is not None else None
        edges = [e for e in self.edges if kinds is None or e["kind"] in kinds]
        seen, frontier = {centre}, {centre}
        for _ in range(hops):
            nxt = {e["target"] for e in edges if e["source"] in frontier}
            nxt |= {e["source"] for e in edges if e["target"] in frontier}
            frontier = nxt - seen
            seen |= nxt
        sub = CircuitGraph({n: self.nodes[n] for n in seen if n in self.nodes})
        sub.edges = [e for e in edges if e["source"] in seen and e["target"] in seen]
        return sub


def make_node(nid: str, branch: str | None = None, label: str | None = None) -> dict:
    """A node record parsed from its id."""
    parts = nid.split("/")
    if parts[0] == "class":
        node = {"id": nid, "layer": "logits", "class": int(parts[1])}
    elif len(parts) == 3 and parts[1] == "f":
        node = {"id": nid, "layer": parts[0], "feature": int(parts[2])}
    else:
        node = {"id": nid, "layer": parts[0], "kind": parts[-1]}
    if branch:
        node["branch"] = branch
    if label:
        node["label"] = label
    return node


def _layer_order(layer: str) -> int:
    return STAGE_NAMES.index(layer) if layer in STAGE_NAMES else len(STAGE_NAMES)


def _layout(graph: CircuitGraph) -> tuple[list[str], dict[str, tuple[float, float]], int]:
    """Layers in forward order as columns; nodes centred vertically, sorted by feature/class."""
    columns: dict[str, list[str]] = {}
    for nid, node in graph.nodes.items():
        columns.setdefault(node["layer"], []).append(nid)
    layers = sorted(columns, key=_layer_order)
    pos = {}
    for x, layer in enumerate(layers):
        ids = sorted(columns[layer], key=lambda n: graph.nodes[n].get("feature", graph.nodes[n].get("class", -1)))
        for r, nid in enumerate(ids):
            pos[nid] = (float(x), -(r - (len(ids) - 1) / 2))
    return layers, pos, max((len(v) for v in columns.values()), default=1)


def _legend_handles(plt) -> list:
    return [
        *(plt.Line2D([], [], marker="o", ls="", color=c, label=b) for b, c in BRANCH_COLOURS.items()),
        plt.Line2D([], [], color=POSITIVE_COLOUR, label="excites (blue)"),
        plt.Line2D([], [], color=NEGATIVE_COLOUR, label="inhibits (red)"),
        plt.Line2D([], [], color="grey", ls="--", label="data-based"),
    ]


BRANCH_COLOURS = {"1x1": "#1b9e77", "3x3": "#d95f02", "5x5": "#7570b3", "pool": "#e7298a"}


def render(
    graph: CircuitGraph,
    path_stem: str | Path,
    title: str = "",
    focus: str | None = None,
    kinds: tuple[str, ...] = ("weight", "logit", "attribution"),
) -> list[Path]:
    """Draw the graph left (upstream) to right (downstream / classes); write PNG and SVG.

    Node colour: dominant branch; edge colour: sign (blue excites, red inhibits: the site's colours);
    edge width: |weight| relative to the largest; only edges of ``kinds`` are
    drawn (weight_1x1 duplicates weight pairs). Readable without any dashboard.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, pos, height = _layout(graph)
    fig, ax = plt.subplots(figsize=(3.2 * max(len(layers), 2), max(3.0, 0.55 * height + 1.5)))
    edges = [e for e in graph.edges if e["kind"] in kinds]
    wmax = max((abs(e["weight"]) for e in edges), default=1.0) or 1.0
    for e in edges:
        (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
        colour = sign_colour(e["weight"])
        style = "-" if e["kind"] in ("weight", "weight_1x1", "logit") else "--"
        ax.plot([x0, x1], [y0, y1], style, color=colour, lw=0.4 + 4 * abs(e["weight"]) / wmax, alpha=0.7, zorder=1)
    for nid, (x, y) in pos.items():
        node = graph.nodes[nid]
        face = BRANCH_COLOURS.get(node.get("branch", ""), "#bbbbbb")
        edge = "black" if nid == focus else "white"
        ax.scatter([x], [y], s=260, c=face, edgecolors=edge, linewidths=2, zorder=2)
        text = nid.split("/", 1)[1] if "/" in nid else nid
        if node.get("label"):
            text += f"\n{node['label'][:28]}"
        left = x == 0 and len(layers) > 1  # labels outside the columns, away from the edges
        ax.annotate(text, (x, y), xytext=(-10 if left else 10, 0), textcoords="offset points", va="center",
                    ha="right" if left else "left", fontsize=7, zorder=3)  # fmt: skip
    for x, layer in enumerate(layers):
        ax.text(x, 0.5 + height / 2, layer, ha="center", fontsize=10, weight="bold")
    ax.legend(handles=_legend_handles(plt), loc="lower right", fontsize=7, frameon=False)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylim(-height / 2 - 1, height / 2 + 1)
    ax.axis("off")
    fig.tight_layout()
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=110)
    plt.close(fig)
    return paths
