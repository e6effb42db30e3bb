"""What an SAE folder records about the data it was trained on (``cfg.json`` ``data``), and how stages read it.

The numbers later stages compute on an SAE depend on how its training vectors were made: which positions
of each image (the harvest rule: top-norm N per image, norm-weighted, all; its seed), after which
preprocessing (resize, centre crop), from which model and layer. Training copies all of it from the
store's manifest into the SAE folder, so eval and analyze never reopen the store for it: at the papers'
scale a store is ~1 TB per layer and gets moved or deleted, and a guessed preprocessing would silently
change every splice-back number.

Readers call :func:`harvest_of`. Per field, the first source that has it wins: a flag the user gave, the
folder's ``data`` record, the manifest of the store its ``cfg.json`` names (SAE folders written before
the record; read once, and the output says so). A field the stage needs that no source gives is a
one-line refusal naming the flag that supplies it, never a default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..fsio import read_json

#: The ``cfg.json`` key of the record (docs/training.md, "The SAE folder").
DATA_KEY = "data"
#: The flags that supply what a foreign SAE folder does not record.
RULE_FLAG = "--harvest-rule"
PREPROCESS_FLAGS = "--resize and --crop"
RULE_FORMS = "top-norm:N[:SEED], norm-weighted:N:SEED, uniform:N:SEED, all, or none"
FROM_RECORD = "the SAE folder's cfg.json 'data'"


def _images(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The image source of a harvest as its manifest records it (None: it records none)."""
    keys = {"root": "image_root", "count": "num_images", "sha256": "images_sha256", "subset": "subset"}
    out = {k: manifest.get(m) for k, m in keys.items() if manifest.get(m) is not None}
    return out or None


def rule_of(manifest: dict[str, Any]) -> tuple[dict | None, str | None]:
    """A store's position rule and, where it has none, why (stores of given vectors select no positions)."""
    from ..data.sampling import harvest_rule

    if "sampling" not in manifest:
        return None, "a store of given vectors (ActivationStore.write): no harvest rule selected their positions"
    return harvest_rule(manifest), None


def held_out_images(store, rows: tuple[int, int] | list[int] | None) -> list[str]:
    """Sorted ids of the images whose vectors lie in the store's ``rows`` [start, end) (unknown ones left out)."""
    if not rows:
        return []
    names = store.images
    index = np.unique(store.image_index(np.arange(int(rows[0]), int(rows[1]))))
    return sorted(names[i] for i in index if 0 <= i < len(names))


def store_record(store, held_out: tuple[int, int] | None = None) -> dict[str, Any]:
    """The ``data`` record of an SAE trained on the activation store ``store`` minus its ``held_out`` rows.

    The held-out rows' image ids are kept so that eval's splice-back can still prefer images training
    never saw once the store is gone.
    """
    m = store.manifest
    rule, reason = rule_of(m)
    return {
        "source": "store",
        "layer": store.layer,
        "model": m.get("model"),
        "rule": rule,
        **({"rule_reason": reason} if reason else {}),
        "views": m.get("views"),
        "preprocess": m.get("preprocess"),
        "images": _images(m),
        "store": {
            "path": str(store.path),
            "fingerprint": store.fingerprint,
            "vectors": len(store),
            "dtype": m.get("dtype"),
            "created": m.get("created"),
        },
        "held_out": {"rows": list(held_out), "images": held_out_images(store, held_out)} if held_out else None,
    }


def stream_record(source, images: str | Path, model_identity: str) -> dict[str, Any]:
    """The ``data`` record of an SAE trained on vectors streamed from ``images`` (a :class:`StreamSource`)."""
    ds = source.dataset
    return {
        "source": "stream",
        "layer": source.layer,
        "model": model_identity,
        "rule": {"sampling": source.sampling, "per_image": int(source.per_image), "seed": int(source.seed)},
        "views": 1,
        "preprocess": ds.preprocess.to_dict(),
        "images": {"root": str(Path(images).resolve()), "count": len(ds)},
        "store": None,
    }


def parse_rule(text: str) -> dict | None:
    """``--harvest-rule`` as a rule dict (``none``: None, no training positions)."""
    from ..data.sampling import SAMPLINGS

    head, *rest = text.strip().split(":")
    if head == "none" and not rest:
        return None
    if head == "all" and not rest:
        return {"sampling": "all", "per_image": 0, "seed": 0}
    try:
        if head not in SAMPLINGS or head == "all" or not 1 <= len(rest) <= 2:
            raise ValueError
        per_image, seed = int(rest[0]), int(rest[1]) if len(rest) == 2 else None
        if per_image < 1 or (seed is None and head != "top-norm"):
            raise ValueError
    except ValueError:
        raise UserError(f"{RULE_FLAG} {text!r}: give {RULE_FORMS}") from None
    return {"sampling": head, "per_image": per_image, "seed": seed or 0}


