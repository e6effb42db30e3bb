"""Decoder-vector geometry: UMAP (umap-learn, an optional extra) coloured by branch, nearest neuron."""

from __future__ import annotations

import torch
from torch import Tensor

UMAP_MISSING = "umap-learn is not installed (pip install 'inception-sae[umap]'): UMAP skipped"


def umap_coords(W_dec: Tensor, seed: int = 0, n_neighbors: int = 15) -> Tensor | None:
    """(m, 2) UMAP of unit-normalised decoder rows (cosine metric); None if umap-learn is missing."""
    try:
        import umap
    except ImportError:
        return None
    X = torch.nn.functional.normalize(W_dec.float(), dim=1).numpy()
    reducer = umap.UMAP(
        n_components=2, n_neighbors=max(2, min(n_neighbors, X.shape[0] - 1)), metric="cosine",
        random_state=seed, n_jobs=1, init="random" if X.shape[0] < 50 else "spectral",
    )  # fmt: skip
    return torch.from_numpy(reducer.fit_transform(X)).float()


def nearest_neuron(W_dec: Tensor) -> tuple[Tensor, Tensor]:
    """(m,) most similar channel of each decoder row and its cosine: the largest SIGNED cosine.

    The cosine of a unit row with channel c's basis vector is its c-th entry; a
    channel the feature writes negatively (suppresses) is not "similar" to it.
    """
    unit = torch.nn.functional.normalize(W_dec.float(), dim=1)
    neuron = unit.argmax(1)
    return neuron, unit.gather(1, neuron.view(-1, 1)).squeeze(1)


#: One colour per branch, shared by these PNGs and the site's interactive map and chips.
BRANCH_COLOURS = {"none": "#bbbbbb", "1x1": "#1b9e77", "3x3": "#d95f02", "5x5": "#7570b3", "pool": "#e7298a"}


def plot_umap(coords: Tensor, dominant: list[str], share: Tensor, branch: str, layer: str, paths) -> None:
    """Two PNGs: coloured by dominant branch; coloured by ``branch``'s share (``pos``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, col in BRANCH_COLOURS.items():
        sel = [i for i, d in enumerate(dominant) if d == name]
        ax.scatter(coords[sel, 0], coords[sel, 1], s=4, c=col, label=name)
    ax.set_title(f"{layer}: UMAP of decoder vectors, dominant branch (q <= 0.01; else none)")
    ax.legend(markerscale=3)
    fig.savefig(paths[0], dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.6, 5))
    sc = ax.scatter(coords[:, 0], coords[:, 1], s=4, c=share, cmap="viridis")
    fig.colorbar(sc, label=f"{branch} share ||relu(d[b])|| / ||relu(d)||")
    ax.set_title(f"{layer}: UMAP, {branch} share")
    fig.savefig(paths[1], dpi=90)
    plt.close(fig)


def plot_umap_categories(coords: Tensor, categories: list[str | None], layer: str, path, untrained: bool) -> None:
    """The UMAP coloured by the top-level category of each feature's label (grey: no label), as Gorton's Figs 5-6."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.wordnet import CATEGORY_COLOURS, NO_LABEL_COLOUR

    fig, ax = plt.subplots(figsize=(5.4, 5))
    groups = [("no label", NO_LABEL_COLOUR, [i for i, c in enumerate(categories) if not c])]
    for name, col in CATEGORY_COLOURS.items():
        groups.append((name, col, [i for i, c in enumerate(categories) if c == name]))
    for name, col, sel in groups:
        if sel:
            ax.scatter(coords[sel, 0], coords[sel, 1], s=4, c=col, label=f"{name} ({len(sel)})")
    title = f"{layer}: UMAP, label category"
    ax.set_title(title + (" (UNTRAINED weights)" if untrained else ""), fontsize=9)
    ax.legend(markerscale=3, fontsize=7)
    fig.savefig(path, dpi=90)
    plt.close(fig)
