"""Procedural images for the offline demo and for tests: shapes, gratings, colour fields; and planted
feature hierarchies (activation rows with a known tree of features) for the SAE quality metrics.

Each image belongs to one of a few visual classes (written as one folder per
class, so analyses have true labels to enrich), and is fully determined by
``(seed, index)``. Nothing is downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..fsio import atomic_save_image

Painter = Callable[[np.random.Generator, int], Image.Image]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in rng.integers(0, 256, 3))
    return r, g, b


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A soft two-colour gradient, so no image is flat."""
    a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
    t = np.linspace(0, 1, size)[:, None, None]
    angle = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    return Image.fromarray((a * (1 - t) + b * t).astype(np.uint8))


def grating(rng: np.random.Generator, size: int) -> Image.Image:
    """Sinusoidal grating at a random orientation, frequency and colour pair."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    theta, freq = rng.uniform(0, math.pi), rng.uniform(3, 20) / size
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 6.3))
    a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
    return Image.fromarray((a * wave[..., None] + b * (1 - wave[..., None])).astype(np.uint8))


def _shapes(kind: str) -> Painter:
    def paint(rng: np.random.Generator, size: int) -> Image.Image:
        img = _background(rng, size)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 5))):
            r = rng.uniform(0.08, 0.3) * size
            cx, cy = rng.uniform(r, size - r, 2)
            fill = _colour(rng)
            if kind == "circles":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            elif kind == "squares":
                draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
            else:
                a0 = rng.uniform(0, 2 * math.pi)
                pts = [
                    (cx + r * math.cos(a0 + k * 2 * math.pi / 3), cy + r * math.sin(a0 + k * 2 * math.pi / 3))
                    for k in range(3)
                ]
                draw.polygon(pts, fill=fill)
        return img

    return paint


def checkerboard(rng: np.random.Generator, size: int) -> Image.Image:
    """Checkerboard with a random cell size and colours."""
    cell = int(rng.integers(6, 40))
    yy, xx = np.mgrid[0:size, 0:size]
    mask = ((yy // cell + xx // cell) % 2).astype(bool)[..., None]
    out = np.where(mask, np.array(_colour(rng)), np.array(_colour(rng))).astype(np.uint8)
    return Image.fromarray(out)


def colour_field(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth random colour blobs (low-pass noise)."""
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return (
        Image.fromarray(small)
        .resize((size, size), Image.Resampling.BICUBIC)
        .filter(ImageFilter.GaussianBlur(size / 30))
    )


def lines(rng: np.random.Generator, size: int) -> Image.Image:
    """A few thick straight lines and curves over a gradient."""
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        box = sorted(rng.uniform(0, size, 2)) + sorted(rng.uniform(0, size, 2))
        x0, x1, y0, y1 = box
        width = int(rng.integers(2, 9))
        if rng.random() < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=_colour(rng), width=width)
        else:
            draw.arc(
                [x0, y0, x1 + 10, y1 + 10], rng.uniform(0, 180), rng.uniform(180, 360), fill=_colour(rng), width=width
            )
    return img


CLASSES: dict[str, Painter] = {
    "circles": _shapes("circles"),
    "squares": _shapes("squares"),
    "triangles": _shapes("triangles"),
    "gratings": grating,
    "checkerboards": checkerboard,
    "colour_fields": colour_field,
    "lines": lines,
}


def make_image(index: int, size: int = 224, seed: int = 0) -> tuple[str, Image.Image]:
    """The ``index``-th image of the collection: (class name, RGB image)."""
    rng = np.random.default_rng([seed, index])
    names = list(CLASSES)
    name = names[index % len(names)]
    return name, CLASSES[name](rng, size).convert("RGB")


def write_synthetic_images(out: str | Path, n: int, size: int = 224, seed: int = 0) -> list[Path]:
    """Write ``n`` images as ``out/<class>/<index>.png``; existing files are kept (resumable)."""
    out = Path(out)
    paths = []
    for i in range(n):
        name, img = make_image(i, size, seed)
        path = out / name / f"{i:05d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save_image(path, img, format="PNG")
        paths.append(path)
    return paths


# -- planted feature hierarchies (activation vectors, not images) ---------------------------------------


@dataclass
class PlantedHierarchy:
    """Rows built from a known tree of features: each parent fires with exactly one of its children.

    Feature order in ``dictionary`` and ``codes``: parents ``0..P-1``, then children (``child_parent[c]``
    is child feature ``P + c``'s parent), then background features.
    """

    x: np.ndarray  #: (n, d) float32 rows: codes @ dictionary + noise
    dictionary: np.ndarray  #: (F, d) unit feature directions
    codes: np.ndarray  #: (n, F) true non-negative coefficients
    parent: np.ndarray  #: (n,) parent index fired on each row (-1: none)
    child: np.ndarray  #: (n,) child index (0..C-1) fired on each row (-1: none)
    child_parent: np.ndarray  #: (C,) parent index of each child
    n_parents: int

    @property
    def n_children(self) -> int:
        return len(self.child_parent)

    def child_feature(self, c: int) -> int:
        """Column of child ``c`` in ``codes`` and row in ``dictionary``."""
        return self.n_parents + c

    @property
    def true_l0(self) -> float:
        """Mean number of features active per row."""
        return float((self.codes > 0).sum(1).mean())


def _zipf(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def planted_hierarchy(
    n: int,
    d: int = 64,
    parents: int = 4,
    children: int = 4,
    background: int = 64,
    p_tree: float = 0.6,
    background_active: int = 2,
    zipf: float = 1.0,
    noise: float = 0.01,
    seed: int = 0,
) -> PlantedHierarchy:
    """Rows of a planted hierarchy: ``parents`` parent features with ``children`` children each.

    With probability ``p_tree`` a row holds one tree: a parent (Zipf(``zipf``) over parents) and exactly one of
    its children (Zipf over siblings): parents always fire with a child, children are mutually exclusive.
    Every row also holds ``background_active`` distinct background features (Zipf over ``background``), so
    the true L0 is ``2 p_tree + background_active``. Coefficients are 1 + Exp(1) (never near zero); directions
    are random unit vectors; Gaussian noise of standard deviation ``noise`` per dimension.
    """
    rng = np.random.default_rng(seed)
    n_child = parents * children
    F = parents + n_child + background
    D = rng.standard_normal((F, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    codes = np.zeros((n, F))
    tree = rng.random(n) < p_tree
    parent = np.where(tree, rng.choice(parents, n, p=_zipf(parents, zipf)), -1)
    child = np.where(tree, parent * children + rng.choice(children, n, p=_zipf(children, zipf)), -1)
    rows = np.flatnonzero(tree)
    codes[rows, parent[rows]] = 1 + rng.exponential(1.0, len(rows))
    codes[rows, parents + child[rows]] = 1 + rng.exponential(1.0, len(rows))
    if background_active:
        # Gumbel top-k: ``background_active`` distinct features per row, drawn without replacement by weight
        keys = np.log(_zipf(background, zipf)) + rng.gumbel(size=(n, background))
        bg = np.argpartition(-keys, background_active - 1, axis=1)[:, :background_active]
        np.put_along_axis(codes[:, parents + n_child :], bg, 1 + rng.exponential(1.0, bg.shape), axis=1)
    x = codes @ D + noise * rng.standard_normal((n, d))
    child_parent = np.repeat(np.arange(parents), children)
    return PlantedHierarchy(x.astype(np.float32), D, codes, parent, child, child_parent, parents)