@dataclass(frozen=True)
class Harvest:
    """How an SAE's training vectors were made, as a stage needs it, and where each part was read."""

    rule: dict | None  #: sampling, per_image, seed (data.sampling.harvest_rule); None: no rule (see rule_reason)
    preprocess: dict | None  #: resize, crop (and the pixel scaling); None: not known
    rule_from: str | None  #: where ``rule`` was read (None: nowhere)
    preprocess_from: str | None  #: where ``preprocess`` was read (None: nowhere)
    rule_reason: str | None = None  #: why ``rule`` is None
    store: dict | None = None  #: the training store's record (path, fingerprint, vectors...); None: none recorded
    held_out: dict | None = None  #: held-out store ``rows`` and their ``images`` (ids); None: none recorded
    images: dict | None = None  #: the harvested images' ``root``, ``count``, ``sha256``; None: not recorded

    @property
    def image_root(self) -> str | None:
        """The folder (or .txt list) the training images came from, if recorded."""
        return (self.images or {}).get("root")

    @property
    def crop(self) -> int | None:
        """The harvest's centre-crop side (None: not known)."""
        return int(self.preprocess["crop"]) if self.preprocess and self.preprocess.get("crop") is not None else None

    def preprocessing(self):
        """The harvest's :class:`~inception_sae.data.images.Preprocess` (call only when ``preprocess`` is known)."""
        from ..data.images import Preprocess

        return Preprocess(int(self.preprocess["resize"]), int(self.preprocess["crop"]))

    def to_dict(self) -> dict[str, Any]:
        """What an output says about the harvest it replays."""
        out = {"rule": self.rule, "preprocess": self.preprocess,
               "from": {"rule": self.rule_from, "preprocess": self.preprocess_from}}  # fmt: skip
        return {**out, "rule_reason": self.rule_reason} if self.rule_reason else out


def recorded(meta: dict[str, Any]) -> tuple[dict | None, str | None, str]:
    """The folder's record, where it was read, and (when there is none) why, in words.

    An SAE folder from before the record names its store in ``store``: that store is read instead, once.
    """
    rec = meta.get(DATA_KEY)
    if isinstance(rec, dict):
        return rec, FROM_RECORD, ""
    path = meta.get("store")
    if not path:
        return None, None, "no 'data' record and no training store"
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return None, None, f"no 'data' record, and its training store {path} is gone"
    held = (meta.get("training") or {}).get("held_out_rows")
    rec = _old_store_record(str(path), manifest.stat().st_mtime_ns, tuple(held) if held else None)
    if rec is None:
        return None, None, f"no 'data' record, and {manifest} is not a store manifest"
    origin = f"the manifest of the training store {path}, read once: this SAE folder predates cfg.json 'data'"
    return rec, origin, ""


@functools.lru_cache(maxsize=8)
def _old_store_record(path: str, mtime_ns: int, held: tuple[int, int] | None) -> dict | None:
    """The record an SAE folder from before cfg.json ``data`` would have had, read from its store once."""
    from ..data.store import ActivationStore

    manifest = read_json(Path(path) / "manifest.json")
    return store_record(ActivationStore(Path(path), manifest), held) if isinstance(manifest, dict) else None


def harvest_of(meta: dict[str, Any], where: str | Path, *, need: tuple[str, ...] = (), rule: str | None = None,
               resize: int | None = None, crop: int | None = None) -> Harvest:  # fmt: skip
    """The harvest behind the SAE whose ``cfg.json`` is ``meta``; refuses when a part in ``need`` is unknown.

    ``need`` holds ``"rule"`` and/or ``"preprocess"``. The flags ``rule`` (``--harvest-rule``), ``resize``
    and ``crop`` replace what the folder records; ``where`` names the folder in messages.
    """
    rec, origin, why = recorded(meta)
    rec = rec or {}
    has_rule = "rule" in rec
    out_rule, rule_from, reason = rec.get("rule"), origin if has_rule else None, rec.get("rule_reason")
    if rule is not None:
        out_rule, rule_from, has_rule = parse_rule(rule), RULE_FLAG, True
        reason = None if out_rule else f"{RULE_FLAG} none: the rule is not known, so no training-position numbers"
    pre, pre_from = rec.get("preprocess"), origin if rec.get("preprocess") else None
    if (resize is None) != (crop is None):
        raise UserError(f"give both {PREPROCESS_FLAGS} (the harvest's short side and centre crop), or neither")
    if resize is not None and crop is not None:  # both or neither, checked above
        from ..data.images import Preprocess

        pre, pre_from = Preprocess(int(resize), int(crop)).to_dict(), PREPROCESS_FLAGS
    missing = []
    if "rule" in need and not has_rule:
        missing.append(("the harvest rule (which positions training saw)", f"{RULE_FLAG} ({RULE_FORMS})"))
    if "preprocess" in need and not pre:
        why = why or "its training vectors were given, not harvested from images"
        missing.append(("the harvest's image preprocessing (resize, crop)", PREPROCESS_FLAGS.replace(" and ", "/")))
    if missing:
        what, flags = " or ".join(m[0] for m in missing), " and ".join(m[1] for m in missing)
        raise UserError(f"SAE folder {where} does not record {what}: {why}; give {flags}")
    reason = reason if out_rule is None else None
    return Harvest(out_rule, pre or None, rule_from, pre_from, reason, rec.get("store"), rec.get("held_out"),
                   rec.get("images"))  # fmt: skip
