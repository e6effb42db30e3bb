"""The evaluation stage shared by ``inception-sae eval`` and ``run``: one function, one report.

:func:`evaluate` measures an SAE on

- **store rows**: FVU, L0, dead/dense fractions on the held-out range that
  training never read (``cfg.json`` ``training.held_out_rows``) when the store is
  the training store, else on the store's last rows, marked ``held_out: false``;
- **splice-back** on a seeded, class-spread subset of images (preferring images
  of the held-out rows), at the preprocessing the store was harvested with, on two
  position sets: every position of the layer, and the positions the harvest rule
  selects (top-norm / norm-weighted / all): the distribution the SAE was trained on;
- **quality** on the same store rows (:mod:`.quality.panel`): absorption and sparse probing on per-image codes
  when the images have class labels, seed stability against sibling SAEs, and L0 advice from the SAE and its
  siblings of other k.

Splice-back reads the harvest from the SAE folder (``cfg.json`` ``data``, see
:mod:`.provenance`), never from the store, so moving or deleting the store changes
none of its numbers; only the store section needs the store itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import atomic_write_json, json_or_none, read_json
from ..models.choice import Model
from ..models.layers import layer_info
from ..settings import Settings, values
from .measure import check_dims, evaluate_vectors, splice_both
from .model import TopKSAE
from .provenance import DATA_KEY, Harvest, harvest_of


@dataclass
class EvalReport:
    """What ``eval.json`` holds (``store``, ``splice`` and ``quality`` are None when not evaluated)."""

    sae: str
    model: str | None
    untrained_weights: bool | None
    layer: str | None = None
    store: dict[str, Any] | None = None
    splice: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def write(self, path: str | Path) -> None:
        """``eval.json``, atomically: the file itself is the stage's completion marker."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict(), indent=2, default=float)

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        """``eval.json`` exists and parses to a report (a file cut short or emptied is not complete)."""
        return isinstance(json_or_none(path), dict)

    @classmethod
    def read(cls, path: str | Path) -> EvalReport:
        """The report written by :meth:`write`."""
        d = read_json(path)
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


def _same_path(a: Any, b: Any) -> bool:
    return bool(a) and bool(b) and Path(a).resolve() == Path(b).resolve()


def _store_record(sae: TopKSAE) -> dict[str, Any]:
    return (sae.meta.get(DATA_KEY) or {}).get("store") or {}


def training_store_path(sae: TopKSAE) -> str | None:
    """Where the SAE's training store was when it was trained (cfg.json ``data.store.path``, else ``store``)."""
    return _store_record(sae).get("path") or sae.meta.get("store")


def is_training_store(sae: TopKSAE, store) -> bool:
    """Whether ``store`` is the one the SAE was trained on: the same content where cfg.json records its
    fingerprint (so a moved store is still recognised), else the same path (SAE folders from before)."""
    fingerprint = _store_record(sae).get("fingerprint")
    if fingerprint:
        return fingerprint == store.fingerprint
    return _same_path(sae.meta.get("store"), store.path)


def eval_rows(sae: TopKSAE, store, max_vectors: int) -> tuple[tuple[int, int], bool, str]:
    """Rows ``[start, end)`` to evaluate, whether training never read them, and a note saying why."""
    held = (sae.meta.get("training") or {}).get("held_out_rows")
    same = is_training_store(sae, store)
    if same and held:
        start, end = int(held[0]), int(held[1])
        note = "held-out rows of the training store, never read in training"
        return (start, min(end, start + max_vectors)), True, note
    n = min(max_vectors, len(store))
    rows = (len(store) - n, len(store))
    if same:
        return rows, False, "the training store's last rows: training read them (it held nothing out)"
    if training_store_path(sae):
        return rows, False, f"the last rows of a store other than the training store ({training_store_path(sae)})"
    return rows, False, "the store's last rows; the SAE records no training store, so they may have been trained on"


def store_section(sae: TopKSAE, store, max_vectors: int, device: str) -> dict[str, Any]:
    """The ``store`` section of the report."""
    check_dims(sae, store.d, store.layer, f"store {store.path}")
    (start, end), held_out, note = eval_rows(sae, store, max_vectors)
    ev = evaluate_vectors(sae, store.vectors[start:end], device=device)
    return {"available": True, "path": str(store.path), "rows": [start, end], "held_out": held_out, "note": note,
            **ev.__dict__}  # fmt: skip


def recorded_store(sae: TopKSAE):
    """The training store at the place cfg.json records, if it is still there and still the same; and why not."""
    from ..data.store import ActivationStore

    path = training_store_path(sae)
    if not path:
        return None, "the SAE records no training store"
    if not (Path(path) / "manifest.json").is_file():
        return None, f"the training store {path} is not there (moved or deleted)"
    store = ActivationStore.open(path)
    if not is_training_store(sae, store):
        return None, f"{path} now holds another store than the one this SAE was trained on"
    return store, ""


