"""Outputs of ``compare``: ``compare.json``, the histogram ``compare.png`` and the printed table."""

from __future__ import annotations

import json
from pathlib import Path

from ..fsio import atomic_write_text
from .summary import THRESHOLDS, finite


def write_outputs(out: Path, result: dict) -> None:
    """``compare.json`` (atomically) and ``compare.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.json", json.dumps(finite(result), separators=(",", ":"), allow_nan=False))
    plot(result, out / "compare.png")


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


def table_rows(result: dict) -> list[tuple[str, ...]]:
    """Rows (comparison, direction, group, n, share >= 0.7, share >= 0.9, share > null) for the CLI table."""
    rows = []
    for kind, name in (("decoder", "decoder cosine"), ("activation", "activation corr")):
        block = result.get(kind)
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
