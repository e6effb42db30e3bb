"""The ``circuits`` stage: weights for all pairs, data-based checks, graph, figures.

Writes into ``cfg.out``: ``neighbours.json``, ``kernels.json``, ``graph.json``, ``graph_<layer>_<f>.png|svg``
(weights) and ``..._data.png|svg`` (attribution/ablation), ``validation.json``,
``agreement.png``, ``pairs.json``, ``logits.json`` (mixed5b only) and ``summary.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

from ..analysis import branches as br
from ..data.images import ImageDataset, Preprocess
from ..data.labels import load_labels
from ..data.subsets import take_spread
from ..errors import UserError
from ..fsio import atomic_write_json, read_json
from ..models.inception_v1 import InceptionV1
from ..models.layers import layer_info
from ..sae.model import load_layer_sae
from ..sae.view import SAETensors
from .attribution import find_sites, firing_counts
from .config import CircuitsConfig
from .folder import SUMMARY_FILE, CircuitsFolder
from .graph import CircuitGraph, render
from .linearize import Linearised, make_chain
from .methods import METHODS, PairTable, compare_feature, plot_agreement
from .recipe import recipe_graph
from .saes import layer_rms
from .validate import branch_consistency
from .weights import HEADLINE, Neighbours, WeightCircuit, class_circuit, logit_weights


def neighbours_json(circuit: WeightCircuit, nb: Neighbours, kind: str) -> dict:
    """Top upstream / downstream neighbours per feature, keyed by node id (for dashboards)."""
    up, down = circuit.up, circuit.down
    feats: dict[str, dict] = {}
    for j in range(down.m):
        ids, ws = nb.up_index[j].tolist(), nb.up_weight[j].tolist()
        feats[down.node(j)] = {"upstream": [{"id": up.node(i), "weight": w} for i, w in zip(ids, ws, strict=True)]}
    for i in range(up.m):
        ids, ws = nb.down_index[i].tolist(), nb.down_weight[i].tolist()
        feats[up.node(i)] = {"downstream": [{"id": down.node(j), "weight": w} for j, w in zip(ids, ws, strict=True)]}
    return {"upstream": up.layer, "downstream": down.layer, "kind": kind, "order": "|weight|", "features": feats}


def branch_labels(
    cfg: CircuitsConfig, folders: dict[str, Path], model: InceptionV1, dataset: ImageDataset | None, *saes: SAETensors
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Layer -> dominant branch (or "none") of every feature, and layer -> where the labels come from.

    The analysis's labels where its folder is given; otherwise the same rule on the circuits' images.
    """
    named = [(s, s.layer) for s in saes if s.layer is not None]  # all: load_layer_sae refuses SAEs without one
    blocks = [(s, layer) for s, layer in named if layer_info(layer).branches]
    missing = [layer for _, layer in blocks if layer not in folders]
    rms = layer_rms(model, dataset, sorted(set(missing)), cfg.batch_size) if missing and dataset is not None else {}
    out, source = {}, {}
    for sae, layer in blocks:
        folder = folders.get(layer)
        out[layer] = br.dominant_branches(sae.W_dec, layer, rms.get(layer), folder)
        source[layer] = br.label_source(folder, rms.get(layer), "the circuits' images")
    return out, source


def branch_lookup(labels: dict[str, list[str]], *saes: SAETensors) -> dict[str, str]:
    """Node id -> dominant branch for every feature of SAEs on inception blocks."""
    out: dict[str, str] = {}
    for sae in saes:
        out.update({sae.node(i): b for i, b in enumerate(labels.get(sae.layer or "", []))})
    return out


class Labels:
    """Node id -> label, read on demand: class names, and ``label`` of analysis folders' features/<i>.json."""

    def __init__(self, cfg: CircuitsConfig) -> None:
        names = load_labels(cfg.labels) if cfg.labels else load_labels()
        self.classes = {f"class/{c}": names[c] for c in range(len(names))} if names.available else {}
        self.folders: dict[str, Path] = {}  #: layer -> analysis folder
        for folder in cfg.analysis:
            summary = Path(folder) / "summary.json"
            layer = read_json(summary, {}).get("layer")
            if not layer:
                first = next(iter(sorted((Path(folder) / "features").glob("*.json"))), None)
                layer = read_json(first).get("layer") if first else None
            if layer:
                self.folders[layer] = Path(folder)

    def get(self, nid: str, default: str | None = None) -> str | None:
        if nid in self.classes:
            return self.classes[nid]
        layer, _, feature = nid.partition("/f/")
        p = self.folders[layer] / "features" / f"{feature}.json" if layer in self.folders and feature else None
        if p is not None:
            label = read_json(p, {}).get("label")
            return str(label) if label else default
        return default


