"""The streaming passes over images: statistics + top examples, intervals + concept labels, rendering.

Each pass runs the model to the SAE's layer (stopping early), encodes every
position with the SAE and reduces the codes to per-image maxima at once, so a
batch's state is (B x m) and the run's state is (m x capacity).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..data.images import ImageDataset, SkipLog, iter_batches
from . import concept_pixels as px
from . import concepts as cn
from .examples import Family
from .render import PACK, PackWriter, crop_image, heatmaps, jpeg, thumb_base, to_uint8
from .streaming import FeatureStats, at_positions, dense_maxima, image_maxima, interval_index

if TYPE_CHECKING:
    from ..models.inception_v1 import InceptionV1
    from ..models.layers import LayerInfo
    from ..sae.model import TopKSAE

#: Called after each batch with (pass number, position in the image list to resume from).
Saver = Callable[[int, int], None]


@dataclass
class Context:
    """What every pass needs: the model, the SAE, the layer and the images."""

    model: InceptionV1
    sae: TopKSAE
    layer: str
    info: LayerInfo  #: at the run's input size
    dataset: ImageDataset
    indices: list[int]  #: dataset indices analysed, in order
    batch_size: int = 32
    device: str = "cpu"
    workers: int = 0
    skips: SkipLog = field(default_factory=SkipLog)
    progress: bool = True
    subset: dict = field(default_factory=dict)  #: how the images were chosen (subsets.subset_record)
    rule: dict | None = None  #: the harvest's position rule (data.sampling.harvest_rule), None: unknown
    harvest: dict | None = None  #: the harvest as the SAE folder records it, and where it was read (Harvest.to_dict)

    def training_mask(self, acts: Tensor, image: Tensor) -> Tensor:
        """(B*HW,) bool, image-major: the positions the harvest rule selects (what the SAE was trained on)."""
        from ..data.sampling import training_mask

        assert self.rule is not None, "called only with a known harvest rule"
        ids = [self.dataset.image_id(i) for i in image.tolist()]
        return training_mask(acts, self.rule, ids).reshape(-1)

    @property
    def hw(self) -> int:
        return self.info.size * self.info.size


@dataclass
class RunState:
    """Everything accumulated over the passes (bounded: no per-image x per-feature storage)."""

    features: Family
    neurons: Family
    chan_sq: Tensor  #: (C,) float64 sum of squared activations over positions
    act_sum: Tensor  #: (C, H, W) float64 sum of activation maps over images
    image_class: Tensor  #: (n_images_total,) long class per dataset index (-1 unknown or skipped)
    seen: Tensor  #: (n_images_total,) bool, images that decoded
    #: family -> concept label counts (choice half, then score half); empty: no image with a known class
    concepts: dict[str, cn.ConceptCounts] = field(default_factory=dict)
    split: Tensor | None = None  #: (n_images_total,) 0 choice half, 1 score half, -1 not in either
    concept_tensors: dict[str, Tensor] = field(default_factory=dict)  #: a checkpoint's concept counts, to restore
    #: features on the harvest rule's positions only (the training distribution): statistics, and unless
    #: switched off (a top capacity of 0) top and interval examples of per-image maxima over those positions;
    #: None: no rule
    train: Family | None = None
    train_intervals: Tensor | None = None  #: (m, n_intervals) firing training positions per activation interval
    timings: dict[str, float] = field(default_factory=dict)
    packed_images: int = 0  #: JPEGs pass 3 wrote into images/examples.pack

    @property
    def train_stats(self) -> FeatureStats | None:
        """The features' statistics on the training positions (None: the rule is unknown)."""
        return None if self.train is None else self.train.stats

    @property
    def train_examples(self) -> bool:
        """Whether examples on the training positions are kept (and every-position examples flagged)."""
        return self.train is not None and self.train.top.capacity > 0

    def nbytes(self) -> int:
        """Bytes of the streaming state (independent of the image count)."""
        n = self.features.nbytes() + self.neurons.nbytes()
        if self.train is not None and self.train_intervals is not None:
            n += self.train.nbytes() + self.train_intervals.numel() * 8
        return n


