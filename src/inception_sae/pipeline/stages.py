"""The stages of ``inception-sae run``: the run folder's layout, what each stage depends on, and its output.

Every stage calls the same library function as its own command; none re-implements stage logic, and
whether a stage's output is complete is asked of the class that owns that output, beside its writer
(:func:`artefact`). Resuming is the stages' own (harvest and train
resume from their folders; analyze from its checkpoint; featvis skips PNGs
that exist), so ``run`` only decides which stages to call.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import json_or_none

#: Stage order within one layer; ``circuits``, ``compare`` and ``site`` follow all layers.
LAYER_STAGES = ("harvest", "train", "eval", "analyze", "featvis")
#: Stages run once per pair of consecutive layers.
PAIR_STAGES = ("circuits", "compare")
ALL_STAGES = (*LAYER_STAGES, *PAIR_STAGES, "site")
#: Config sections (and top-level keys) each stage's result depends on.
DEPENDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "harvest": (("harvest",), ("images", "weights", "seed")),
    "train": (("train", "sae"), ()),
    "eval": (("eval",), ("analysis_images",)),
    "analyze": (("analyze",), ("analysis_images",)),
    "featvis": (("featvis",), ()),
    "circuits": (("circuits",), ()),
    "compare": (("compare",), ("analysis_images",)),
    "site": (("site",), ()),
}
#: Settings that change how a stage's output looks, not what is computed: left out of the fingerprints, so a
#: change never blocks reusing a run folder; the stage itself is rebuilt (its output shows them), nothing else.
COSMETIC: dict[str, tuple[str, ...]] = {"site": ("title",)}
#: Settings that change how a stage runs, not its output: left out of the fingerprints, nothing is rebuilt.
RUN_ONLY: dict[str, tuple[str, ...]] = {"harvest": ("workers",), "analyze": ("workers",)}


@dataclass
class Stage:
    """One unit of work of a run."""

    name: str  #: one of :data:`ALL_STAGES`
    key: str  #: display name, e.g. ``harvest mixed4a`` or ``circuits mixed4c__mixed4d``
    out: Path  #: the folder (or file) it writes
    done: Callable[[], bool]  #: is its output complete and valid?
    run: Callable[[], str]  #: do the work; returns a one-line note


class Paths:
    """The run folder's layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def store(self, layer: str) -> Path:
        return self.root / layer / "store"

    def sae(self, layer: str) -> Path:
        return self.root / layer / "sae"

    def eval(self, layer: str) -> Path:
        return self.root / layer / "eval.json"

    def analysis(self, layer: str) -> Path:
        return self.root / layer / "analysis"

    def featvis(self, layer: str) -> Path:
        return self.root / layer / "featvis"

    def circuits(self, a: str, b: str) -> Path:
        return self.root / "circuits" / f"{a}__{b}"

    def compare(self, a: str, b: str) -> Path:
        return self.root / "compare" / f"{a}__{b}"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def of(self, stage: str, *unit: str) -> Path:
        """The output of ``stage`` for ``unit``: a layer, a pair of layers, or nothing (the site)."""
        if stage == "site":
            return self.site
        method = {"harvest": "store", "train": "sae", "analyze": "analysis"}.get(stage, stage)
        return Path(getattr(self, method)(*unit))

    def outputs(self, stage: str, layers: tuple[str, ...]) -> list[Path]:
        """What removing a stage's results means (for ``--force-stage``)."""
        return [self.of(stage, *unit) for unit in units(stage, layers)]


def artefact(name: str) -> Any:
    """The class that owns stage ``name``'s output folder: ``is_complete(path)`` and ``read(path)``, beside its writer.

    (featvis's completeness is relative to the features it is asked for: ``is_complete(path, layer, ids)``.)
    """
    from ..analysis.folder import Analysis
    from ..circuits.folder import CircuitsFolder
    from ..compare.report import CompareFolder
    from ..data.store import ActivationStore
    from ..featvis.index import FeatvisFolder
    from ..sae.eval_stage import EvalReport
    from ..sae.folder import SAEFolder
    from ..site.folder import SiteFolder

    return {"harvest": ActivationStore, "train": SAEFolder, "eval": EvalReport, "analyze": Analysis,
            "featvis": FeatvisFolder, "circuits": CircuitsFolder, "compare": CompareFolder,
            "site": SiteFolder}[name]  # fmt: skip


def units(name: str, layers: tuple[str, ...]) -> list[tuple[str, ...]]:
    """What stage ``name`` runs once for: each layer, each pair of consecutive layers, or the whole run."""
    if name in LAYER_STAGES:
        return [(layer,) for layer in layers]
    if name in PAIR_STAGES:
        return list(pairwise(layers))
    return [()]


def feature_ids(spec: str, analysis: Path, d_sae: int) -> list[int]:
    """``top:N`` -> the N most frequent live features of the analysis; else an id list (clipped to d_sae)."""
    from ..featvis.run import parse_ids

    if spec.startswith("top:"):
        n = top_count(spec)
        freq = []
        for p in (analysis / "features").glob("*.json"):
            d = json_or_none(p) or {}
            if d.get("frequency"):
                freq.append((-float(d["frequency"]), int(d["id"])))
        return sorted(i for _, i in sorted(freq)[:n]) or list(range(min(n, d_sae)))
    return [i for i in parse_ids(spec) if i < d_sae]


def top_count(spec: str) -> int:
    """N of a ``top:N`` feature spec (a one-line error otherwise)."""
    try:
        n = int(spec[4:])
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"featvis.features {spec!r}: use top:N with N >= 1, or an id list such as 0-15")
    return n


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def layer_check(layers: tuple[str, ...]) -> None:
    """One line for unknown layers, or several layers not in network order (circuits need consecutive ones)."""
    from ..models.layers import STAGE_NAMES, spatial_layer_info

    if not layers:
        raise UserError("give at least one --layer (e.g. --layer mixed4a)")
    for layer in layers:
        try:
            spatial_layer_info(layer)
        except KeyError as e:
            raise UserError(e.args[0]) from None
    order = [STAGE_NAMES.index(layer) if layer in STAGE_NAMES else -1 for layer in layers]
    if len(layers) > 1 and (min(order) < 0 or order != sorted(order)):
        raise UserError(f"give several --layer values as whole layers in network order, got {list(layers)}")