def weight_edges(circuit: WeightCircuit, nb: Neighbours, focus: int, top: int, hops: int) -> list:
    """Weight edges (Gorton's decoder-decoder weight, and its 1x1 part) of the focus feature's neighbourhood."""
    up, down = circuit.up, circuit.down
    edges, down_frontier, up_frontier = [], {focus}, set()
    one_by_one = circuit.lin.chain.only_block
    for hop in range(hops):
        if hop % 2 == 0:
            for j in down_frontier:
                for i, w in zip(nb.up_index[j, :top].tolist(), nb.up_weight[j, :top].tolist(), strict=True):
                    edges.append((up.node(i), down.node(j), w, HEADLINE))
                    up_frontier.add(i)
                    if one_by_one:
                        edges.append((up.node(i), down.node(j), circuit.pair(i, j, "weight_1x1"), "weight_1x1"))
        else:
            for i in up_frontier:
                for j, w in zip(nb.down_index[i, :top].tolist(), nb.down_weight[i, :top].tolist(), strict=True):
                    edges.append((up.node(i), down.node(j), w, HEADLINE))
                    down_frontier.add(j)
    return list({(e[0], e[1], e[3]): e for e in edges}.values())


def data_validation(circuit: WeightCircuit, cfg: CircuitsConfig, dataset: ImageDataset, features: list[int]):
    """Sites and all methods per feature. Returns (table, data edges)."""
    model, chain = circuit.model, circuit.lin.chain
    methods = METHODS if chain.only_block else tuple(m for m in METHODS if not m.endswith("_1x1"))
    table, edges = PairTable(methods), []
    for sites in find_sites(model, chain, circuit.down, features, dataset, cfg.sites, cfg.batch_size):
        j = sites.feature
        ups, cols, attr = compare_feature(circuit, sites, cfg.candidates)
        table.extend(j, ups, cols)
        table.error_attribution[j] = float(attr.error.mean())
        best = sorted(range(len(ups)), key=lambda k: -abs(float(cols["attribution"][k])))[: cfg.graph_top]
        for k in best:
            for kind in ("attribution", "ablation"):
                edges.append((circuit.up.node(ups[k]), circuit.down.node(j), float(cols[kind][k]), kind))
        edges.append((f"{circuit.up.layer}/error", circuit.down.node(j), float(attr.error.mean()), "attribution"))
    return table, edges


def pick_features(cfg: CircuitsConfig, model: InceptionV1, down: SAETensors, dataset: ImageDataset | None) -> list[int]:
    """The focus feature first, then the most frequently firing ones (or the first ones without images)."""
    chosen = [] if cfg.feature is None else [cfg.feature]
    if cfg.feature is not None and cfg.feature >= down.m:
        raise UserError(f"--feature {cfg.feature} is out of range: the downstream SAE has {down.m} features")
    order = firing_counts(model, down, dataset, cfg.batch_size).argsort(descending=True).tolist() if dataset else []
    order = order or list(range(down.m))
    return (chosen + [f for f in order if f not in chosen])[: max(cfg.compare_features, 1)]


def logits_json(model: InceptionV1, sae: SAETensors, labels: Labels, top: int = 5) -> dict:
    """Top and bottom classes of every mixed5b feature by its exact direct logit effect."""
    W = logit_weights(model, sae)[1:1001]  # (1000, m): real classes only (0 is a dummy, 1001+ unlabelled)
    out = {}
    for i in range(sae.m):
        hi, lo = W[:, i].topk(top), (-W[:, i]).topk(top)
        pick = lambda v, idx: [  # noqa: E731
            {"index": c + 1, "name": labels.get(f"class/{c + 1}", str(c + 1)), "weight": w}
            for w, c in zip(v.tolist(), idx.tolist(), strict=True)
        ]
        out[sae.node(i)] = {"top": pick(hi.values, hi.indices), "bottom": pick(-lo.values, lo.indices)}
    return out


