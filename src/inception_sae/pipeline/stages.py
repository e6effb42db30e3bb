"""The stages of ``inception-sae run``: each knows its folder, whether it is complete, and how to run.

Every stage calls the same library function as its own command; none
re-implements stage logic. Resuming is the stages' own (harvest and train
resume from their folders; analyze from its checkpoint; featvis skips PNGs
that exist), so ``run`` only decides which stages to call.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import read_json as read_json_file

#: Stage order within one layer; ``circuits``, ``compare`` and ``site`` follow all layers.
LAYER_STAGES = ("harvest", "train", "eval", "analyze", "featvis")
ALL_STAGES = (*LAYER_STAGES, "circuits", "compare", "site")
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

    def outputs(self, stage: str, layers: tuple[str, ...]) -> list[Path]:
        """What removing a stage's results means (for ``--force-stage``)."""
        if stage == "site":
            return [self.site]
        if stage in ("circuits", "compare"):
            return [getattr(self, stage)(a, b) for a, b in pairwise(layers)]
        folder = {"harvest": self.store, "train": self.sae, "eval": self.eval, "analyze": self.analysis,
                  "featvis": self.featvis}[stage]  # fmt: skip
        return [folder(layer) for layer in layers]


def read_json(path: Path) -> Any:
    """A stage's JSON output, or None where it is absent or cut short (the stage is then not complete)."""
    try:
        return read_json_file(path, None)
    except UserError:
        return None


# -- completeness checks ------------------------------------------------------------------
def store_done(path: Path) -> bool:
    """The manifest says complete and every shard it lists is on disk with its rows (headers only are read)."""
    import numpy as np

    manifest = read_json(path / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        return False
    try:
        for shard in manifest.get("shards", []):
            if np.load(path / shard["file"], mmap_mode="r").shape[0] != shard["count"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def json_done(path: Path) -> bool:
    """A stage's final JSON exists and parses (a file cut short or emptied is not complete)."""
    return isinstance(read_json(path), dict)


def sae_done(path: Path) -> bool:
    """cfg.json and train_summary.json parse, and the weights file is as long as its header says."""
    jsons = (read_json(path / name) for name in ("cfg.json", "train_summary.json"))
    return all(isinstance(d, dict) for d in jsons) and safetensors_complete(path / "sae_weights.safetensors")


def safetensors_complete(path: Path) -> bool:
    """A cheap check of a ``.safetensors`` file: its JSON header parses and the data is as long as it says."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n < 100_000_000 else None
        ends = [v["data_offsets"][1] for k, v in (header or {}).items() if k != "__metadata__"]
        return bool(ends) and path.stat().st_size == 8 + n + max(ends)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def site_done(path: Path) -> bool:
    return (path / "index.html").is_file() and "status" not in (read_json(path / "site.json") or {"status": 0})


def featvis_done(path: Path, layer: str, ids: list[int] | None) -> bool:
    """Every requested feature has its PNG recorded in the featvis index."""
    index = read_json(path / "featvis.json") or {}
    items = index.get("layers", {}).get(layer, {}).get("f", {}).get("items", {})
    if ids is None or not items:
        return bool(items) and ids is not None
    return all(str(i) in items and (path / items[str(i)].get("png", "?")).is_file() for i in ids)


def feature_ids(spec: str, analysis: Path, d_sae: int) -> list[int]:
    """``top:N`` -> the N most frequent live features of the analysis; else an id list (clipped to d_sae)."""
    from ..featvis.run import parse_ids

    if spec.startswith("top:"):
        n = top_count(spec)
        freq = []
        for p in (analysis / "features").glob("*.json"):
            d = read_json(p) or {}
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


def sae_d(path: Path) -> int:
    cfg = read_json(path / "cfg.json") or {}
    return int(cfg.get("d_sae", 0))


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
