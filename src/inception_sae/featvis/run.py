"""A featvis job: render many SAE features or neurons in batches, write PNGs and an index.

Layout under ``out`` (what the dashboard reads)::

    featvis.json                      index: model identity, settings, per-item scores
    <layer>/f/<id>.png                SAE feature <id>
    <layer>/f/<id>_div<j>.png         its diverse variants j = 0..D-1 (with diversity D > 1)
    <layer>/n/<id>.png                neuron (channel) <id> of <layer>

Every image's seed is derived from (job seed, layer, kind, id, variant) only,
so an image does not depend on the batch it was rendered in, and a resumed
job skips items whose PNGs exist.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

from ..errors import UserError
from ..models.choice import Model
from ..models.layers import layer_info
from ..sae.view import SAETensors
from ..settings import Settings, values
from .index import FeatvisFolder
from .objectives import Objective, diversity, neuron, sae_decoder, sae_encoder
from .render import RenderConfig, RenderSettings, render, save_png

if TYPE_CHECKING:
    from ..models.inception_v1 import InceptionV1


@dataclass(frozen=True, kw_only=True)
class FeatvisSettings(Settings):
    """How features are rendered, for any layer: what ``run``'s ``featvis`` section and the command's flags set."""

    render: RenderSettings = field(default_factory=RenderSettings)
    """optimisation settings"""
    objective: Literal["encoder", "decoder"] = "encoder"
    """SAE objective: encoder pre-activation or decoder direction"""
    at: Literal["center", "mean"] = "center"
    """read the unit at the "center" position or its "mean" over positions"""
    diversity: int = 1
    """with D > 1, also render D diverse variants per item"""
    diversity_weight: float = 1e2
    """weight of the diversity term (Lucid: 1e2 to 1e3)"""
    cossim_pow: float = 1.0
    """cosine exponent of the decoder-direction objective"""
    batch_size: int = 16
    """images per optimisation batch"""

    def __post_init__(self) -> None:
        super().__post_init__()  # objective, at: one-line errors from their Literal types
        if self.diversity < 1 or self.batch_size < 1:
            raise UserError(f"diversity and batch_size must be >= 1, got {self.diversity} and {self.batch_size}")


@dataclass(frozen=True, kw_only=True)
class FeatvisConfig(FeatvisSettings, Model):
    """What to render, where, how, and with which network."""

    out: Path
    """output folder (see module docstring for the layout)"""
    layer: str
    """capture name of the layer (an SAE's layer for kind "f")"""
    kind: Literal["f", "n"]
    """``f`` for SAE features, ``n`` for neurons (channels of ``layer``)"""
    ids: tuple[int, ...]
    """feature or channel indices"""
    render: RenderConfig = field(default_factory=RenderConfig)
    """optimisation settings and transforms"""
    branch: Literal["1x1", "3x3", "5x5", "pool"] | None = None
    """restrict the objective to one branch's channels"""
    sae: Path | None = None
    """SAE folder whose features are rendered (kind ``f``)"""

    def __post_init__(self) -> None:
        super().__post_init__()  # kind, branch: one-line errors from their Literal types
        if not self.ids:
            raise UserError("no features or neurons selected")


def job_from(settings: Any, **inputs: Any) -> FeatvisConfig:
    """The config of ``inputs`` (out, layer, kind, ids, seed, branch, sae, weights, device) with ``settings``.

    ``settings`` is a :class:`FeatvisSettings` or ``run``'s featvis section (whose ``features`` is left out here).
    """
    kw = values(settings)
    kw.pop("features", None)
    kw["render"] = RenderConfig(**values(kw["render"]))  # already checked as RenderSettings: adds the transforms
    return FeatvisConfig(**inputs, **kw)


def item_seed(seed: int, layer: str, kind: str, unit: int, variant: int = -1) -> int:
    """The seed of one image: a hash of (job seed, layer, kind, id, variant) only."""
    ss = np.random.SeedSequence([seed, zlib.crc32(layer.encode()), ord(kind), unit, variant + 1])
    return int(ss.generate_state(1, dtype=np.uint64)[0] % (1 << 63))


def png_relpath(job: FeatvisConfig, unit: int, variant: int = -1) -> str:
    """Path of an image relative to ``job.out``."""
    stem = f"{unit}_{job.branch}" if job.branch else f"{unit}"
    name = f"{stem}.png" if variant < 0 else f"{stem}_div{variant}.png"
    return f"{job.layer}/{job.kind}/{name}"


def base_objective(job: FeatvisConfig, units: Sequence[int], sae: SAETensors | None) -> Objective:
    """The per-image unit objective (image i gets units[i])."""
    if job.kind == "n":
        return neuron(job.layer, list(units), at=job.at, branch=job.branch)
    assert sae is not None
    if job.objective == "encoder":
        return sae_encoder(sae, list(units), at=job.at, branch=job.branch)
    return sae_decoder(sae, list(units), cossim_pow=job.cossim_pow, at=job.at, branch=job.branch)


def plan_batches(job: FeatvisConfig, done: Callable[[str], bool]) -> list[list[tuple[int, int]]]:
    """Batches of (id, variant) still to render; a variant group always shares one batch."""
    singles = [(u, -1) for u in job.ids if not done(png_relpath(job, u))]
    batches = [singles[i : i + job.batch_size] for i in range(0, len(singles), job.batch_size)]
    if job.diversity > 1:
        groups = [
            [(u, j) for j in range(job.diversity)]
            for u in job.ids
            if not all(done(png_relpath(job, u, j)) for j in range(job.diversity))
        ]
        per = max(1, job.batch_size // job.diversity)
        for i in range(0, len(groups), per):
            batches.append([item for g in groups[i : i + per] for item in g])
    return batches


def check_job(job: FeatvisConfig, sae: SAETensors | None) -> None:
    """Fail early, in one line, on ids out of range or a mismatched SAE."""
    channels = layer_info(job.layer).channels
    if job.kind == "f":
        if sae is None:
            raise UserError("SAE features need --sae")
        if sae.layer != job.layer:
            raise UserError(f"the SAE was trained on {sae.layer}, not {job.layer}")
        if sae.d_in != channels:
            raise UserError(f"the SAE's d_in is {sae.d_in} but {job.layer} has {channels} channels")
        limit = sae.d_sae
    else:
        limit = channels
    bad = [u for u in job.ids if not 0 <= u < limit]
    if bad:
        raise UserError(f"ids out of range 0-{limit - 1}: {bad[:5]}{' ...' if len(bad) > 5 else ''}")


def job_settings(job: FeatvisConfig, sae: SAETensors | None, sae_path: str | None) -> dict[str, Any]:
    """JSON-able settings recorded in the index."""
    r = job.render
    settings = {
        "steps": r.steps,
        "lr": r.lr,
        "param": asdict(r.param),
        "model_size": r.model_size,
        "transforms": repr(r.transforms),
        "redirected_relu": r.redirected_relu,
        "at": job.at,
        "diversity": job.diversity,
        "diversity_weight": job.diversity_weight,
        "batch_size": job.batch_size,
        "seed": job.seed,
    }
    if job.kind == "f":
        settings.update(objective=job.objective, cossim_pow=job.cossim_pow, sae=sae_path)
        settings["sae_model"] = sae.cfg.get("model") if sae else None
    return settings


class FeatvisResult(NamedTuple):
    """What :func:`run` did."""

    out: Path  #: the featvis folder
    layer: str
    kind: str  #: ``f`` SAE features, ``n`` neurons
    rendered: int  #: images rendered by this call (items and their diverse variants; 0 when all existed)
    items: int  #: items of ``layer``/``kind`` now recorded in the index (earlier runs' included)
    contents: dict[str, Any]  #: ``featvis.json``'s contents


def run(
    job: FeatvisConfig,
    model: InceptionV1 | None = None,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    checkpoint_every_s: float = 120.0,
) -> FeatvisResult:
    """Render every item of ``job`` not yet on disk and record them in ``featvis.json``.

    The network is the job's (``weights``, ``seed``, ``device``); ``model`` is that network when the caller
    has already loaded it. ``on_progress`` is called after every optimisation step. The batch being
    optimised is checkpointed every ``checkpoint_every_s`` seconds (see :mod:`.resume`), so a killed job
    resumes inside its batch.
    """
    from ..sae.model import load_layer_sae
    from .resume import BatchCheckpoints

    sae = load_layer_sae(job.sae, needed_by="featvis").frozen(job.sae) if job.sae is not None else None
    check_job(job, sae)
    if model is None:
        from ..models.weights import load_model

        model = load_model(job.weights, seed=job.seed, device=job.device)
    sae_path, device = (str(job.sae) if job.sae is not None else None), job.device
    job.out.mkdir(parents=True, exist_ok=True)
    identity = getattr(model, "identity", "unknown")
    index = FeatvisFolder.load(job.out, identity)
    index.update(layer=job.layer, untrained_weights=identity.startswith("random:"))
    section = index["layers"].setdefault(job.layer, {}).setdefault(job.kind, {"items": {}})
    section["settings"] = job_settings(job, sae, sae_path)
    ckpts = BatchCheckpoints(job.out, {**section["settings"], "layer": job.layer, "kind": job.kind}, checkpoint_every_s)
    batches = plan_batches(job, lambda rel: (job.out / rel).is_file())
    steps = job.render.steps
    state = Progress(0, sum(len(b) for b in batches), 0, len(batches) * steps)
    if on_progress is not None:
        on_progress(state)
    for batch in batches:
        done = state

        def on_step(step: int, done=done) -> None:
            if on_progress is not None:
                on_progress(done._replace(steps_done=done.steps_done + step + 1))

        _render_batch(model, job, sae, batch, section, device, ckpts, on_step)
        FeatvisFolder.write(job.out, index)
        ckpts.finished(batch)
        state = done._replace(images_done=done.images_done + len(batch), steps_done=done.steps_done + steps)
        if on_progress is not None:
            on_progress(state)
    FeatvisFolder.write(job.out, index)
    return FeatvisResult(job.out, job.layer, job.kind, state.images_done, len(section["items"]), index)


class Progress(NamedTuple):
    """Where a featvis job stands (images are features or neurons, and their diverse variants)."""

    images_done: int
    images_total: int
    steps_done: int  #: optimisation steps done over all batches (a batch's steps are shared by its images)
    steps_total: int


def _render_batch(
    model: InceptionV1,
    job: FeatvisConfig,
    sae: SAETensors | None,
    batch: list[tuple[int, int]],
    section: dict[str, Any],
    device: str | torch.device,
    ckpts=None,
    on_step: Callable[[int], None] | None = None,
) -> None:
    """Render one batch (resuming from its checkpoint), save its PNGs and record its scores in ``section``."""
    units = [u for u, _ in batch]
    base = objective = base_objective(job, units, sae)
    if batch[0][1] >= 0:  # a batch of variant groups: push apart within each feature
        objective = base + job.diversity_weight * diversity(base.layers[0], groups=units)
    seeds = [item_seed(job.seed, job.layer, job.kind, u, v) for u, v in batch]
    resume, on_state = (ckpts.load(batch), ckpts.saver(batch)) if ckpts is not None else (None, None)
    result = render(model, objective, seeds, job.render, device=device, score=base, on_step=on_step,
                    resume=resume, on_state=on_state)  # fmt: skip
    for i, (u, v) in enumerate(batch):
        rel = png_relpath(job, u, v)
        save_png(result.images[i], job.out / rel)
        record = {"png": rel, "seed": seeds[i], "final": float(result.final[i])}
        if result.curve.size:
            record.update(first=float(result.curve[0, i]), last=float(result.curve[-1, i]))
        entry = section["items"].setdefault(str(u), {"id": u})
        if v < 0:
            entry.update(record, objective=base_objective(job, [u], sae).description)
        else:
            variants = entry.setdefault("variants", {})
            variants[str(v)] = record


def parse_ids(spec: str) -> tuple[int, ...]:
    """'0-99', '3,7,10-12' -> sorted unique ids; a one-line UserError otherwise."""
    ids: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                ids.update(range(lo, hi + 1))
            else:
                ids.add(int(part))
        except ValueError:
            raise UserError(f"bad id list {spec!r}: use e.g. 0-99 or 3,7,10-12") from None
    if not ids:
        raise UserError(f"bad id list {spec!r}: no ids")
    return tuple(sorted(ids))


@contextlib.contextmanager
def progress_view(console, description: str, per: int = 1, enabled: bool = True):
    """A rich bar over optimisation steps (so its ETA moves during a batch); yields the ``on_progress`` callback.

    ``per`` images make one item (1 + D with D diverse variants), so the count is of features or neurons.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not enabled:
        yield None
        return
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)  # fmt: skip
    with bar:
        task = bar.add_task(description, total=None, count="")

        def on_progress(p) -> None:
            count = f"{p.images_done // per}/{p.images_total // per} done, step {p.steps_done}/{p.steps_total}"
            bar.update(task, completed=p.steps_done, total=p.steps_total or None, count=count)

        yield on_progress
