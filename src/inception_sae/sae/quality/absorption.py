"""Feature absorption on a hierarchy (the idea of Chanin et al. 2024, "A is for Absorption", 2409.14507).

A parent concept (WordNet "dog": the union of its descendant classes) is *absorbed* when, on an input that
has it, the latent that stands for the parent stays silent and a latent specific to the input's child
(one dog breed) fires instead: the child latent's decoder carries the parent direction, so reconstruction
is fine but the parent latent has a hole exactly where the child latent fires.

Definition (:func:`absorption`), on codes ``Z`` (n, m) (firing: ``Z > 0``), a parent label and a child label
per input, with the inputs split at random into a *fit* half and a *measure* half:

1. On the fit half, latent j is **specific to child c** when it fires on at least ``min_child_fires`` inputs
   of child c and at least ``specificity`` of all inputs where j fires (parent-positive or not) are of child c.
2. On the fit half, the **parent latent** is the latent with the highest F1 for the parent label (firing vs
   parent-positive) among those specific to no child and with at least ``PARENT_PRECISION`` of their firings
   on parent-positive inputs; when none qualifies there is no parent latent (it is silent everywhere).
3. On the measure half, among parent-positive inputs that carry a child label (``n``), the **absorption
   rate** is the share on which the parent latent does not fire and some latent specific to the input's
   own child does. Its 95% interval is Wilson's; ``missed`` is the share where the parent latent is silent
   at all (absorbed or simply missed), so ``absorbed / missed`` is the share of the parent latent's misses
   that a child latent takes.

Choosing the latents on one half and counting on the other keeps the count free of the selection. An
oracle dictionary (one latent per planted feature) scores 0; one whose child latents carry the parent and
whose parent latent fires only without a child scores 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .intervals import share

SPECIFICITY = 0.8  #: share of a latent's firings that must fall on one child for it to be specific to that child
MIN_CHILD_FIRES = 3  #: fit inputs of the child a specific latent must fire on
PARENT_PRECISION = 0.5  #: share of the parent latent's firings that must fall on parent-positive inputs
DEFINITION = (
    "share of parent-positive inputs (measure half) on which the parent latent (best F1 for the parent on the fit "
    f"half, among latents specific to no child with >= {PARENT_PRECISION:g} of their firings on the parent) is "
    "silent and a latent specific to the input's own child fires "
    f"(specific: >= {SPECIFICITY:g} of its fit-half firings on that child, on >= {MIN_CHILD_FIRES} of them)"
)


@dataclass
class Absorption:
    """One parent concept's absorption (see the module docstring)."""

    concept: str
    parent_latent: int  #: the latent chosen for the parent on the fit half (-1: none)
    parent_f1: float  #: its F1 for the parent label on the fit half
    absorbed: dict  #: share() of measured inputs absorbed: rate, Wilson interval, n, count
    missed: dict  #: share() of measured inputs on which the parent latent is silent
    children: int  #: children with parent-positive inputs
    children_with_latent: int  #: of them, those with at least one specific latent
    specific_latents: int  #: latents specific to some child
    fit_inputs: int  #: inputs of the fit half (all labels)
    parent_positive_fit: int  #: parent-positive inputs of the fit half

    def to_dict(self) -> dict:
        return asdict(self)


def specific_latents(fires: np.ndarray, child: np.ndarray, n_children: int, specificity: float = SPECIFICITY,
                     min_fires: int = MIN_CHILD_FIRES) -> np.ndarray:  # fmt: skip
    """(n_children, m) bool: latent j is specific to child c (step 1 of the definition)."""
    has = child >= 0
    onehot = np.zeros((int(has.sum()), n_children), np.float32)
    onehot[np.arange(len(onehot)), child[has]] = 1
    per_child = onehot.T @ fires[has].astype(np.float32)  # (C, m) firings on each child's inputs
    total = fires.sum(0).astype(np.float32)  # every input, parent-positive or not
    return (per_child >= min_fires) & (per_child >= specificity * np.maximum(total, 1))


