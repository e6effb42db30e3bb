"""Harvest: images -> model -> activation vectors (+ provenance) -> an activation store.

Images are visited in a seeded random order (:func:`~.subsets.visit_order`), so
consecutive store rows come from images of many classes even when the folder
lists them class by class. One process, or one per GPU under ``torchrun``: rank
r takes visits r, r+world, ... of that order, writes its own shards and ledger, and rank 0 merges the
ledgers into ``manifest.json`` (live after each of its shards, and finally with
status ``complete``). Decoding runs in DataLoader workers and writing on a
background thread, so both overlap the forward pass. Rerunning the same command
resumes; a different one is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..fsio import atomic_write_json, read_json
from .distributed import DistEnv, barrier, process_group
from .harvest_bar import HarvestBar
from .harvest_config import HarvestConfig, HarvestPassConfig, HarvestResult, HarvestSettings
from .images import ImageDataset, Preprocess, collate_skipping, usable_workers
from .ledger import Ledger, Pending, ShardWriter, merge_skips
from .sampling import ViewDataset, gather_positions, item_seed, select_positions
from .store import COMPLETE, MANIFEST, new_manifest, now_iso, write_image_list
from .subsets import take_spread, visit_order

__all__ = ["HarvestConfig", "HarvestPassConfig", "HarvestResult", "HarvestSettings", "harvest", "harvest_layers",
           "run"]  # fmt: skip

#: Manifest keys that must match for a rerun to resume an existing store.
RECIPE_KEYS = (
    "layer", "d", "dtype", "model", "preprocess", "sampling", "per_image", "views", "seed",
    "image_root", "images_sha256", "num_images", "world", "order",
)  # fmt: skip


def open_images(cfg: HarvestConfig) -> tuple[ImageDataset, list[str], dict]:
    """The dataset (a class-spread subset of ``max_images``), its image ids and the subset's record."""
    dataset = ImageDataset.from_path(cfg.images, Preprocess(cfg.resize, cfg.crop))  # bad sources: a UserError
    subset = take_spread(dataset, cfg.max_images, cfg.seed)
    if not dataset.files:
        raise UserError(f"no images found under {cfg.images}")
    return dataset, [dataset.image_id(i) for i in range(len(dataset))], subset


def make_recipe(cfg: HarvestConfig, model_identity: str, ids: list[str], d: int, world: int) -> dict[str, Any]:
    """The manifest fields that define the harvest (see :data:`RECIPE_KEYS`)."""
    images_sha = hashlib.sha256("".join(f"{i}\n" for i in ids).encode()).hexdigest()
    return {
        "layer": cfg.layer,
        "d": d,
        "dtype": cfg.dtype,
        "model": model_identity,
        "preprocess": Preprocess(cfg.resize, cfg.crop).to_dict(),
        "sampling": cfg.sampling,
        "per_image": cfg.per_image,
        "views": cfg.views,
        "seed": cfg.seed,
        "image_root": str(Path(cfg.images).resolve()),
        "images_sha256": images_sha,
        "num_images": len(ids),
        "world": world,
        "order": "seeded-shuffle",  # images visited in visit_order(num_images, seed)
    }


