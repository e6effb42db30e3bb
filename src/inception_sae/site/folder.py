"""A site folder as a stage's output: ``site.json`` says whether the build finished.

A build starts by writing ``site.json`` as ``{"status": "building"}`` (marking the folder as the site's
own, should the build fail) and ends by replacing it with the build report, which has no ``status``: that
report, beside ``index.html``, is the completion marker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text, json_or_none

REPORT_FILE = "site.json"


class SiteFolder:
    """The output folder of ``site build``."""

    @staticmethod
    def mark_building(out: str | Path) -> None:
        (Path(out) / REPORT_FILE).write_text('{"status": "building"}\n')

    @staticmethod
    def write_report(out: str | Path, report: dict[str, Any]) -> None:
        """The build report (counts, bytes, seconds): the site is complete."""
        atomic_write_text(Path(out) / REPORT_FILE, json.dumps(report, indent=1))

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        """``index.html`` exists and ``site.json`` holds a finished build's report."""
        path = Path(path)
        report = json_or_none(path / REPORT_FILE)
        return (path / "index.html").is_file() and isinstance(report, dict) and "status" not in report

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The build report (empty where there is none)."""
        report = json_or_none(Path(path) / REPORT_FILE)
        return report if isinstance(report, dict) else {}
