"""``inception-sae run``: harvest -> train -> eval -> analyze -> featvis (per layer) -> circuits -> compare -> site.

A stage whose output is complete is skipped, so a killed run resumes where it
stopped (and inside a stage, harvest and train resume from their own folders).
The effective config is written to ``RUN/config.yaml``; rerunning with a
different config for a stage that is already complete is refused unless that
stage is forced (which also redoes the stages after it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import atomic_write_text
from . import work
from .config import RunConfig, build, fingerprint, read_file, to_yaml
from .stages import (
    ALL_STAGES,
    COSMETIC,
    DEPENDS,
    LAYER_STAGES,
    PAIR_STAGES,
    RUN_ONLY,
    Paths,
    Stage,
    artefact,
    layer_check,
    remove,
    top_count,
    units,
)


@dataclass
class StageReport:
    """How one stage went."""

    key: str  #: e.g. ``train mixed4a``
    status: str  #: "done", "skipped (complete)"
    seconds: float
    note: str = ""


@dataclass
class RunResult:
    """What :func:`run_pipeline` did."""

    root: Path  #: the run folder
    site: Path  #: the site folder (open ``site/index.html``)
    stages: list[StageReport] = field(default_factory=list)


def plan(ctx: work.Context) -> list[Stage]:
    """Every stage of the run, in order: each layer's stages, then each pair's, then the site."""
    layers = ctx.cfg.layers
    order: list[tuple[str, tuple[str, ...]]] = [(name, (layer,)) for layer in layers for name in LAYER_STAGES]
    order += [(name, unit) for name in (*PAIR_STAGES, "site") for unit in units(name, layers)]
    return [Stage(name, " ".join((name, "__".join(unit))).strip(), ctx.paths.of(name, *unit),
                  partial(work.is_complete, ctx, name, *unit), partial(work.run_stage, ctx, name, *unit))
            for name, unit in order]  # fmt: skip


def check_previous(cfg: RunConfig, paths: Paths, force: tuple[str, ...]) -> tuple[str, ...]:
    """Stages whose results must be removed; a one-line refusal when a stage already on disk had another config.

    Returns the forced stages and every stage after the first of them (they depend on it), then any stage on disk
    whose only changes are :data:`~.stages.COSMETIC` settings (it alone is rebuilt; :data:`~.stages.RUN_ONLY`
    changes rebuild nothing). A stage counts as
    on disk once its folder exists (complete or not): a finished stage would otherwise be silently reused, and
    a half-finished one silently continued, under settings it was not made with.
    """
    for name in force:
        if name not in ALL_STAGES:
            raise UserError(f"unknown --force-stage {name!r}; choose from {', '.join(ALL_STAGES)}")
    redo = ALL_STAGES[min(ALL_STAGES.index(s) for s in force) :] if force else ()
    if not paths.config.is_file():
        return redo
    try:
        old = build(read_file(paths.config), {})
    except UserError as e:
        raise UserError(f"{paths.config} is not a valid run config ({e}); move it away or use a new --out") from None
    on_disk = {s.name for s in plan(work.Context(cfg, paths, progress=False)) if s.out.exists()}
    ignored = {k: COSMETIC.get(k, ()) + RUN_ONLY.get(k, ()) for k in {*COSMETIC, *RUN_ONLY}}
    restyle = []  # stages on disk whose only changes are cosmetic: rebuilt alone
    for name in ALL_STAGES:
        sections, top = DEPENDS[name]
        if name not in on_disk or name in redo:
            continue
        if fingerprint(old, sections, top, ignored) != fingerprint(cfg, sections, top, ignored):
            changed = _changed_keys(old, cfg, sections, top, ignored)
            raise UserError(
                f"{paths.root} was made with a different {name} config ({changed}); "
                f"use a new --out or --force-stage {name} to redo it and the stages after it"
            )
        if fingerprint(old, sections, top, RUN_ONLY) != fingerprint(cfg, sections, top, RUN_ONLY):
            restyle.append(name)
    return (*redo, *restyle)


def _changed_keys(
    old: RunConfig, new: RunConfig, sections: tuple[str, ...], top: tuple[str, ...], ignored: dict
) -> str:
    a, b = old.effective(), new.effective()
    diffs = [k for k in top if a[k] != b[k]]
    diffs += [f"{s}.{k}" for s in sections for k in b[s] if a[s].get(k) != b[s].get(k) and k not in ignored.get(s, ())]
    return ", ".join(f"{k}: {_get(a, k)!r} -> {_get(b, k)!r}" for k in diffs[:3])


def _get(d: Any, key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def validate(cfg: RunConfig) -> None:
    """Cheap one-line checks before any work starts."""
    if cfg.out is None:
        raise UserError("give --out RUN (the run folder)")
    if cfg.images is None:
        raise UserError("give --images DIR (or images: in the config file)")
    for images in (cfg.images, cfg.analysis_images):
        if images is not None and not Path(images).exists():
            raise UserError(f"image folder {images} does not exist")
    layer_check(cfg.layers)
    if cfg.out.exists() and not cfg.out.is_dir():
        raise UserError(f"--out {cfg.out} is a file")


def check_store_sizes(cfg: RunConfig, paths: Paths, redo: tuple[str, ...]) -> None:
    """Refuse, before any harvesting, a harvest that cannot fill one training batch.

    The bound is an upper one (every image readable): images x views x vectors per image.
    """
    from ..data.images import ImageDataset
    from ..models.layers import layer_info

    h, batch = cfg.harvest, cfg.train.batch_size
    todo = [x for x in cfg.layers if "harvest" in redo or not artefact("harvest").is_complete(paths.store(x))]
    if not todo:
        return
    assert cfg.images is not None  # validate() refused a run without them
    n_images = len(ImageDataset.from_path(cfg.images).files)  # a missing or unreadable source is a UserError
    if h.max_images:
        n_images = min(n_images, h.max_images)
    if n_images == 0:
        raise UserError(f"no images found under {cfg.images}")
    for layer in todo:
        side = layer_info(layer, h.crop or 224).size
        per_image = side * side if h.sampling == "all" else min(h.per_image, side * side)
        most = n_images * h.views * per_image
        if most < batch:
            raise UserError(
                f"the {layer} store would hold at most {most:,} vectors ({n_images} images x {h.views} views x "
                f"{per_image} per image), fewer than one training batch of {batch:,}; add images, raise "
                "harvest.per_image (or harvest.views), or lower train.batch_size"
            )


def check_featvis_settings(ctx: work.Context) -> None:
    """The featvis section (render settings, objective, feature spec) is checked before any work, not hours in."""
    from ..featvis.run import parse_ids

    spec = ctx.cfg.featvis.features
    if spec.startswith("top:"):
        top_count(spec)
    else:
        parse_ids(spec)
    for layer in ctx.cfg.layers:
        work.featvis_job(ctx, layer, ids=(0,))


def run_pipeline(
    cfg: RunConfig, force: tuple[str, ...] = (), progress: bool = True, view=None, console=None
) -> RunResult:
    """Run every stage of ``cfg`` that is not complete; see the module docstring.

    ``console`` (rich) receives the stages' notes and progress bars (default: a new one on stderr).
    """
    validate(cfg)
    assert cfg.out is not None  # validate() refused a run without one
    paths = Paths(cfg.out)
    redo = check_previous(cfg, paths, force)
    check_store_sizes(cfg, paths, redo)
    check_featvis_settings(work.Context(cfg, paths, progress=False))
    for name in redo:
        for path in paths.outputs(name, cfg.layers):
            remove(path)
    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.config, to_yaml(cfg))
    ctx = work.Context(cfg, paths, progress=progress, console=console)
    view = view or StageView()  # stage lines always; ``progress`` only switches the stages' own bars
    result, changed = RunResult(paths.root, paths.site), False
    for stage in plan(ctx):
        if stage.done() and not (stage.name == "site" and changed):
            view.skip(stage.key)
            result.stages.append(StageReport(stage.key, "skipped (complete)", 0.0))
            continue
        view.start(stage.key)
        t0 = time.perf_counter()
        note = stage.run()
        changed = True
        seconds = time.perf_counter() - t0
        view.finish(stage.key, seconds, note)
        result.stages.append(StageReport(stage.key, "done", seconds, note))
    return result


class StageView:
    """The combined progress view: one line per stage (status, time, note) around each stage's own bar."""

    def __init__(self, enabled: bool = True) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, quiet=not enabled, soft_wrap=True)
        self.t0 = time.perf_counter()

    def _stamp(self) -> str:
        return f"[dim]{time.perf_counter() - self.t0:7.1f}s[/]"

    def skip(self, key: str) -> None:
        self.console.print(f"{self._stamp()} [green]✓[/] {key:<28} skipped (complete)", highlight=False)

    def start(self, key: str) -> None:
        self.console.print(f"{self._stamp()} [yellow]▶[/] {key:<28} running", highlight=False)

    def finish(self, key: str, seconds: float, note: str) -> None:
        self.console.print(f"{self._stamp()} [green]✓[/] {key:<28} done in {seconds:.1f} s  {note}", highlight=False)
