"""What each stage of ``run`` does: build the stage's typed config, call its library function.

Each function takes the run's :class:`Context` and returns a one-line note for the progress view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..models.choice import Model
from ..settings import values
from .config import RunConfig
from .stages import Paths, artefact, feature_ids


@dataclass
class Context:
    """Shared state of one ``run``: its config, its folder layout and the model (loaded once, on demand)."""

    cfg: RunConfig
    paths: Paths
    progress: bool = True
    #: rich console for the stages' notes and bars (the command line passes its own; default: stderr)
    console: Any = field(default=None, repr=False)
    _model: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.console is None:
            from rich.console import Console

            self.console = Console(stderr=True, soft_wrap=True)

    @property
    def model(self):
        if self._model is None:
            from ..models.weights import load_model

            self._model = load_model(self.cfg.weights, seed=self.cfg.seed, device=self.cfg.device)
        return self._model

    @property
    def images(self) -> Path:
        """Images harvested for training (``run`` refuses a config without them)."""
        assert self.cfg.images is not None
        return self.cfg.images

    @property
    def analysis_images(self) -> Path:
        """Images of eval, analyze and circuits."""
        return self.cfg.analysis_images or self.images

    def common(self) -> dict[str, Any]:
        """The run's network (weights, seed, device) as every stage config takes it."""
        return values(self.cfg, Model)


def do_harvest(ctx: Context, layer: str, also: tuple[str, ...] | None = None) -> str:
    """Harvest ``layer`` and, in the same pass over the images, the ``also`` layers (each image decoded and run
    through the network once for all of them; default: every other layer of the run whose store is not complete)."""
    from ..data.harvest import HarvestPassConfig, run

    if also is None:
        also = pending_stores(ctx, layer)
    layers = (layer, *[x for x in also if x != layer])
    cfg = HarvestPassConfig(images=ctx.images, layers=layers, outs=tuple(ctx.paths.store(x) for x in layers),
                            **values(ctx.cfg.harvest), **ctx.common())  # fmt: skip
    results = run(cfg, ctx.model, progress=ctx.progress)
    for x, r in zip(layers, results, strict=True):
        if not r.complete:
            raise UserError(f"harvest of {x} did not complete; rerun to resume")
    r = results[0]
    note = f"{r.vectors:,} vectors, {r.skipped} images skipped"
    return note + (f" (one pass with {', '.join(layers[1:])})" if len(layers) > 1 else "")


def pending_stores(ctx: Context, layer: str) -> tuple[str, ...]:
    """The run's other layers whose stores are not complete: harvested in the same pass as ``layer``."""
    return tuple(x for x in ctx.cfg.layers if x != layer and not is_complete(ctx, "harvest", x))


def do_train(ctx: Context, layer: str) -> str:
    from ..sae.folder import SAEFolder
    from ..sae.train_stage import TrainStageConfig, run

    cfg = TrainStageConfig(out=ctx.paths.sae(layer), store=ctx.paths.store(layer), saes=(ctx.cfg.sae,),
                           **values(ctx.cfg.train), held_out=ctx.cfg.eval.max_vectors,  # what eval measures on
                           **ctx.common())  # fmt: skip

    def note(line: str) -> None:
        ctx.console.print(f"{layer}: {line}")

    result = run(cfg, progress=ctx.progress, on_note=note if ctx.progress else None)
    if result.interrupted:
        raise KeyboardInterrupt  # the checkpoint is saved; rerunning resumes
    s = next(iter(result.summaries.values()))
    fvu, dead, m = s["final_fvu"], s["dead_fraction"], SAEFolder.d_sae(cfg.out)
    return f"m={m} k={ctx.cfg.sae.k}, {result.steps} steps, FVU {fvu:.3f}, dead {dead:.1%}"


def do_eval(ctx: Context, layer: str) -> str:
    from ..sae.eval_stage import EvalConfig, run

    cfg = EvalConfig(sae=ctx.paths.sae(layer), store=ctx.paths.store(layer), images=ctx.analysis_images,
                     **values(ctx.cfg.eval), **ctx.common())  # fmt: skip
    rep = run(cfg, ctx.model)
    rep.write(ctx.paths.eval(layer))
    s = rep.store or {}
    note = f"{'held-out ' if s.get('held_out') else ''}FVU {s.get('fvu', float('nan')):.3f}, L0 {s.get('l0', 0):.1f}"
    if rep.splice:
        part = rep.splice.get("training_positions")
        where = "trained positions" if part else "every position"
        note += f", splice-back top-1 agreement {(part or rep.splice)['top1_agreement']:.0%} ({where})"
    return note


def do_analyze(ctx: Context, layer: str) -> str:
    from ..analysis.config import AnalyzeConfig
    from ..analysis.run import run

    ev = ctx.paths.eval(layer)
    cfg = AnalyzeConfig(sae=ctx.paths.sae(layer), images=ctx.analysis_images, out=ctx.paths.analysis(layer),
                        eval_report=ev if ev.is_file() else None, **ctx.common(),
                        **values(ctx.cfg.analyze))  # fmt: skip
    s = run(cfg, ctx.model, progress=ctx.progress).summary
    return f"{s['counts']['features']} features over {s['images']['analysed']} images, {s['counts']['dead']} dead"