def image_preprocess(cfg: CircuitsConfig) -> Preprocess:
    """``input_size`` when given, else the upstream SAE's harvest preprocessing (its cfg.json ``data``); refuses
    with a one-line error when neither is known."""
    if cfg.input_size is not None:
        return Preprocess.for_crop(cfg.input_size)
    from ..sae.provenance import harvest_of

    meta = read_json(Path(cfg.upstream) / "cfg.json", {})
    try:
        return harvest_of(meta, cfg.upstream, need=("preprocess",)).preprocessing()
    except UserError as e:
        raise UserError(f"{e} (for circuits: --input-size)") from None


def load_inputs(cfg: CircuitsConfig, model: InceptionV1 | None):
    """Model, SAEs, chain and (optional) images from the config, with one-line errors."""
    from ..models.weights import load_model

    up, down = (load_layer_sae(p, cfg.device, needed_by="circuits").frozen(p) for p in (cfg.upstream, cfg.downstream))
    assert up.layer is not None and down.layer is not None  # load_layer_sae refuses SAEs without one
    chain = make_chain(up.layer, down.layer)
    model = model if model is not None else load_model(cfg.weights, seed=cfg.seed, device=cfg.device)
    dataset = None
    if cfg.images is not None:
        pre = image_preprocess(cfg)
        dataset = ImageDataset.from_path(cfg.images, pre)
        dataset.subset = take_spread(dataset, cfg.max_images, cfg.seed)  # seeded, spread over the classes
    return model, up, down, chain, dataset


def logit_edges(cfg: CircuitsConfig, model: InceptionV1, circuit: WeightCircuit, focus: int, labels, out: Path):
    """mixed5b only: write logits.json; edges focus -> its top classes, and class -> mixed5b -> mixed5a."""
    down = circuit.down
    logits = logits_json(model, down, labels)
    atomic_write_json(out / "logits.json", logits, indent=None)
    top = logits[down.node(focus)]["top"][:3]
    edges = [(down.node(focus), f"class/{c['index']}", c["weight"], "logit") for c in top]
    return edges + class_circuit(model, circuit, list(cfg.classes), cfg.graph_top, cfg.graph_top)


def weight_part(
    cfg: CircuitsConfig, model: InceptionV1, circuit: WeightCircuit, focus: int, out: Path,
    dataset: ImageDataset | None = None,
):  # fmt: skip
    """neighbours.json, branch consistency and the weight graph. Returns (graph, validation, lookups)."""
    up, down = circuit.up, circuit.down
    nb = circuit.neighbours(cfg.top)
    atomic_write_json(out / "neighbours.json", neighbours_json(circuit, nb, HEADLINE), indent=None)
    validation: dict = {
        "weight_1x1": "computed (only the block lies between: exact for the 1x1 branch before its ReLU)"
        if circuit.lin.chain.only_block
        else "omitted: a max pool lies between the layers, so the 1x1 path is not a circuit"
    }
    labels_ = Labels(cfg)
    branches, sources = branch_labels(cfg, labels_.folders, model, dataset, up, down)
    if up.layer in branches and down.layer in branches:
        ups, _ = circuit.top_partners()
        test = branch_consistency(branches[up.layer], branches[down.layer], ups.tolist(), list(range(down.m)),
                                  cfg.permutations, cfg.seed)  # fmt: skip
        validation["branch_consistency"] = test.to_dict()
        validation["branch_consistency"]["label_source"] = sources
    kernels, centre = circuit.feature_kernels(focus)  # spatial kernels of the focus feature's top inputs
    atomic_write_json(out / "kernels.json", {
        "downstream": down.node(focus), "centre": list(centre), "grid": "upstream pixels",
        "kernels": {up.node(i): kernels[i].tolist() for i in nb.up_index[focus].tolist()},
    }, indent=None)  # fmt: skip
    lookups = (branch_lookup(branches, up, down), labels_)
    graph = CircuitGraph()
    graph.add_edges(weight_edges(circuit, nb, focus, cfg.graph_top, cfg.hops), *lookups)
    if down.layer == "mixed5b":
        graph.add_edges(logit_edges(cfg, model, circuit, focus, lookups[1], out), *lookups)
    return graph, validation, lookups


