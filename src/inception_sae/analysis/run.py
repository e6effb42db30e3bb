"""``analyze``: one function from an SAE folder and images to an analysis folder."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import NamedTuple

import torch

from ..checkpoint import Clock
from ..data.images import ImageDataset, Preprocess
from ..data.labels import load_labels
from ..data.subsets import take_spread
from ..errors import UserError
from ..sae.provenance import Harvest, harvest_of
from . import branches as br
from . import checkpoint as ckpt
from . import concepts as cn
from .config import AnalyzeConfig
from .embedding import UmapJob
from .examples import Family
from .logits import logit_effect
from .metrics import read_eval_report
from .passes import Context, RunState, pass1, pass2, pass3_render


class AnalysisResult(NamedTuple):
    """Where the analysis went and its headline numbers."""

    out: Path  #: the analysis folder
    summary: dict  #: contents of summary.json


#: What ``logit_effect`` says in summary.json when it was not computed (the site's class view shows it).
NO_LOGIT_EFFECT = "not computed: logit effects were switched off for this analysis (mixed5b always has them)"


def validate(cfg: AnalyzeConfig) -> None:
    """Cheap checks of the inputs, before any model is loaded."""
    if not (Path(cfg.sae) / "cfg.json").is_file():
        raise UserError(f"{cfg.sae} is not an SAE folder: cfg.json is missing")
    if not Path(cfg.images).exists():
        raise UserError(f"image folder {cfg.images} does not exist")
    if cfg.labels is not None and not Path(cfg.labels).is_file():
        raise UserError(f"labels file {cfg.labels} does not exist")


def build_context(cfg: AnalyzeConfig, model, progress: bool) -> tuple[Context, dict]:
    """Load the SAE, the model and the images; check they fit together."""
    from ..models.weights import load_model
    from ..sae.model import TopKSAE

    validate(cfg)
    sae = TopKSAE.load(cfg.sae, device=cfg.device)
    sae_cfg, layer = sae.folder_cfg(), sae.layer
    if not layer:
        raise UserError(f"{cfg.sae}/cfg.json has no 'layer': cannot tell which layer to analyse")
    harvest = training_harvest(cfg, sae_cfg)  # refused here, before the model and the images
    if model is None:
        model = load_model(cfg.weights, seed=cfg.seed, device=cfg.device)
    info = model.layer_info(layer, cfg.input_size)
    if info.channels != sae.d_in:
        raise UserError(f"SAE d_in={sae.d_in} but {layer} has {info.channels} channels")
    ds = ImageDataset.from_path(cfg.images, Preprocess.for_crop(cfg.input_size))
    subset = take_spread(ds, cfg.max_images, cfg.seed)  # seeded, spread over the classes
    ctx = Context(model, sae, layer, info, ds, list(range(len(ds))), cfg.batch_size, cfg.device, cfg.workers,
                  progress=progress, subset=subset, rule=training_rule(harvest),
                  harvest=harvest.to_dict())  # fmt: skip
    return ctx, sae_cfg


def training_harvest(cfg: AnalyzeConfig, sae_cfg: dict) -> Harvest:
    """The harvest behind the SAE, read from its folder (``--harvest-rule`` for a folder that records none)."""
    return harvest_of(sae_cfg, cfg.sae, need=("rule",), rule=cfg.harvest_rule)


def training_rule(harvest: Harvest) -> dict | None:
    """The position rule the SAE was trained on, with the harvest's crop (None: unknown); None: no rule to replay."""
    if harvest.rule is None:
        return None
    return {**harvest.rule, "harvest_crop": harvest.crop, "from": harvest.rule_from}


def true_classes(ds: ImageDataset, n: int, names) -> torch.Tensor:
    """(n,) class index from each image's wnid (-1 where unknown)."""
    out = torch.full((n,), -1, dtype=torch.long)
    for i in range(n):
        w = ds.label(i)
        c = names.index_of_wnid(w) if w else None
        out[i] = -1 if c is None else c
    return out


def choose_label_source(cfg: AnalyzeConfig, classes: torch.Tensor) -> str:
    """'true' or 'predicted' per ``cfg.label_source`` (see its docstring)."""
    if cfg.label_source != "auto":
        return cfg.label_source
    if len(classes) and bool((classes >= 0).all()):
        return "true"
    return "predicted"


def new_state(ctx: Context, cfg: AnalyzeConfig, m: int, n_total: int) -> RunState:
    """Empty streaming state; with a known rule, the training-position family (examples unless switched off)."""
    C, S = ctx.info.channels, ctx.info.size
    examples = ctx.rule is not None and cfg.training_examples

    def fam(k: int, seed: int, top: int = cfg.n_top, flags: bool = False) -> Family:
        return Family.empty(k, top, cfg.n_intervals, cfg.per_interval, seed=seed, flags=flags)

    state = RunState(
        fam(m, cfg.seed, flags=examples), fam(C, cfg.seed + 1), torch.zeros(C, dtype=torch.float64),
        torch.zeros(C, S, S, dtype=torch.float64), torch.full((n_total,), -1, dtype=torch.long),
        torch.zeros(n_total, dtype=torch.bool),
    )  # fmt: skip
    if ctx.rule is not None:
        state.train = fam(m, cfg.seed + 2, top=cfg.n_top if examples else 0)  # capacity 0: statistics only
        state.train_intervals = torch.zeros(m, cfg.n_intervals, dtype=torch.long)
    return state


