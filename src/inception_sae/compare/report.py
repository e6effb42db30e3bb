"""Outputs of ``compare``: ``compare.json``, the histogram ``compare.png`` and the printed table."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text, json_or_none, read_json
from .summary import THRESHOLDS, finite

REPORT_FILE = "compare.json"


@dataclass(frozen=True)
class CompareResult:
    """What ``compare`` found: the sections of ``compare.json`` (docs/formats.md), one field each."""

    out: Path  #: the compare folder
    a: dict[str, Any]  #: side A: SAE folder, layer, d_sae, model
    b: dict[str, Any]
    same_layer: bool
    thresholds: list[float]
    dominance: dict[str, Any]  #: where each side's dominant branches come from
    features_a: dict[str, list]  #: per-feature columns of side A (id, best matches, null test...)
    features_b: dict[str, list]
    seconds: float
    activation: dict[str, Any] | None = None  #: activation-correlation matching (with images)
    images: dict[str, Any] | None = None  #: the images it was measured on (with images)
    decoder: dict[str, Any] | None = None  #: decoder-cosine matching (same layer only)

    @classmethod
    def from_dict(cls, out: str | Path, d: dict[str, Any]) -> CompareResult:
        names = {f.name for f in fields(cls)} - {"out"}
        return cls(Path(out), **{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """``compare.json``'s contents."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "out" and getattr(self, f.name) is not None
        }

    def matched_share(self, r: float = 0.7) -> float:
        """Share of A's features whose best activation match in B reaches ``r`` and is above its own null."""
        fa = self.features_a
        strong = [
            bool(up) and (c or -1.0) >= r
            for up, c in zip(fa.get("corr_above_null", []), fa.get("corr", []), strict=True)
        ]
        return sum(strong) / max(len(strong), 1)

    @property
    def share_above_null(self) -> float | None:
        """Share of A's features whose best activation match in B is above its own null, at any r."""
        return (self.activation or {}).get("a_to_b", {}).get("share_above_null")


class CompareFolder:
    """The output folder of ``compare``: ``compare.json`` (the completion marker) and ``compare.png``."""

    @staticmethod
    def write(out: str | Path, result: dict[str, Any]) -> None:
        """``compare.png``, then ``compare.json`` (atomically)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plot(result, out / "compare.png")
        atomic_write_text(out / REPORT_FILE, json.dumps(finite(result), separators=(",", ":"), allow_nan=False))

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        """``compare.json`` exists and parses (a file cut short or emptied is not complete)."""
        return isinstance(json_or_none(Path(path) / REPORT_FILE), dict)

    @staticmethod
    def read(path: str | Path) -> CompareResult:
        return CompareResult.from_dict(path, read_json(Path(path) / REPORT_FILE))


def _hist(ax, values, title: str, xlabel: str, null=None, null_line=None) -> None:
    vals = [v for v in values if v is not None]
    bins = [i / 50 for i in range(-10, 51)]
    ax.hist(vals, bins=bins, color="#3b6ea8", alpha=0.85, label=f"best match ({len(vals)} features)")
    if null is not None:
        nv = [v for v in null if v is not None]
        ax.hist(nv, bins=bins, color="#c0504d", alpha=0.55, label="best match, images shuffled (null, mean)")
    for t in THRESHOLDS:
        ax.axvline(t, color="#555", ls="--", lw=0.8)
    if null_line is not None and null_line == null_line and abs(null_line) != float("inf"):
        ax.axvline(null_line, color="#c0504d", lw=1.2, label=f"null 99%, median feature ({null_line:.2f})")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("features")
    ax.legend(fontsize=7)


def plot(result: dict, path: Path) -> None:
    """Histogram of each feature's best-match similarity (per comparison kind present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fa = result["features_a"]
    panels = [k for k in ("cos", "corr") if k in fa]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.2 * max(1, len(panels)), 3.6), squeeze=False)
    la, lb = result["a"]["layer"] or "A", result["b"]["layer"] or "B"
    for ax, kind in zip(axes[0], panels, strict=False):
        if kind == "cos":
            _hist(ax, fa["cos"], f"decoder cosine: each {la} feature's best match in B", "cosine")
        else:
            null = result["activation"]["null"]["a_to_b"]
            _hist(ax, fa["corr"], f"activation correlation: A ({la}) -> B ({lb})", "Pearson r on the same positions",
                  fa["corr_null_best"], null.get("q99_median"))  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_rows(result: CompareResult) -> list[tuple[str, ...]]:
    """Rows (comparison, direction, group, n, share >= 0.7, share >= 0.9, share > null) for the CLI table."""
    rows = []
    for kind, name in (("decoder", "decoder cosine"), ("activation", "activation corr")):
        block = getattr(result, kind)
        if not block:
            continue
        for side in ("a_to_b", "b_to_a"):
            s = block[side]
            null = s.get("share_above_null")

            def row(group, n, shares, nul, _name=name, _side=side):
                cells = [f"{shares[f'{t:g}']:.1%}" if shares[f"{t:g}"] is not None else "-" for t in THRESHOLDS]
                last = f"{nul:.1%}" if nul is not None else "-"
                rows.append((_name, _side.replace("_", " "), group, str(n), *cells, last))

            row("all (best match)", s["n"], s["best_share_above"], null)
            row("all (one-to-one)", s["n"], s["one_to_one_share_above"], None)
            for g, v in s["by_branch"].items():
                row(f"branch {g}", v["n"], v["share_above"], v.get("share_above_null"))
            for g, v in (s.get("by_frequency") or {}).items():
                row(f"freq {g}", v["n"], v["share_above"], v.get("share_above_null"))
            if "position_tied" in s:
                rows.append((name, side.replace("_", " "), "position-tied (no match)", str(s["position_tied"]),
                             *["-"] * (len(THRESHOLDS) + 1)))  # fmt: skip
    return rows