def batches(ctx: Context, indices: list[int], title: str) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
    """(images, dataset indices, activations (B,C,H,W), code values, code indices (B*HW, k)) with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:.1f} images/s"), TimeRemainingColumn()]  # fmt: skip
    start = time.perf_counter()
    bars = Console(stderr=True)  # stdout stays for results
    with Progress(*columns, disable=not ctx.progress, transient=True, console=bars) as bar:
        task = bar.add_task(title, total=len(indices), rate=0.0)
        done = 0
        for x, idx in iter_batches(ctx.dataset, ctx.batch_size, indices=indices, workers=ctx.workers, skips=ctx.skips):
            with torch.no_grad():
                acts = ctx.model.capture(x.to(ctx.device), [ctx.layer])[ctx.layer]  # (B, C, H, W)
                v = acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])  # (B*HW, C), image-major
                vals, ind = ctx.sae.encode(v)
            done += len(idx)
            bar.update(task, completed=done, rate=done / max(time.perf_counter() - start, 1e-9))
            yield x, torch.tensor(idx), acts.float().cpu(), vals.float().cpu(), ind.cpu()


def pass1(ctx: Context, state: RunState, predict: bool, start: int = 0, on_batch: Saver | None = None) -> None:
    """Statistics, top examples, channel scales, mean map, image classes (from position ``start`` of the list)."""
    t0 = time.perf_counter()
    m, C = state.features.m, state.neurons.m
    for _x, image, acts, vals, ind in batches(ctx, ctx.indices[start:], f"pass 1/3 {ctx.layer}"):
        B = len(image)
        fmax, fpos = image_maxima(vals, ind, B, ctx.hw, m)
        state.features.stats.update_sparse(vals, ind, fmax)
        flag = None
        if state.train is not None:
            mask = ctx.training_mask(acts, image)
            tmax, tpos = image_maxima(vals * mask[:, None], ind, B, ctx.hw, m)  # max over training positions
            state.train.stats.update_sparse(vals[mask], ind[mask], tmax)
            if state.train_examples:
                state.train.offer_top(tmax, tpos, image)
                flag = at_positions(mask, fpos)
        state.features.offer_top(fmax, fpos, image, flag)
        nmax, npos = dense_maxima(acts)
        dense = acts.permute(0, 2, 3, 1).reshape(-1, C)
        state.neurons.stats.update_dense(dense, nmax)
        state.neurons.offer_top(nmax, npos, image)
        state.chan_sq += dense.double().pow(2).sum(0)
        state.act_sum += acts.double().sum(0)
        state.seen[image] = True
        if predict:
            with torch.no_grad():
                logits = ctx.model.forward_from(ctx.layer, acts.to(ctx.device))
            state.image_class[image] = logits[:, 1:1001].argmax(1).cpu() + 1  # labelled outputs only
        if on_batch is not None:
            on_batch(1, int(image[-1]) + 1)  # indices are 0..n-1 in order
    state.timings["pass1_s"] = state.timings.get("pass1_s", 0.0) + time.perf_counter() - t0


def pass2_order(state: RunState, indices: list[int]) -> tuple[list[int], int]:
    """Pass 2 reads the choice half, then the score half, then the rest; returns the order and the choice count."""
    if state.split is None:
        return list(indices), 0
    sp = state.split
    a = [i for i in indices if sp[i] == 0]
    b = [i for i in indices if sp[i] == 1]
    rest = [i for i in indices if sp[i] < 0]
    return a + b + rest, len(a)


def pass2(ctx: Context, state: RunState, start: int = 0, on_batch: Saver | None = None) -> None:
    """Interval reservoirs (exact, now that maxima are known) and concept labels (choice half, then score half).

    ``start`` is a position in this pass's own order (``pass2_order``).
    """
    t0 = time.perf_counter()
    fams = {"features": state.features, "neurons": state.neurons}
    for fam in fams.values():
        if fam.intervals is None:  # not resuming
            fam.start_pass2()
    if state.train is not None and state.train_examples and state.train.intervals is None:
        state.train.start_pass2()  # its intervals span [0, the max over training positions]
    order, n_choice = pass2_order(state, ctx.indices)
    at = {img: j for j, img in enumerate(order)}
    parts = [(order[:n_choice], 0), (order[n_choice:], 1)]
    offset = 0
    for part, half in parts:
        if start >= offset + len(part):
            offset += len(part)
            continue
        todo = part[max(0, start - offset) :]
        offset += len(part)
        if half == 1:
            for cc in state.concepts.values():
                if cc.chosen is None:
                    cc.choose()
        for x, image, acts, vals, ind in batches(ctx, todo, f"pass 2/3 {ctx.layer}"):
            pass2_batch(ctx, state, x, image, acts, vals, ind)
            if on_batch is not None:
                on_batch(2, at[int(image[-1])] + 1)
    for cc in state.concepts.values():  # a run whose score half is empty still chooses (and scores nothing)
        if cc.chosen is None:
            cc.choose()
    state.timings["pass2_s"] = state.timings.get("pass2_s", 0.0) + time.perf_counter() - t0


def pass2_batch(ctx: Context, state: RunState, x: Tensor, image: Tensor, acts: Tensor, vals: Tensor,
                ind: Tensor) -> None:  # fmt: skip
    """One batch of pass 2: intervals of every family, concept counts of the images in either half."""
    fams = {"features": state.features, "neurons": state.neurons}
    B, m = len(image), state.features.m
    maxima = {"features": image_maxima(vals, ind, B, ctx.hw, m), "neurons": dense_maxima(acts)}
    flags: dict[str, Tensor | None] = {"features": None, "neurons": None}
    if state.train is not None:
        mask = ctx.training_mask(acts, image)
        count_training_intervals(state, mask, vals, ind)
        if state.train_examples:
            tmax, tpos = image_maxima(vals * mask[:, None], ind, B, ctx.hw, m)
            state.train.offer_intervals(tmax, tpos, image)
            flags["features"] = at_positions(mask, maxima["features"][1])
    for name, fam in fams.items():
        vmax, pos = maxima[name]
        fam.offer_intervals(vmax, pos, image, flags[name])
    if not state.concepts or state.split is None:
        return
    t0 = time.perf_counter()
    half = state.split[image]
    size = ctx.info.size
    colours = px.cell_colours(x)
    cells = {"features": lambda: px.sparse_cell_maxima(vals, ind, B, size, m),
             "neurons": lambda: px.dense_cell_maxima(acts)}  # fmt: skip
    extent = {"features": lambda v: px.sparse_extent(vals, ind, v, size),
              "neurons": lambda v: px.dense_extent(acts, v)}  # fmt: skip
    for name, cc in state.concepts.items():
        vmax = maxima[name][0]
        top = fams[name].stats.vmax
        cellmax = cells[name]()
        cls = cc.compact(state.image_class[image])
        for h in (0, 1):
            sel = (half == h) & (cls >= 0)
            if not bool(sel.any()):
                continue
            if h == 0:
                cc.add_choice(vmax[sel], cls[sel], top, cellmax[sel], colours[sel])
            else:
                ext = extent[name](vmax)[sel]
                cc.add_score(vmax[sel], cls[sel], top, cellmax[sel], colours[sel], ext, cc.masks())
    state.timings["concepts_s"] = state.timings.get("concepts_s", 0.0) + time.perf_counter() - t0


def count_training_intervals(state: RunState, mask: Tensor, vals: Tensor, ind: Tensor) -> None:
    """Firing training positions (``mask``) per equal-width interval of each feature's [0, max] (pass-1 maxima)."""
    assert state.train_intervals is not None
    v, i = vals[mask].reshape(-1), ind[mask].reshape(-1)
    on = v > 0
    v, i = v[on], i[on]
    n_iv = state.train_intervals.shape[1]
    j = interval_index(v.view(1, -1), state.features.stats.vmax[i].view(1, -1), n_iv).view(-1)
    state.train_intervals += torch.bincount(i * n_iv + j, minlength=state.train_intervals.numel()).view(-1, n_iv)