def recipe_part(cfg: CircuitsConfig, circuit: WeightCircuit, dataset, focus: int, graph: CircuitGraph, lookups,
                out: Path) -> dict:  # fmt: skip
    """Bozoukov's recipe from the focus feature's top upstream partners (by weight): edges of kind "recipe" in
    the same graph, ``recipe.json``, a figure, and where the focus feature ranks in each partner's recipe."""
    row = circuit.rows([focus])[0]  # the focus's weights only: its top partners, as neighbours() ranks them
    partners = row.abs().topk(min(cfg.recipe_features, row.numel())).indices.tolist()
    edges, summary = recipe_graph(circuit.model, circuit.lin.chain, circuit.up, circuit.down, dataset, partners,
                                  max_sites=cfg.sites, top=cfg.graph_top, batch_size=cfg.batch_size)  # fmt: skip
    graph.add_edges(edges, *lookups)
    atomic_write_json(out / "recipe.json", summary)
    sub = CircuitGraph()
    sub.add_edges(edges, *lookups)
    render(sub, out / f"graph_{circuit.down.layer}_{focus}_recipe", "Bozoukov's recipe from the weight partners", None,
           kinds=("recipe",))  # fmt: skip
    ranks = {}
    for nid, entry in summary["features"].items():
        order = [t["feature"] for t in entry["top"]]
        ranks[nid] = order.index(focus) + 1 if focus in order else None
    return {"upstream_features": partners, "focus_rank_in_recipe_top": ranks, "top": cfg.graph_top,
            "note": "for each of the focus feature's top upstream partners by weight: the focus feature's rank among "
                    "the downstream features the recipe finds (None: not in its top); see recipe.json"}  # fmt: skip


class CircuitsResult(NamedTuple):
    """What :func:`run` wrote (``summary`` is ``summary.json``'s contents)."""

    out: Path  #: the circuits folder
    upstream: str  #: upstream layer
    downstream: str  #: downstream layer
    focus: str  #: the focus feature's node id, e.g. ``mixed4d/f/3``
    model: str  #: the network's identity (``random:...`` for untrained weights)
    seconds: float
    validation: dict[str, Any]  #: each method against measured ablation (``validation.json``)
    summary: dict[str, Any]


def run(cfg: CircuitsConfig, model: InceptionV1 | None = None) -> CircuitsResult:
    """Run the whole stage and write its folder (``summary.json`` last); ``model``: ``cfg``'s network, if loaded."""
    t0 = time.time()
    model, up, down, chain, dataset = load_inputs(cfg, model)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    circuit = WeightCircuit(model, Linearised(model, chain), up, down, cfg.chunk)
    features = pick_features(cfg, model, down, dataset)
    focus, node = features[0], down.node(features[0])
    graph, validation, lookups = weight_part(cfg, model, circuit, focus, out, dataset)
    stem = out / f"graph_{down.layer}_{focus}"
    render(graph.neighbourhood(node, cfg.hops + 1), stem, f"{node}: weights (decoder . J . decoder) from {up.layer}",
           node)  # fmt: skip
    for c in cfg.classes if down.layer == "mixed5b" else ():
        name = lookups[1].get(f"class/{c}", str(c))
        sub = CircuitGraph()
        sub.add_edges(class_circuit(model, circuit, [c], cfg.graph_top, 3), *lookups)
        render(sub, out / f"class_{c}", f"class {c} ({name}) <- top mixed5b features <- their top mixed5a features")
    if dataset is not None:
        table, data_edges = data_validation(circuit, cfg, dataset, features)
        graph.add_edges(data_edges, *lookups)
        validation |= table.summary()
        atomic_write_json(out / "pairs.json", table.to_dict(), indent=None)
        plot_agreement(table, out / "agreement.png", f"{up.layer} -> {down.layer}: methods vs measured ablation")
        sub = graph.neighbourhood(node, 1, kinds=("attribution",))
        render(sub, f"{stem}_data", f"{node}: gradient x activation on images", node)
        if cfg.recipe_features:
            validation["recipe"] = recipe_part(cfg, circuit, dataset, focus, graph, lookups, out)
    graph.write(out / "graph.json")
    atomic_write_json(out / "validation.json", validation, default=float)
    summary = {
        "upstream": {"layer": up.layer, "sae": up.source, "features": up.m},
        "downstream": {"layer": down.layer, "sae": down.source, "features": down.m},
        "chain": [s for s, _ in chain.stages],
        "model": model.identity,
        "focus": node,
        "images": len(dataset) if dataset is not None else 0,
        "image_subset": getattr(dataset, "subset", None),
        "seconds": round(time.time() - t0, 2),
        "validation": validation,
        "files": sorted({p.name for p in out.iterdir()} | {SUMMARY_FILE}),
    }
    CircuitsFolder.write_summary(out, summary)
    return CircuitsResult(out, up.layer, down.layer, node, model.identity, summary["seconds"], validation, summary)