def start_concepts(cfg: AnalyzeConfig, state: RunState, names) -> None:
    """The choice / score halves and the concept counts of both families (restored from a checkpoint if any)."""
    sizes = {"features": state.features.m, "neurons": state.neurons.m}
    saved = state.concept_tensors or None
    state.concepts, state.split = cn.start(state.image_class, state.seen, sizes, names, cfg.seed, saved)
    state.concept_tensors = {}


def analyze(cfg: AnalyzeConfig, model=None, progress: bool = True) -> AnalysisResult:
    """Run every per-feature and per-layer analysis and write ``cfg.out`` (see docs/formats.md, "Analysis folder")."""
    t0 = time.perf_counter()
    ctx, sae_cfg = build_context(cfg, model, progress)
    ev = read_eval_report(cfg.eval_report, ctx.layer, cfg.sae)  # checked before the long passes
    names = load_labels(cfg.labels)
    W_dec = ctx.sae.W_dec.detach().float().cpu()  # (m, d)
    umap = UmapJob(W_dec, cfg.seed) if cfg.umap else None  # runs beside the image passes
    n_total = len(ctx.dataset)
    state = new_state(ctx, cfg, W_dec.shape[0], n_total)
    true_cls = true_classes(ctx.dataset, len(ctx.indices), names)
    source = choose_label_source(cfg, true_cls)
    if source == "true":
        state.image_class[: len(true_cls)] = true_cls
    folder, fp = Path(cfg.out) / "checkpoint", ckpt.fingerprint(cfg)
    stage, start = ckpt.load(folder, state, ctx.skips, fp) if cfg.resume else (1, 0)
    saver = periodic_saver(folder, state, ctx, fp, cfg.checkpoint_every_s)
    if stage == 1:
        pass1(ctx, state, predict=source == "predicted", start=start, on_batch=saver)
        ckpt.save(folder, state, 2, 0, ctx.skips, fp)
    if not bool(state.seen.any()):
        raise UserError(f"no image under {cfg.images} could be decoded ({ctx.skips.summary()})")
    start_concepts(cfg, state, names)
    if stage <= 2:
        pass2(ctx, state, start=start if stage == 2 else 0, on_batch=saver)
        ckpt.save(folder, state, 3, 0, ctx.skips, fp)
    files = pass3_render(ctx, state, cfg.out, cfg.render_top, cfg.render_intervals)
    derived = derive(ctx, cfg, state, W_dec, umap)
    from .report import write_all

    summary = write_all(cfg, ctx, sae_cfg, state, derived, files, names, source, time.perf_counter() - t0, ev)
    shutil.rmtree(folder, ignore_errors=True)
    return AnalysisResult(cfg.out, summary)


def run(cfg: AnalyzeConfig, model=None, *, progress: bool = True) -> AnalysisResult:
    """The analyze stage (:func:`analyze`): ``model`` is ``cfg``'s network when the caller has already loaded it."""
    return analyze(cfg, model, progress=progress)


def periodic_saver(folder: Path, state: RunState, ctx: Context, fp: dict, every_s: float):
    """A per-batch callback that checkpoints at most every ``every_s`` seconds (0: never mid-pass)."""
    clock = Clock(every_s=every_s)

    def save(pass_no: int, next_pos: int) -> None:
        if clock.due():
            ckpt.save(folder, state, pass_no, next_pos, ctx.skips, fp)

    return save


def derive(ctx: Context, cfg: AnalyzeConfig, state: RunState, W_dec: torch.Tensor, umap: UmapJob | None = None) -> dict:
    """Branch statistics, nearest neurons, logit effects and UMAP coordinates (from ``umap``, started earlier)."""
    from .embedding import nearest_neuron, umap_coords

    t0 = time.perf_counter()
    positions = max(state.features.stats.positions, 1)
    rms = (state.chan_sq / positions).sqrt().float() if cfg.null_scale else None
    branches = ctx.info.branches
    stats = br.branch_stats(W_dec, [b.slice for b in branches], [b.name for b in branches], rms)
    neuron, cosine = nearest_neuron(W_dec)
    mean_act = (state.act_sum / max(int(state.seen.sum()), 1)).float()
    effect, kind = None, NO_LOGIT_EFFECT
    if cfg.logit_effect or ctx.layer == "mixed5b":
        with torch.enable_grad():
            effect, kind = logit_effect(ctx.model, ctx.layer, W_dec.to(cfg.device), mean_act.to(cfg.device))
            effect = effect.detach().cpu()
    coords = None
    if cfg.umap:
        coords = umap.result() if umap is not None else umap_coords(W_dec, cfg.seed)
    state.timings["derive_s"] = time.perf_counter() - t0
    return {"branches": stats, "neuron": neuron, "cosine": cosine, "effect": effect, "effect_kind": kind,
            "umap": coords, "umap_requested": cfg.umap, "rms": rms}  # fmt: skip