def unavailable_section(sae: TopKSAE, why: str) -> dict[str, Any]:
    """The ``store`` section when the training store cannot be read: what is missing, in one line."""
    note = f"{why}: FVU, L0 and dead/dense on its held-out rows need it; give --store with its new place"
    return {"available": False, "path": training_store_path(sae), "note": note}


def _splice_images(images: Path, pre, max_images: int, seed: int, harvest: Harvest):
    """Dataset, chosen indices and the subset record; images of the held-out rows first when they are here.

    The held-out images come from cfg.json (``data.held_out.images``), so the subset is the same
    whether or not the store is still on disk.
    """
    from ..data.images import ImageDataset
    from ..data.subsets import spread_subset, subset_record

    ds = ImageDataset.from_path(images, pre)  # a missing or unreadable source is a UserError
    ids = [ds.image_id(i) for i in range(len(ds))]
    pool, source = list(range(len(ids))), "the image folder (training images may be among them)"
    held_ids = set((harvest.held_out or {}).get("images") or [])
    if held_ids and _same_path(harvest.image_root, images):
        in_held = [i for i, x in enumerate(ids) if x in held_ids]
        if in_held:
            pool, source = in_held, "images of the store's held-out rows (never trained on)"
    chosen = [pool[i] for i in spread_subset([ids[i] for i in pool], max_images, seed)]
    return ds, chosen, {**subset_record(ids, chosen, seed), "from": source, "ids": [ids[i] for i in chosen]}


def model_for(sae: TopKSAE, weights: str | None, device: str):
    """The network the SAE was trained on: its recorded random seed, or ``weights``."""
    from rich.console import Console

    from ..models.weights import load_model, parse_identity_seed

    identity = str(sae.meta.get("model") or "")
    seed = parse_identity_seed(identity)
    if weights is None and seed is not None:
        weights = "random"
    model = load_model(weights, seed=seed or 0, device=device)
    if identity and model.identity != identity:
        warning = f"[yellow]warning[/]: SAE trained on model {identity}, evaluating with {model.identity}"
        Console(stderr=True).print(warning)
    return model


def splice_section(sae: TopKSAE, model, images: Path, harvest: Harvest, *, max_images: int, batch_size: int,
                   seed: int, device: str) -> dict[str, Any]:  # fmt: skip
    """The ``splice`` section: every position, and the harvest rule's positions, at the harvest's preprocessing."""
    from ..data.images import iter_batches
    from ..data.sampling import describe_rule, training_mask

    layer = sae.layer
    assert layer is not None  # evaluate() refuses splice-back for an SAE that names no layer
    pre, rule = harvest.preprocessing(), harvest.rule
    ds, chosen, subset = _splice_images(images, pre, max_images, seed, harvest)

    def select(acts, idx):
        return training_mask(acts, rule, [ds.image_id(i) for i in idx])

    every, trained = splice_both(sae, model, layer, iter_batches(ds, batch_size, indices=chosen), device,
                                 select if rule else None)  # fmt: skip
    out: dict[str, Any] = {
        "positions": "all positions of the layer",
        **asdict(every[0]),
        "vectors": every[1].__dict__,
        "preprocess": {"resize": pre.resize, "crop": pre.crop},
        "harvest": harvest.to_dict(),
        "subset": subset,
    }
    if trained is not None and rule is not None:  # measured with the rule only
        out["training_positions"] = {
            "positions": f"the harvest rule's: {describe_rule(rule)} (the distribution the SAE was trained on)",
            "rule": rule,
            **asdict(trained[0]),
            "vectors": trained[1].__dict__,
        }
    else:
        out["training_positions_note"] = f"not measured: {harvest.rule_reason or 'no harvest rule'}"
    return out


@dataclass(frozen=True, kw_only=True)
class EvalSettings(Settings):
    """Evaluation of a trained SAE (``inception-sae eval``; ``run`` writes it to ``RUN/<layer>/eval.json``)."""

    max_vectors: int = 65536
    """store vectors for FVU, L0, dead/dense: the store's tail (at most 20%, cut at an image boundary), which training
    therefore never reads (``training.held_out_rows`` in the SAE's cfg.json)"""
    max_images: int = 64
    """images for splice-back, seeded and spread over the classes (0: skip splice-back)"""
    batch_size: int = 16
    """images per splice-back batch"""
    quality: bool = True
    """the quality panel on the store rows: absorption and probing (with class labels), seed stability and the
    L0 sweep (with sibling SAEs); docs/quality.md"""