def render_requests(fams: list[Family], n_top: int, n_interval: int) -> dict[int, set[tuple[int, int]]]:
    """image -> {(direction id, flat pos)} for the examples that get image files, over families of one kind."""
    req: dict[int, set[tuple[int, int]]] = {}
    for fam in fams:
        for f in range(fam.m):
            chosen = fam.top_examples(f)[:n_top]
            if fam.intervals is not None:
                for iv in fam.interval_examples(f):
                    chosen += iv["examples"][:n_interval]
            for image, pos, _ in chosen:
                req.setdefault(image, set()).add((f, pos))
    return req


def unit_maps(
    name: str, fam: Family, feats: list[int], b: int, W: int, acts: Tensor, vals: Tensor, ind: Tensor
) -> Tensor:
    """(F, W, W) maps of ``feats`` on batch image ``b``: the "features" family's sparse codes, or neurons' channels."""
    if name != "features":
        return acts[b, feats].float()
    hw = W * W
    v, i = vals[b * hw : (b + 1) * hw], ind[b * hw : (b + 1) * hw]  # (hw, k)
    col = torch.full((fam.m,), -1, dtype=torch.long)
    col[torch.tensor(feats)] = torch.arange(len(feats))
    c = col[i]
    on = c >= 0
    pos = torch.arange(hw).view(-1, 1).expand_as(i)[on]
    dense = torch.zeros(hw, len(feats))
    dense.index_put_((pos, c[on]), v[on].float(), accumulate=True)
    return dense.t().reshape(len(feats), W, W)


