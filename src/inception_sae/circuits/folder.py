"""A circuits folder as a stage's output: its ``summary.json``, written last, is the completion marker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text, json_or_none, read_json

SUMMARY_FILE = "summary.json"


class CircuitsFolder:
    """The output folder of ``circuits`` (one pair of consecutive layers)."""

    @staticmethod
    def write_summary(out: str | Path, summary: dict[str, Any]) -> None:
        """``summary.json``, atomically, once every other file of the folder is written."""
        atomic_write_text(Path(out) / SUMMARY_FILE, json.dumps(summary, indent=1, default=float))

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        """``summary.json`` exists and parses (a file cut short or emptied is not complete)."""
        return isinstance(json_or_none(Path(path) / SUMMARY_FILE), dict)

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The summary (layers, focus feature, validation, files)."""
        return read_json(Path(path) / SUMMARY_FILE)
