"""Where and colour for the concept labels: a 3 x 3 grid of cells on the map and on the image.

A cell's activation is the direction's maximum over the map positions in it (rows and columns split in thirds);
its colour is the most frequent of 11 basic colour names among its pixels. Extent is the share of the map at or
above half the image's maximum.
"""

from __future__ import annotations

import torch
from torch import Tensor

GRID = 3
CELLS = GRID * GRID
WHERE = ("left", "right", "top", "bottom", "centre")
COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")


def where_masks() -> Tensor:
    """(5, 9) bool: the cells of each "where" concept on the 3 x 3 grid (cell = row * 3 + col)."""
    r, c = torch.arange(CELLS) // GRID, torch.arange(CELLS) % GRID
    return torch.stack([c == 0, c == GRID - 1, r == 0, r == GRID - 1, (r == 1) & (c == 1)])


def cell_of_positions(size: int) -> Tensor:
    """(size*size,) cell index of each flat map position (rows and columns split in thirds)."""
    y, x = torch.div(torch.arange(size * size), size, rounding_mode="floor"), torch.arange(size * size) % size
    return (y * GRID // size) * GRID + x * GRID // size


def colour_names(rgb: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, H, W) index into COLOURS, from hue / saturation / value rules."""
    mx, _ = rgb.max(1)
    mn, _ = rgb.min(1)
    delta = mx - mn
    sat = torch.where(mx > 0, delta / mx.clamp_min(1e-6), torch.zeros_like(mx))
    r, g, b = rgb.unbind(1)
    d = delta.clamp_min(1e-6)
    hue = torch.where(mx == r, ((g - b) / d) % 6, torch.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) * 60
    out = torch.full_like(mx, COLOURS.index("grey"), dtype=torch.long)
    bands = [(15, "red"), (40, "orange"), (70, "yellow"), (170, "green"), (260, "blue"), (300, "purple"),
             (345, "pink"), (361, "red")]  # fmt: skip
    lo = 0.0
    for hi, name in bands:
        out = torch.where((hue >= lo) & (hue < hi), COLOURS.index(name), out)
        lo = hi
    warm = (out == COLOURS.index("orange")) | (out == COLOURS.index("red"))
    out = torch.where(warm & (mx < 0.6) & (sat < 0.9), COLOURS.index("brown"), out)
    out = torch.where((out == COLOURS.index("red")) & (sat < 0.5) & (mx > 0.7), COLOURS.index("pink"), out)
    out = torch.where(sat < 0.15, torch.where(mx > 0.8, COLOURS.index("white"), COLOURS.index("grey")), out)
    return torch.where(mx < 0.2, COLOURS.index("black"), out)


def cell_colours(x: Tensor, pool: int = 4) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 9) the most frequent colour name of each cell's pixels (after ``pool`` x
    ``pool`` averaging, which keeps a cell's dominant colour and costs 1/pool^2 of the naming)."""
    x = x.float()
    if pool > 1 and min(x.shape[-2:]) >= 4 * pool:
        x = torch.nn.functional.avg_pool2d(x, pool)
    names = colour_names(x)
    B, H, W = names.shape
    ys = torch.arange(H) * GRID // H
    xs = torch.arange(W) * GRID // W
    cell = (ys.view(-1, 1) * GRID + xs.view(1, -1)).view(1, -1).expand(B, -1)
    key = (torch.arange(B).view(-1, 1) * CELLS + cell) * len(COLOURS) + names.view(B, -1)
    counts = torch.bincount(key.reshape(-1), minlength=B * CELLS * len(COLOURS)).view(B, CELLS, len(COLOURS))
    return counts.argmax(2)


def sparse_cell_maxima(values: Tensor, indices: Tensor, n_images: int, size: int, m: int) -> Tensor:
    """(B*hw, k) sparse codes -> (B, 9, m) maximum of each direction within each cell."""
    n = values.shape[0]
    hw = size * size
    rows = torch.arange(n)
    cell = cell_of_positions(size)[rows % hw]
    unit = (rows // hw) * CELLS + cell
    flat = (unit.view(-1, 1) * m + indices).reshape(-1)
    v = values.reshape(-1).float().clamp_min(0)
    out = torch.zeros(n_images * CELLS * m).scatter_reduce(0, flat, v, "amax", include_self=True)
    return out.view(n_images, CELLS, m)


def dense_cell_maxima(acts: Tensor) -> Tensor:
    """(B, C, S, S) maps -> (B, 9, C) maximum within each cell."""
    B, C, S, _ = acts.shape
    cell = cell_of_positions(S)
    flat = acts.float().clamp_min(0).flatten(2)  # (B, C, S*S)
    out = torch.zeros(B, CELLS, C)
    for j in range(CELLS):
        out[:, j] = flat[:, :, cell == j].amax(2)
    return out


def sparse_extent(values: Tensor, indices: Tensor, vmax: Tensor, size: int) -> Tensor:
    """(B, m) share of the map's positions at or above half the image's max (0 where not firing)."""
    B, m = vmax.shape
    hw = size * size
    n, k = values.shape
    img = (torch.arange(n) // hw).view(-1, 1).expand(n, k)
    thr = vmax[img, indices]
    hit = (values >= 0.5 * thr) & (values > 0)
    flat = (img * m + indices)[hit]
    return torch.bincount(flat, minlength=B * m).view(B, m).float() / hw


def dense_extent(acts: Tensor, vmax: Tensor) -> Tensor:
    """(B, C) share of each map's positions at or above half its max (0 where not firing)."""
    flat = acts.float().flatten(2)
    hit = (flat >= 0.5 * vmax.unsqueeze(2)) & (flat > 0)
    return hit.float().mean(2) * (vmax > 0)