def f1_per_latent(fires: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """(m,) F1 of each latent's firing as a classifier of ``positive``."""
    tp = fires[positive].sum(0).astype(float)
    fp = fires[~positive].sum(0).astype(float)
    fn = positive.sum() - tp
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def absorption(codes: np.ndarray, parent: np.ndarray, child: np.ndarray, concept: str = "parent", *,
               specificity: float = SPECIFICITY, min_child_fires: int = MIN_CHILD_FIRES,
               seed: int = 0) -> Absorption:  # fmt: skip
    """Absorption rate of one parent (module docstring) from codes (n, m), ``parent`` (n,) bool and
    ``child`` (n,) int labels (child index 0..C-1 on parent-positive inputs, -1 elsewhere)."""
    fires = np.asarray(codes) > 0
    parent, child = np.asarray(parent, bool), np.asarray(child).astype(np.int64)
    child = np.where(parent, child, -1)
    n_children = int(child.max()) + 1 if (child >= 0).any() else 0
    order = np.random.default_rng(seed).permutation(len(fires))
    fit, meas = order[: len(order) // 2], order[len(order) // 2 :]
    spec = specific_latents(fires[fit], child[fit], n_children, specificity, min_child_fires)
    f1 = f1_per_latent(fires[fit], parent[fit])
    on_parent = fires[fit][parent[fit]].sum(0) / np.maximum(fires[fit].sum(0), 1)
    f1[spec.any(0) | (on_parent < PARENT_PRECISION)] = -1  # a child's latent, or one not about the parent
    p = int(np.argmax(f1)) if f1.size and f1.max() > 0 else -1
    rows = meas[child[meas] >= 0]
    silent = ~fires[rows, p] if p >= 0 else np.ones(len(rows), bool)
    own = (fires[rows] & spec[child[rows]]).any(1) if n_children else np.zeros(len(rows), bool)
    present = np.unique(child[child >= 0])
    return Absorption(concept, p, float(max(f1[p], 0.0)) if p >= 0 else 0.0,
                      share(int((silent & own).sum()), len(rows)), share(int(silent.sum()), len(rows)),
                      len(present), int(spec[present].any(1).sum()), int(spec.any(0).sum()), len(fit),
                      int(parent[fit].sum()))  # fmt: skip


#: WordNet parents measured by default: broad, visually coherent groups of ImageNet classes.
DEFAULT_PARENTS: tuple[tuple[str, str], ...] = (
    ("n02084071", "dog"), ("n01503061", "bird"), ("n02120997", "feline"), ("n01726692", "snake"),
    ("n02159955", "insect"), ("n02512053", "fish"), ("n02484322", "monkey"), ("n04576211", "wheeled vehicle"),
    ("n03800933", "musical instrument"), ("n13134947", "fruit"),
)  # fmt: skip
#: A parent is measured only with this many labelled inputs of it and two children among them.
MIN_POSITIVE = 20


def hierarchy_labels(image_class: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Parent (n,) bool and child (n,) index into the sorted classes present, for one WordNet node."""
    image_class = np.asarray(image_class)
    parent = np.isin(image_class, classes)
    present = np.unique(image_class[parent])
    child = np.full(len(image_class), -1, np.int64)
    child[parent] = np.searchsorted(present, image_class[parent])
    return parent, child


def wordnet_absorption(codes: np.ndarray, image_class: np.ndarray, hierarchy, parents=DEFAULT_PARENTS,
                       min_positive: int = MIN_POSITIVE, seed: int = 0) -> dict:  # fmt: skip
    """Absorption of each WordNet parent on per-input codes with class labels (-1: unlabelled, left out).

    Children are the parent's classes (``hierarchy.covers``): a dog is absorbed when the dog latent is silent
    and a latent specific to its breed fires. Parents with fewer than ``min_positive`` inputs, or fewer
    than two classes among them, are listed under ``skipped_parents`` with the reason.
    """
    labelled = np.asarray(image_class) >= 0
    codes, image_class = np.asarray(codes)[labelled], np.asarray(image_class)[labelled]
    out, skipped = [], []
    for wnid, name in parents:
        parent, child = hierarchy_labels(image_class, hierarchy.covers.get(wnid, []))
        n_pos, n_child = int(parent.sum()), int(child.max()) + 1 if parent.any() else 0
        if n_pos < min_positive or n_child < 2:
            skipped.append({"concept": name, "wnid": wnid, "inputs": n_pos, "classes": n_child,
                            "why": f"needs >= {min_positive} inputs over >= 2 classes"})  # fmt: skip
            continue
        out.append({"wnid": wnid, **absorption(codes, parent, child, name, seed=seed).to_dict()})
    return {"definition": DEFINITION, "inputs": int(labelled.sum()), "parents": out, "skipped_parents": skipped}