def pass3_render(ctx: Context, state: RunState, out: Path, n_top: int, n_interval: int) -> dict:
    """Crops and heatmaps for the shown examples, packed in ``images/examples.pack``; returns (kind, id, image,
    flat pos) -> their references (``render.read_packed``).

    The training-position examples are features' examples too: an (image, position) shown in both families
    has one crop, and a (feature, image) one heatmap (the feature's whole map, on the scale of its every-position
    max), so the second family only renders what the first does not show.
    """
    t0 = time.perf_counter()
    fams = {"features": state.features, "neurons": state.neurons}
    groups = {"features": [state.features], "neurons": [state.neurons]}
    if state.train is not None and state.train_examples:
        groups["features"].append(state.train)
    reqs = {name: render_requests(group, n_top, n_interval) for name, group in groups.items()}
    needed = sorted(set().union(*[set(r) for r in reqs.values()]))
    if not needed:
        return {}
    from ..fsio import atomic_file

    (out / "images").mkdir(parents=True, exist_ok=True)
    files: dict = {}
    W = ctx.info.size
    with atomic_file(out / PACK) as f:
        pack = PackWriter(f)
        crops: dict[tuple[int, int], str] = {}
        drawing = 0.0  # of which drawing and encoding (the rest is the images' decode, forward and encode)
        for x, image, acts, vals, ind in batches(ctx, needed, "pass 3/3 rendering"):
            t1 = time.perf_counter()
            for b, img in enumerate(image.tolist()):
                pixels = to_uint8(x[b])
                base = thumb_base(pixels)
                boxes: dict[tuple[int, int, int, int], str] = {}  # positions whose clipped RF is one box share a crop
                for name, fam in fams.items():
                    wanted = sorted(reqs[name].get(img, ()))
                    feats = sorted({f for f, _ in wanted})
                    if not feats:
                        continue
                    maps = unit_maps(name, fam, feats, b, W, acts, vals, ind)
                    pictures = heatmaps(base, maps, fam.stats.vmax[feats], ctx.info)
                    heats = {f: pack.add_bytes(jpeg(pictures[j])) for j, f in enumerate(feats)}
                    for feat, pos in wanted:
                        if (img, pos) not in crops:
                            box = ctx.info.rf_box(*divmod(pos, W))
                            if box not in boxes:
                                boxes[box] = pack.add_bytes(jpeg(crop_image(pixels, box)))
                            crops[img, pos] = boxes[box]
                        files[(name, feat, img, pos)] = {"crop": crops[img, pos], "heatmap": heats[feat]}
            drawing += time.perf_counter() - t1
    state.packed_images = pack.count
    state.timings["pass3_s"] = time.perf_counter() - t0
    state.timings["pass3_drawing_s"] = drawing
    return files
