"""The ``quality`` section of ``eval.json``: absorption, sparse probing, seed stability and L0 advice of one SAE.

All four are computed on the rows the ``store`` section evaluates (the held-out rows when the store is the
training store):

- **absorption** and **probing** on *per-image* codes: each image's code is the maximum of its rows' codes
  (over positions and views), labelled with the image's class (its ImageNet wnid, from the path); the concepts
  are WordNet parents (:data:`.absorption.DEFAULT_PARENTS`). Without class labels both say "skipped: no labels".
- **stability** against every ``--sibling`` SAE of the same shape and k (another seed), on the rows themselves.
- **l0** from the SAE and its siblings of other k (one per k): FVU and L0 on the same rows, and the elbow
  advice.
"""

from __future__ import annotations

from pathlib import Path, PurePath

import numpy as np
import torch

from ...errors import UserError
from ..measure import evaluate_vectors
from ..model import TopKSAE
from .absorption import DEFAULT_PARENTS, wordnet_absorption
from .l0 import l0_advice
from .probing import sparse_probe
from .stability import dense_codes, seed_stability

#: Share of the rows' images that must carry a class label for absorption and probing to run.
MIN_LABELLED = 0.5


def image_classes(store, images: np.ndarray) -> np.ndarray:
    """Class index (-1: unknown) of each of the store's ``images`` (indices into ``store.images``)."""
    from ...data.images import wnid_of
    from ...data.labels import load_labels

    labels = load_labels()
    index = {w: i for i, w in enumerate(labels.wnids) if w}
    ids = store.images
    out = np.full(len(images), -1, np.int64)
    for j, i in enumerate(images.tolist()):
        w = wnid_of(PurePath(ids[i])) if 0 <= i < len(ids) else None
        out[j] = index.get(w, -1) if w else -1
    return out


def per_image_codes(sae: TopKSAE, vectors, image: np.ndarray, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(images (u,), codes (u, m)): the distinct images of the rows and each one's max code over its rows."""
    images, inverse = np.unique(image, return_inverse=True)
    out = torch.zeros(len(images), sae.d_sae)
    inv = torch.as_tensor(inverse)
    for start in range(0, len(image), batch_size):
        x = torch.as_tensor(np.asarray(vectors[start : start + batch_size]), dtype=torch.float32)
        z = dense_codes(sae, torch.nan_to_num(x))
        idx = inv[start : start + len(x)][:, None].expand_as(z)
        out.scatter_reduce_(0, idx, z, reduce="amax")
    return images, out.numpy()


def labelled_sections(sae: TopKSAE, store, rows: tuple[int, int], vectors, seed: int) -> dict:
    """``absorption`` and ``probing`` on per-image codes, or why they were skipped."""
    from ...data.wordnet import load_hierarchy

    image = np.asarray(store.image_index(np.arange(*rows)))
    known = image >= 0
    if not known.any():
        return {"absorption": {"skipped": "no labels: the rows record no image"},
                "probing": {"skipped": "no labels: the rows record no image"}}  # fmt: skip
    images, codes = per_image_codes(sae, vectors[np.flatnonzero(known)] if not known.all() else vectors,
                                    image[known])  # fmt: skip
    classes = image_classes(store, images)
    labelled = float((classes >= 0).mean())
    if labelled < MIN_LABELLED:
        why = f"skipped: no labels ({labelled:.0%} of {len(images)} images have a class from their path)"
        return {"absorption": {"skipped": why}, "probing": {"skipped": why}}
    hier = load_hierarchy()
    on = {"images": len(images), "labelled_images": int((classes >= 0).sum()), "rows": int(known.sum()),
          "codes": "per image: max over its rows"}  # fmt: skip
    absorption = {**on, **wordnet_absorption(codes, classes, hier, seed=seed)}
    keep = classes >= 0
    probes = []
    for wnid, name in DEFAULT_PARENTS:
        y = np.isin(classes[keep], hier.covers.get(wnid, []))
        probes.append({"concept": name, "wnid": wnid, "positive": int(y.sum()),
                       **sparse_probe(codes[keep], y, seed=seed)})  # fmt: skip
    return {"absorption": absorption, "probing": {**on, "concepts": probes}}


def load_sibling(path: Path, sae: TopKSAE, device: str) -> TopKSAE:
    other = TopKSAE.load(path, device=device)
    if other.d_in != sae.d_in or (other.layer and sae.layer and other.layer != sae.layer):
        raise UserError(f"sibling {path} is an SAE of {other.layer or '?'} (d={other.d_in}), "
                        f"not of {sae.layer or '?'} (d={sae.d_in})")  # fmt: skip
    return other


def quality_section(sae: TopKSAE, sae_path, store, rows: tuple[int, int], siblings=(), device: str = "cpu",
                    seed: int = 0) -> dict:  # fmt: skip
    """The ``quality`` section (module docstring) on store rows ``[start, end)``."""
    vectors = np.asarray(store.vectors[rows[0] : rows[1]], dtype=np.float32)
    out: dict = {"rows": list(rows)}
    out.update(labelled_sections(sae, store, rows, vectors, seed))
    sibs = [(Path(p), load_sibling(Path(p), sae, device)) for p in siblings]
    same = [(p, s) for p, s in sibs if s.k == sae.k and s.d_sae == sae.d_sae]
    out["stability"] = (
        {"siblings": [{"sae": str(p), **seed_stability(sae, s, vectors, seed=seed)} for p, s in same]}
        if same else {"skipped": "no sibling SAE of the same k and width (give --sibling DIR)"}
    )  # fmt: skip
    points, ks = [], set()
    for p, s in [(Path(sae_path), sae), *sibs]:  # one SAE per k: the same-k siblings are for stability
        if s.k in ks:
            continue
        ks.add(s.k)
        ev = evaluate_vectors(s, vectors, device=device)
        points.append({"sae": str(p), "k": s.k, "l0": ev.l0, "fvu": ev.fvu, "rows": ev.n})
    out["l0"] = l0_advice(points)
    return out