@dataclass(frozen=True, kw_only=True)
class EvalConfig(EvalSettings, Model):
    """One evaluation: how (the settings), the SAE folder, what it is measured on, and the network."""

    sae: Path
    """SAE folder"""
    store: Path | None = None
    """activation store for FVU, L0, dead/dense (default: the training store cfg.json records, if still there)"""
    images: Path | None = None
    """images for splice-back (none: no splice-back)"""
    siblings: tuple[Path, ...] = ()
    """SAE folders of the same layer for the quality panel: same k = seed stability, any k = the L0 sweep"""
    harvest_rule: str | None = None
    """for an SAE folder that records none: the harvest's rule (top-norm:N[:SEED], all, none...)"""
    resize: int | None = None
    """for an SAE folder that records none: the harvest's short side"""
    crop: int | None = None
    """for an SAE folder that records none: the harvest's centre crop"""


def run(cfg: EvalConfig, model=None) -> EvalReport:
    """Evaluate the SAE of ``cfg`` (:func:`evaluate`); ``model`` is ``cfg``'s network when already loaded."""
    from ..data.store import ActivationStore

    sae = TopKSAE.load(cfg.sae, device=cfg.device)
    store = ActivationStore.read(cfg.store) if cfg.store is not None else None
    return evaluate(sae, cfg.sae, store=store, images=cfg.images, model=model, weights=cfg.weights, seed=cfg.seed,
                    device=cfg.device, siblings=cfg.siblings, harvest_rule=cfg.harvest_rule, resize=cfg.resize,
                    crop=cfg.crop, **values(cfg, EvalSettings))  # fmt: skip


def evaluate(
    sae: TopKSAE,
    sae_path: str | Path,
    *,
    store=None,
    images: str | Path | None = None,
    model=None,
    weights: str | None = None,
    max_vectors: int = EvalSettings.max_vectors,
    max_images: int = EvalSettings.max_images,
    batch_size: int = EvalSettings.batch_size,
    seed: int = 0,
    device: str = "cpu",
    harvest_rule: str | None = None,
    resize: int | None = None,
    crop: int | None = None,
    siblings: tuple[str | Path, ...] = (),
    quality: bool = EvalSettings.quality,
) -> EvalReport:
    """Evaluate ``sae`` on store rows and/or splice-back on ``images`` (see the module docstring).

    Without ``store`` the training store is read at the place cfg.json records, when it is still there;
    else the ``store`` section says it is unavailable. Splice-back takes the harvest's rule and
    preprocessing from the SAE folder (:mod:`.provenance`); ``harvest_rule``, ``resize`` and ``crop``
    supply them for a folder that records none. With ``quality`` the store rows also feed the quality panel
    (``siblings``: SAE folders of the same layer, for seed stability and the L0 sweep).
    """
    if store is None and images is None:
        raise UserError("give a store and/or images to evaluate on")
    report = EvalReport(str(sae_path), None, None, layer=sae.meta.get("layer"))
    splice = images is not None and max_images > 0
    harvest = None
    if splice:  # refuse before any work when the folder lacks what splice-back needs
        layer = sae.layer
        if not layer:
            raise UserError("the SAE's cfg.json names no layer; splice-back needs one")
        check_dims(sae, layer_info(layer).channels, layer, f"layer {layer}")
        harvest = harvest_of(sae.meta, sae_path, need=("rule", "preprocess"), rule=harvest_rule, resize=resize,
                             crop=crop)  # fmt: skip
    found = store
    if store is not None:
        report.store = store_section(sae, store, max_vectors, device)
    elif training_store_path(sae):
        found, why = recorded_store(sae)
        report.store = store_section(sae, found, max_vectors, device) if found else unavailable_section(sae, why)
    if quality and found is not None and report.store and report.store.get("available"):
        from .quality.panel import quality_section

        start, end = report.store["rows"]
        report.quality = quality_section(sae, sae_path, found, (start, end), siblings, device, seed)
    elif quality and siblings:
        raise UserError("--sibling needs store rows to compare on: give --store")
    if harvest is not None and images is not None:  # a harvest is read for splice-back, which needs images
        model = model if model is not None else model_for(sae, weights, device)
        report.splice = splice_section(sae, model, Path(images), harvest, max_images=max_images,
                                       batch_size=batch_size, seed=seed, device=device)  # fmt: skip
    if model is not None:
        report.model, report.untrained_weights = model.identity, model.identity.startswith("random:")
    else:
        report.model = sae.meta.get("model")
        report.untrained_weights = str(report.model or "").startswith("random:") if report.model else None
    return report