def check_existing(root: Path, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """The existing manifest if it matches ``recipe``; a one-line refusal if it does not."""
    if not (root / MANIFEST).is_file():
        ours = ("parts", "shards", "images.txt")  # a run killed before its first manifest leaves these
        if root.exists() and any(p.name not in ours and not p.name.endswith(".tmp") for p in root.iterdir()):
            raise UserError(f"{root} exists and is not an activation store; choose a new --out folder")
        return None
    manifest = read_json(root / MANIFEST)
    # A finished store is the same harvest whatever the process count of the rerun.
    keys = [k for k in RECIPE_KEYS if not (k == "world" and manifest.get("status") == COMPLETE)]
    diff = [k for k in keys if json.dumps(manifest.get(k)) != json.dumps(recipe[k])]
    if diff:
        shown = "; ".join(f"{k}: store has {manifest.get(k)!r}, command has {recipe[k]!r}" for k in diff[:3])
        raise UserError(f"{root} holds a different harvest ({shown}); use a new --out folder or the same options")
    return manifest


def merge_manifest(root: Path, head: dict[str, Any], world: int, final: bool) -> dict[str, Any]:
    """Rebuild ``manifest.json`` from all ranks' ledgers (rank 0 only)."""
    ledgers = [read_json(Ledger.path(root, r)) for r in range(world) if Ledger.path(root, r).is_file()]
    shards = [s for led in sorted(ledgers, key=lambda x: x["rank"]) for s in led["shards"]]
    complete = final and len(ledgers) == world and all(led["done"] for led in ledgers)
    manifest = dict(head)
    manifest.update(
        status=COMPLETE if complete else "in_progress",
        count=sum(s["count"] for s in shards),
        images_done=sum(led["next"] for led in ledgers),
        skipped=merge_skips(ledgers),
        shards=shards,
        updated=now_iso(),
    )
    atomic_write_json(root / MANIFEST, manifest)
    return manifest


def harvest(cfg: HarvestConfig, env: DistEnv | None = None) -> HarvestResult:
    """Run (or resume) the harvest ``cfg`` on this process's share of the images."""
    return harvest_layers([cfg], env)[0]


def run(cfg: HarvestPassConfig, model=None, *, progress: bool = True) -> list[HarvestResult]:
    """Harvest (or resume) every layer of ``cfg`` in one pass over the images: one result per layer, in order.

    ``model`` is ``cfg``'s network when the caller has already loaded it (on the device this rank uses).
    """
    return harvest_layers(cfg.configs(progress), model=model)


#: Fields that may differ between the harvests of one pass over the images (everything else is shared).
PER_LAYER = ("layer", "out", "dtype", "shard_size", "per_image", "sampling")


@dataclass
class _Open:
    """One layer's store in a shared pass: its config, manifest head, ledger and pending vectors."""

    cfg: HarvestConfig
    root: Path
    head: dict[str, Any]
    ledger: Ledger
    start: int = 0  #: the ledger's position when this run began
    writer: ShardWriter | None = None
    pending: Pending | None = None


def harvest_layers(cfgs: list[HarvestConfig], env: DistEnv | None = None, model=None) -> list[HarvestResult]:
    """Harvest several layers in one pass: each image is decoded and run through the network once.

    The configs share the images, model, views and preprocessing (they may differ in :data:`PER_LAYER`); each
    layer gets its own store, resumed from its own ledger (a pass resumes at the earliest layer's position and
    writes each layer only from its own). ``model``: the configs' network, when already loaded.
    """
    from ..models.layers import spatial_layer_info
    from ..models.weights import load_model

    if not cfgs:
        return []
    base = cfgs[0]
    shared = lambda c: {k: v for k, v in asdict(c).items() if k not in PER_LAYER}  # noqa: E731
    for c in cfgs[1:]:
        diff = [k for k, v in shared(c).items() if shared(base)[k] != v]
        if diff:
            raise UserError(f"harvests of one pass must share {', '.join(diff)} ({base.layer} vs {c.layer})")
    outs = [Path(c.out).resolve() for c in cfgs]
    if len(set(outs)) < len(outs):
        raise UserError("each layer of one pass needs its own store folder")
    env = env or DistEnv.from_environ()
    dims = []
    for c in cfgs:
        try:
            dims.append(spatial_layer_info(c.layer, c.crop or 224).channels)
        except KeyError as e:
            raise UserError(e.args[0]) from e
    dataset, ids, subset = open_images(base)
    device = env.device(base.device)
    results: dict[int, HarvestResult] = {}
    with process_group(env, device):
        if model is None:
            model = load_model(base.weights, seed=base.seed, device=device)
        opened: list[tuple[int, _Open]] = []
        for j, (cfg, d) in enumerate(zip(cfgs, dims, strict=True)):
            recipe = make_recipe(cfg, model.identity, ids, d, env.world)
            root = Path(cfg.out)
            head = check_existing(root, recipe) if env.rank == 0 else None
            if head is None and env.rank == 0:
                root.mkdir(parents=True, exist_ok=True)
                write_image_list(root, ids)
                head = new_manifest(cfg.layer, d, cfg.dtype, {**recipe, "images_file": "images.txt", "subset": subset})
                atomic_write_json(root / MANIFEST, head)
            barrier(env)  # rank 0 has checked or created the store
            head = head or check_existing(root, recipe)
            assert head is not None
            if head.get("status") == COMPLETE:
                results[j] = HarvestResult(root, int(head["count"]), 0, head["skipped"]["total"], 0.0, True)
                continue
            key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
            ledger = Ledger.load_or_new(root, env.rank, key)
            ledger.clean_orphans(root)
            opened.append((j, _Open(cfg, root, head, ledger, start=ledger.next)))
        mine = visit_order(len(ids), base.seed)[env.rank :: env.world].tolist()
        todo = [o for _, o in opened if not o.ledger.done]
        t0 = time.perf_counter()
        if todo:
            for o in todo:
                root, head = o.root, o.head
                after = (lambda r=root, h=head: merge_manifest(r, h, env.world, final=False)) if env.rank == 0 else None
                o.writer = ShardWriter(root, o.ledger, after)
            _run(base, model, dataset, mine, todo, env)
        seconds = time.perf_counter() - t0
        for j, o in opened:
            barrier(env)
            manifest = merge_manifest(o.root, o.head, env.world, final=True) if env.rank == 0 else None
            barrier(env)
            manifest = manifest or read_json(o.root / MANIFEST)
            images = len(mine) - o.start if o in todo else 0
            results[j] = HarvestResult(o.root, int(manifest["count"]), images, manifest["skipped"]["total"], seconds,
                                       manifest["status"] == COMPLETE)  # fmt: skip
    return [results[j] for j in range(len(cfgs))]


def _run(cfg: HarvestConfig, model, dataset, mine: list[int], stores: list[_Open], env: DistEnv) -> None:
    """The image loop of one rank: decode (workers) -> one forward for every layer -> select -> write (threads).

    It starts at the earliest store's position; a store further on takes nothing from images before its own.
    """
    start = min(o.ledger.next for o in stores)
    todo = mine[start:]
    at = {img: start + j for j, img in enumerate(todo)}  # position of each image in this rank's order
    layers = list(dict.fromkeys(o.cfg.layer for o in stores))
    workers = usable_workers(cfg.workers)
    loader = torch.utils.data.DataLoader(
        ViewDataset(dataset, todo, cfg.views, cfg.seed),
        batch_size=cfg.batch_size,
        num_workers=workers,
        collate_fn=collate_skipping,  # each item is an image's (V, 3, S, S) views
        prefetch_factor=4 if workers else None,
        pin_memory=str(next(model.parameters()).device).startswith("cuda"),
    )
    for o in stores:
        o.pending = Pending(next=o.ledger.next)
    position = start
    counted = max(stores, key=lambda o: o.ledger.count)
    bar = HarvestBar(len(mine), start, counted.ledger.count, enabled=cfg.progress and env.rank == 0,
                       title="harvest " + "+".join(layers))  # fmt: skip
    try:
        with bar, torch.inference_mode():
            for views, idx, skipped in loader:
                n = len(idx) + len(skipped)
                acts = capture_views(model, views, layers) if views is not None else {}
                written = 0
                for o in stores:
                    assert o.pending is not None and o.writer is not None
                    if position + n <= o.ledger.next:
                        continue  # this store already holds the whole batch
                    for i, reason in skipped:
                        if at[i] >= o.ledger.next:
                            o.pending.skips[reason] += 1
                            o.pending.skip_examples.setdefault(reason, []).append(dataset.image_id(i))
                    if views is not None:
                        keep = [j for j, i in enumerate(idx) if at[i] >= o.ledger.next]
                        if keep:
                            sub = [idx[j] for j in keep]
                            a = acts[o.cfg.layer].unflatten(0, (len(idx), -1))[keep].flatten(0, 1)
                            ids = [dataset.image_id(i) for i in sub]
                            vecs, prov = select_vectors(a, sub, ids, cfg.views, o.cfg.per_image, o.cfg.sampling,
                                                        cfg.seed)  # fmt: skip
                            stored = vecs.to(getattr(torch, o.cfg.dtype)).cpu().numpy()
                            o.pending.vectors.append(stored)
                            o.pending.prov.append(prov)
                            o.pending.count += len(stored)
                            written += len(stored) if o is counted else 0
                    o.pending.next = position + n
                    if o.pending.count >= o.cfg.shard_size:
                        o.writer.submit(o.pending)
                        o.pending = Pending(next=position + n)
                position += n
                bar.advance(n, written)
            for o in stores:
                assert o.pending is not None and o.writer is not None
                o.writer.submit(o.pending)  # the tail, or just the final position and skips
    finally:
        for o in stores:
            if o.writer is not None:
                o.writer.close()
    for o in stores:
        o.ledger.done = True
        o.ledger.save(o.root)


def capture_views(model, views: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Activations (B*V, C, H, W) of every layer in one forward, for views (B, V, 3, S, S), uint8 or [0, 1]."""
    device = next(model.parameters()).device
    x = views.flatten(0, 1).to(device, non_blocking=True)  # (B*V, 3, S, S)
    if x.dtype == torch.uint8:  # as decoded; the same floats as images.to_tensor
        x = x.float().div_(255.0)
    return model.capture(x, layers)


def select_vectors(
    acts: torch.Tensor, idx: list[int], ids: list[str], V: int, per_image: int, sampling: str, seed: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Vectors (n, d) and provenance (n, 4) chosen from one layer's activations (B*V, C, H, W) of B images."""
    B = len(idx)
    W = acts.shape[-1]
    norms = acts.flatten(2).norm(dim=1)  # (B*V, H*W)
    seeds = [item_seed(seed, image_id, v) for image_id in ids for v in range(V)]
    pos = select_positions(norms, per_image, sampling, seeds)  # (B*V, k)
    vecs = gather_positions(acts, pos)  # (B*V, k, C)
    k = pos.shape[1]
    prov = np.empty((B * V, k, 4), dtype=np.int32)
    prov[..., 0] = np.repeat(np.asarray(idx, dtype=np.int32), V)[:, None]
    prov[..., 1] = np.tile(np.arange(V, dtype=np.int32), B)[:, None]
    prov[..., 2], prov[..., 3] = pos // W, pos % W
    return vecs.reshape(-1, vecs.shape[-1]), prov.reshape(-1, 4)


def harvest_batch(
    model, views: torch.Tensor, idx: list[int], ids: list[str], layer: str, per_image: int, sampling: str, seed: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Vectors (n, d) on the model's device and provenance (n, 4) for views (B, V, 3, S, S), uint8 or [0, 1].

    ``idx`` are the B images' indices and ``ids`` their ids (which seed the sampling).
    """
    acts = capture_views(model, views, [layer])[layer]
    return select_vectors(acts, idx, ids, views.shape[1], per_image, sampling, seed)


def config_dict(cfg: HarvestConfig) -> dict[str, Any]:
    """JSON-able config (for logs)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
