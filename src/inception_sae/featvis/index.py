"""A featvis folder as a stage's output: its index ``featvis.json``, and when a job's items are all rendered.

The index records, per layer and kind (``f`` SAE features, ``n`` neurons), every rendered item and its PNG;
it is rewritten after every batch, so it is also the completion marker: a job is complete when every item
it asks for is in the index with its PNG on disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import atomic_write_json, json_or_none, read_json

INDEX_FILE = "featvis.json"
INDEX_FORMAT = "inception-sae/featvis/1"


class FeatvisFolder:
    """The output folder of ``featvis``."""

    @staticmethod
    def load(out: Path, identity: str) -> dict[str, Any]:
        """The existing index of ``out`` (for resuming) or a fresh one; another model's index is refused."""
        path = Path(out) / INDEX_FILE
        if path.is_file():
            index = read_json(path)
            if index.get("model") != identity:
                raise UserError(
                    f"{path} was rendered with model {index.get('model')!r}, not {identity!r}; use a new --out"
                )
            return index
        return {"format": INDEX_FORMAT, "model": identity, "layers": {}}

    @staticmethod
    def write(out: Path, index: dict[str, Any]) -> None:
        """Write ``featvis.json`` atomically."""
        atomic_write_json(Path(out) / INDEX_FILE, index, sort_keys=True)

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The index (empty where the folder holds none or it does not parse)."""
        index = json_or_none(Path(path) / INDEX_FILE)
        return index if isinstance(index, dict) else {}

    @staticmethod
    def items(index: dict[str, Any], layer: str, kind: str = "f") -> dict[str, Any]:
        """id -> item record of one layer and kind in ``index``."""
        return index.get("layers", {}).get(layer, {}).get(kind, {}).get("items", {})

    @classmethod
    def is_complete(cls, path: str | Path, layer: str, ids: Iterable[int] | None, kind: str = "f") -> bool:
        """Every requested item of ``layer`` has its PNG recorded in the index and on disk.

        Unlike the other stages' outputs, completeness is relative to the job: which ids it renders.
        """
        path = Path(path)
        items = cls.items(cls.read(path), layer, kind)
        if ids is None or not items:
            return False
        return all(str(i) in items and (path / items[str(i)].get("png", "?")).is_file() for i in ids)