def featvis_job(ctx: Context, layer: str, ids: Sequence[int] | None = None):
    """The featvis job of a layer (its ids come from the analysis, so it exists only after analyze).

    With ``ids`` given the analysis is not read: ``run`` checks the settings that way before any work.
    """
    from ..featvis.run import job_from
    from ..sae.folder import SAEFolder

    if ids is None:
        ids = feature_ids(ctx.cfg.featvis.features, ctx.paths.analysis(layer), SAEFolder.d_sae(ctx.paths.sae(layer)))
    if not ids:
        raise UserError(f"featvis.features selects no feature of the {layer} SAE")
    return job_from(ctx.cfg.featvis, out=ctx.paths.featvis(layer), layer=layer, kind="f", ids=tuple(ids),
                    sae=ctx.paths.sae(layer), **ctx.common())  # fmt: skip


def do_featvis(ctx: Context, layer: str) -> str:
    from ..featvis.run import progress_view, run

    job = featvis_job(ctx, layer)
    with progress_view(ctx.console, f"featvis {layer}", enabled=ctx.progress) as tick:
        r = run(job, ctx.model, on_progress=tick)
    return f"{len(job.ids)} features, {job.render.steps} steps each ({r.rendered} images rendered)"


def do_circuits(ctx: Context, a: str, b: str) -> str:
    from ..circuits.config import CircuitsConfig
    from ..circuits.run import run

    p = ctx.paths
    cfg = CircuitsConfig(upstream=p.sae(a), downstream=p.sae(b), out=p.circuits(a, b), images=ctx.analysis_images,
                         analysis=(p.analysis(a), p.analysis(b)), **ctx.common(),
                         **values(ctx.cfg.circuits))  # fmt: skip
    r = run(cfg, ctx.model)
    return f"focus {r.focus}, {r.seconds} s"


def do_compare(ctx: Context, a: str, b: str) -> str:
    from ..compare.run import CompareConfig, run

    p = ctx.paths
    cfg = CompareConfig(sae_a=p.sae(a), sae_b=p.sae(b), out=p.compare(a, b), images=ctx.analysis_images,
                        analysis_a=p.analysis(a), analysis_b=p.analysis(b), **ctx.common(),
                        **values(ctx.cfg.compare))  # fmt: skip
    r = run(cfg, ctx.model)
    return (f"{r.matched_share(0.7):.0%} of {a} features matched in {b} (r >= 0.7 and above their own shuffled "
            f"null; {r.share_above_null or 0.0:.0%} above the null at any r)")  # fmt: skip


def site_featvis(ctx: Context) -> Path | None:
    """The featvis folder for ``site build``: the layer's own, or links to every layer's (several layers)."""
    layers = [layer for layer in ctx.cfg.layers if (ctx.paths.featvis(layer) / layer).is_dir()]
    if not layers:
        return None
    if len(layers) == 1:
        return ctx.paths.featvis(layers[0])
    root = ctx.paths.root / "featvis_all"
    root.mkdir(exist_ok=True)
    for layer in layers:
        link = root / layer
        if not link.exists():
            link.symlink_to(Path("..") / layer / "featvis" / layer, target_is_directory=True)
    return root


def do_site(ctx: Context) -> str:
    from ..compare.report import CompareFolder
    from ..site import SiteConfig
    from ..site.build import run

    p, layers = ctx.paths, ctx.cfg.layers
    pairs = [p.circuits(a, b) for a, b in pairwise(layers) if p.circuits(a, b).is_dir()]
    untrained = ctx.model.identity.startswith("random:")
    kw = values(ctx.cfg.site)
    if untrained and kw["title"] == SiteConfig.title:  # the default title says what the site shows
        kw["title"] = "inception-sae features (UNTRAINED random weights)"
    cfg = SiteConfig(analyses=tuple(p.analysis(x) for x in layers), out=p.site, featvis=site_featvis(ctx),
                     circuits=tuple(pairs),
                     compares=tuple(p.compare(a, b) for a, b in pairwise(layers)
                                    if CompareFolder.is_complete(p.compare(a, b))), **kw)  # fmt: skip
    r = run(cfg)
    return f"{r.features} features, {r.files} files"


def is_complete(ctx: Context, name: str, *unit: str) -> bool:
    """Is stage ``name``'s output for ``unit`` (a layer, a pair, or none) complete? Its artefact class says."""
    out = ctx.paths.of(name, *unit)
    if name != "featvis":
        return bool(artefact(name).is_complete(out))
    (layer,) = unit  # which features are rendered comes from the analysis: none is complete before it
    if not artefact("analyze").is_complete(ctx.paths.analysis(layer)):
        return False
    return bool(artefact(name).is_complete(out, layer, featvis_job(ctx, layer).ids))


def run_stage(ctx: Context, name: str, *unit: str) -> str:
    """Run stage ``name`` for ``unit`` (a layer, a pair of layers, or none): its ``do_<name>`` function."""
    do: Callable[..., str] = globals()[f"do_{name}"]
    return do(ctx, *unit)
