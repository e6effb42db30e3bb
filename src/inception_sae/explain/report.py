"""The one-image report of ``explain``: a self-contained HTML page, a PNG summary and the JSON."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image

from ..display import NEGATIVE_COLOUR, POSITIVE_COLOUR, fmt_num, fmt_pct, sign_colour
from ..fsio import atomic_write_text


def pct(v: float, total: float) -> str:
    """``v`` as a signed share of ``total`` (a nonzero share never shows as 0%)."""
    return fmt_pct(v / total, signed=True) if total else "-"


def render_html(result: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("inception_sae.explain", "templates"), autoescape=True)
    top = result["classes"][0]["name"] if result["classes"] else "?"
    colours = {"positive": POSITIVE_COLOUR, "negative": NEGATIVE_COLOUR}
    return env.get_template("explain.html").render(r=result, top=top, pct=pct, num=fmt_num, colours=colours)


def _decode(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def render_png(result: dict, path: Path, per_side: int = 4) -> None:
    """Input image, then per class: its parts as bars and the top features' heatmaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = result["classes"]
    cols = 2 + 2 * per_side
    fig, axes = plt.subplots(len(classes), cols, figsize=(1.7 * cols, 1.9 * len(classes)), squeeze=False)
    for row, c in zip(axes, classes, strict=True):
        for ax in row:
            ax.axis("off")
        row[0].imshow(_decode(result["image"]))
        row[0].set_title(f"{c['name'][:22]}\n{c['target_kind'][:5]} {fmt_num(c['target'], 4)}", fontsize=7)
        parts = [("features", c["parts"]["features"]), ("error", c["parts"]["error"]),
                 ("dec. bias", c["parts"]["decoder_bias"]), ("bias", c["parts"]["bias"])]  # fmt: skip
        ax = row[1]
        ax.axis("on")
        ax.barh([p[0] for p in parts], [p[1] for p in parts], color=[sign_colour(p[1]) for p in parts])
        ax.tick_params(labelsize=6)
        ax.set_title("parts" + ("" if result["exact"] else " (IG, approx.)"), fontsize=7)
        feats = c["up"][:per_side] + c["down"][:per_side]
        for ax, f in zip(row[2:], feats, strict=False):
            if f["heatmap"]:
                ax.imshow(_decode(f["heatmap"]))
            sign = "+" if f["term"] > 0 else ""
            ax.set_title(f"f{f['id']} {sign}{fmt_num(f['term'], 4)}", fontsize=7, color=sign_colour(f["term"]))
    kind = "exact logit split" if result["exact"] else f"APPROXIMATION (integrated gradients, {result['steps']} steps)"
    random = str(result.get("identity", "")).startswith("random:")
    untrained = "UNTRAINED WEIGHTS (a random network): " if random else ""
    fig.suptitle(f"{untrained}{result['layer']}: {kind}; heatmaps scaled per feature; blue: pushes the class up, "
                 "red: down", fontsize=8, color=NEGATIVE_COLOUR if untrained else "black")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, result: dict) -> list[Path]:
    """``explain.html`` (self-contained), ``explain.png`` and ``explain.json`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "explain.html", out / "explain.png", out / "explain.json"]
    atomic_write_text(files[0], render_html(result))
    atomic_write_text(files[2], json.dumps(result))
    render_png(result, files[1])
    return files
