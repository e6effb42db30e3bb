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


class UmapJob:
    """:func:`umap_coords` on a background thread, started before the image passes and collected after them.

    UMAP reads only the decoder, so it need not wait for the images; most of its cost on small inputs is
    umap-learn's numba compilation (8-15 s per process on a 2-core CPU, 1 s to fit 512 rows once compiled),
    which then overlaps the passes instead of following them. A thread rather than a process keeps the compiled
    code for the next layer of the same run.
    """

    def __init__(self, W_dec: Tensor, seed: int = 0) -> None:
        import threading

        self._result: Tensor | None = None
        self._error: BaseException | None = None
        W = W_dec.detach().float().cpu().clone()
        self._thread = threading.Thread(target=self._run, args=(W, seed), name="umap", daemon=True)
        self._thread.start()

    def _run(self, W: Tensor, seed: int) -> None:
        try:
            self._result = umap_coords(W, seed)
        except BaseException as e:  # re-raised in the caller's thread by result()
            self._error = e

    def result(self) -> Tensor | None:
        """The coordinates (None when umap-learn is missing); an error in the thread is raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


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


def fit_title(fig, ax, text: str, fontsize: float = 10) -> None:
    """Set ``ax``'s title, wrapped onto as many lines as it needs to lie inside ``fig`` once the figure is laid out."""
    import textwrap

    title = ax.set_title(text, fontsize=fontsize)
    chars = len(text)
    while True:
        fig.tight_layout()
        fig.canvas.draw()
        box, t = fig.bbox, title.get_window_extent()
        if (box.x0 <= t.x0 and t.x1 <= box.x1 and t.y1 <= box.y1) or chars <= 12:
            return
        chars = int(chars * 0.85)
        title.set_text("\n".join(textwrap.wrap(text, chars)))


def umap_figures(coords: Tensor, dominant: list[str], share: Tensor, branch: str, layer: str, untrained: bool = False):
    """The two figures of :func:`plot_umap` (not saved): coloured by dominant branch; by ``branch``'s share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, col in BRANCH_COLOURS.items():
        sel = [i for i, d in enumerate(dominant) if d == name]
        ax.scatter(coords[sel, 0], coords[sel, 1], s=4, c=col, label=name)
    ax.legend(markerscale=3)
    mark = " (UNTRAINED weights)" if untrained else ""
    fit_title(fig, ax, f"{layer}: UMAP of decoder vectors, dominant branch (q <= 0.01; else none){mark}")
    fig2, ax = plt.subplots(figsize=(5.6, 5))
    sc = ax.scatter(coords[:, 0], coords[:, 1], s=4, c=share, cmap="viridis")
    fig2.colorbar(sc, label=f"{branch} share ||relu(d[b])|| / ||relu(d)||")
    fit_title(fig2, ax, f"{layer}: UMAP, {branch} share{mark}")
    return fig, fig2


def plot_umap(
    coords: Tensor, dominant: list[str], share: Tensor, branch: str, layer: str, paths, untrained: bool = False
) -> None:
    """Two PNGs: coloured by dominant branch; coloured by ``branch``'s share (``pos``)."""
    import matplotlib.pyplot as plt

    for fig, path in zip(umap_figures(coords, dominant, share, branch, layer, untrained), paths, strict=True):
        fig.savefig(path, dpi=90)
        plt.close(fig)


def umap_category_figure(coords: Tensor, categories: list[str | None], layer: str, untrained: bool):
    """The figure of :func:`plot_umap_categories` (not saved)."""
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
    ax.legend(markerscale=3, fontsize=7)
    title = f"{layer}: UMAP, label category"
    fit_title(fig, ax, title + (" (UNTRAINED weights)" if untrained else ""), fontsize=9)
    return fig


def plot_umap_categories(coords: Tensor, categories: list[str | None], layer: str, path, untrained: bool) -> None:
    """The UMAP coloured by the top-level category of each feature's label (grey: no label), as Gorton's Figs 5-6."""
    import matplotlib.pyplot as plt

    fig = umap_category_figure(coords, categories, layer, untrained)
    fig.savefig(path, dpi=90)
    plt.close(fig)
