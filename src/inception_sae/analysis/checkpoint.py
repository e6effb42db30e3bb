"""Resumable analysis: the streaming state saved as safetensors + a small JSON cursor.

A checkpoint records which pass is running and the position in the image list
up to which that pass has consumed images; the passes read images in a fixed
order, so resuming skips exactly those. It is only used when its fingerprint
(the inputs that change the numbers) matches the current run, and removed when
the analysis finishes. The cursor names its tensors file and is replaced only
after that file is complete (:func:`inception_sae.checkpoint.save`), so a kill at
any instant leaves a matching pair.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import checkpoint
from .examples import Family
from .streaming import FeatureStats, Keeper

#: ``STATE_FILE`` is the tensors file of a cursor that names none.
STATE_FILE, CURSOR_FILE = "state.safetensors", "cursor.json"
#: Config fields that only affect rendering or derived outputs, not the streamed state.
NOT_FINGERPRINTED = ("out", "render_top", "render_intervals", "null_scale", "umap", "logit_effect", "workers",
                     "batch_size", "eval_report")  # fmt: skip


def fingerprint(cfg) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in NOT_FINGERPRINTED}


def family_tensors(prefix: str, fam: Family) -> dict[str, torch.Tensor]:
    s = fam.stats
    t = {"fire_pos": s.fire_pos, "fire_img": s.fire_img, "total": s.total, "vmax": s.vmax, "hist": s.hist,
         "top_score": fam.top.score, "top_image": fam.top.image, "top_pos": fam.top.pos, "top_value": fam.top.value,
         "rng": fam.generator.get_state()}  # fmt: skip
    if fam.top.flag is not None:
        t["top_flag"] = fam.top.flag
    if fam.intervals is not None and fam.interval_counts is not None:
        k = fam.intervals
        t.update(iv_score=k.score, iv_image=k.image, iv_pos=k.pos, iv_value=k.value, iv_counts=fam.interval_counts)
        if k.flag is not None:
            t["iv_flag"] = k.flag
    return {f"{prefix}.{k}": v.contiguous() for k, v in t.items()}


def restore_family(prefix: str, fam: Family, t: dict[str, torch.Tensor], counts: dict) -> None:
    g = {k.split(".", 1)[1]: v for k, v in t.items() if k.startswith(prefix + ".")}
    fam.stats = FeatureStats(counts["positions"], counts["images"], g["fire_pos"], g["fire_img"], g["total"],
                             g["vmax"], g["hist"])  # fmt: skip
    fam.top = Keeper(g["top_score"], g["top_image"], g["top_pos"], g["top_value"], g.get("top_flag"))
    fam.generator.set_state(g["rng"])
    if "iv_score" in g:
        fam.intervals = Keeper(g["iv_score"], g["iv_image"], g["iv_pos"], g["iv_value"], g.get("iv_flag"))
        fam.interval_counts = g["iv_counts"]


def matches_state(state, t: dict[str, torch.Tensor]) -> bool:
    """Whether the saved tensors hold every family this run keeps (a checkpoint of older code may not)."""
    if (state.features.top.flag is not None) != ("features.top_flag" in t):
        return False
    if state.train is not None:
        return "train.top_score" in t and tuple(t["train.top_score"].shape) == tuple(state.train.top.score.shape)
    return True


def save(folder: Path, state, pass_no: int, next_pos: int, skips, fp: dict) -> None:
    """Write the state's tensors to a new file, then atomically point the cursor at it; remove older files."""
    folder.mkdir(parents=True, exist_ok=True)
    t = {**family_tensors("features", state.features), **family_tensors("neurons", state.neurons)}
    t.update(chan_sq=state.chan_sq, act_sum=state.act_sum, image_class=state.image_class, seen=state.seen)
    for name, cc in state.concepts.items():
        t.update(cc.tensors(f"concepts.{name}"))
    if state.train is not None:
        t.update(family_tensors("train", state.train))  # statistics and examples on the training positions
        t["train_intervals"] = state.train_intervals
    cursor = {"pass": pass_no, "next": next_pos, "fingerprint": fp, "skips": skips.to_dict(), "timings": state.timings,
              "counts": {n: {"positions": f.stats.positions, "images": f.stats.images}
                         for n, f in (("features", state.features), ("neurons", state.neurons))}}  # fmt: skip
    if state.train_stats is not None:
        cursor["counts"]["train"] = {"positions": state.train_stats.positions, "images": state.train_stats.images}
    name = f"state-{pass_no}-{next_pos:09d}.safetensors"
    checkpoint.save(folder, name, t, cursor, pointer=CURSOR_FILE, stale="state*.safetensors*", indent=None)


def load(folder: Path, state, skips, fp: dict) -> tuple[int, int]:
    """Restore ``state`` from ``folder`` if it holds a matching checkpoint; (pass, next position) to resume at."""
    cursor = checkpoint.read_pointer(folder, CURSOR_FILE)
    if cursor is None or cursor.get("fingerprint") != fp:
        return 1, 0
    t = checkpoint.read_tensors(folder / cursor.get(checkpoint.TENSORS_KEY, STATE_FILE))
    if t is None or not matches_state(state, t):
        return 1, 0
    for name, fam in (("features", state.features), ("neurons", state.neurons)):
        restore_family(name, fam, t, cursor["counts"][name])
    state.chan_sq, state.act_sum, state.image_class, state.seen = (
        t["chan_sq"],
        t["act_sum"],
        t["image_class"],
        t["seen"],
    )
    state.concept_tensors = {k: v for k, v in t.items() if k.startswith("concepts.")}
    if state.train is not None:
        restore_family("train", state.train, t, cursor["counts"]["train"])
        state.train_intervals = t["train_intervals"]
    state.timings.update(cursor["timings"])
    for reason, n in cursor["skips"]["by_reason"].items():
        skips.counts[reason] += n
    skips.examples.update(cursor["skips"]["examples"])
    return int(cursor["pass"]), int(cursor["next"])
