"""An analysis folder as a stage's output: reading it back, and when it counts as complete.

``summary.json`` names every output and is written once the per-direction files are: it is the folder's
completion marker. Only the required keys of docs/formats.md, "Analysis folder", are needed to read a
folder (``summary.json`` with ``layer``; ``features/<id>.json``); every other key is optional so the site
can be built from partial or older outputs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..fsio import atomic_write_text, json_or_none, read_json
from .metrics import headline_metrics

SUMMARY_FILE = "summary.json"


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

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        """``summary.json`` exists and parses (a file cut short or emptied is not complete)."""
        return isinstance(json_or_none(Path(path) / SUMMARY_FILE), dict)

    @staticmethod
    def write_summary(out: str | Path, summary: dict) -> None:
        """``summary.json``, atomically (compact JSON): the last of the folder's data files."""
        atomic_write_text(Path(out) / SUMMARY_FILE, json.dumps(summary, separators=(",", ":")))

    @classmethod
    def read(cls, root: str | Path) -> Analysis:
        """Open an analysis folder written by ``inception-sae analyze`` (or by hand: docs/formats.md).

        The headline numbers are summary.json's ``metrics`` (written by ``analyze``, with the
        evaluation report's held-out FVU and splice-back agreement when it was given one); a summary
        without them (written by hand or by an older version) gets the counts it has.
        """
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"analysis folder {root} does not exist")
        summary = read_json(root / SUMMARY_FILE, None)
        if summary is None:
            raise UserError(f"{root} is not an analysis folder: summary.json is missing")
        layer = summary.get("layer")
        if not isinstance(layer, str) or not re.fullmatch(r"[A-Za-z0-9_]+", layer):
            raise UserError(f"{root}/summary.json names no valid 'layer' (got {layer!r})")
        ids = numbered_json(root / "features")
        if not ids:
            raise UserError(f"{root}/features holds no <id>.json files")
        a = cls(root, summary, layer, ids, numbered_json(root / "neurons"), read_json(root / "branches.json", {}),
                read_json(root / "umap.json", {}), read_json(root / "classes.json", {}))  # fmt: skip
        a.headline = summary.get("metrics") or headline_metrics(summary, {}, {})
        return a
