"""Train one or more TopK SAEs from one pass over a :class:`BatchSource` (Gao et al. 2024 recipe).

Several SAEs (a k or seed sweep) share every batch. Data parallelism (torchrun):
each rank reads its slice of the global batch; losses are divided by the *global*
total variance and gradients are all-reduced, so the result matches one process
with the same global batch. Checkpoints restore everything that shapes the
weights (weights, Adam moments, dead counters, data cursor, RNG), so a killed and
resumed CPU run ends bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from ..checkpoint import Clock
from ..data.distributed import gather_rows
from ..data.source import BatchSource
from ..errors import UserError
from . import checkpoint as ckpt
from .auxk import add_row_grads, auxk_loss_and_grads
from .folder import SAEFolder
from .kernels import batch_moments, geometric_median
from .metrics import DENSE_THRESHOLD, RecentMeans, fire_counts, normalized_mse, variance_from_moments
from .model import SAEConfig, TopKSAE, default_lr, lr_short_run_factor
from .resample import resample_dead
from .train_config import DTYPES, TrainConfig
from .trainlog import TrainLogger


@dataclass
class Run:
    """One SAE being trained, with its optimiser and dead-latent bookkeeping."""

    name: str
    sae: TopKSAE
    opt: torch.optim.Optimizer
    lr: float
    since_fired: torch.Tensor  #: (m,) samples since each latent last fired
    stats: dict[str, float] = field(default_factory=dict)  #: last step's metrics
    recent: RecentMeans = field(default_factory=RecentMeans)  #: the last SUMMARY_WINDOW steps' metrics


class TrainResult(NamedTuple):
    """What :func:`train` returns."""

    paths: list[Path]  #: saved SAE folders (empty if interrupted)
    steps: int  #: steps done in total
    interrupted: bool  #: stopped by SIGINT/SIGTERM (a checkpoint was written)
    summaries: dict[str, dict]  #: per-SAE final metrics


def run_name(c: SAEConfig) -> str:
    arch = "" if c.architecture == "topk" else f"_{c.architecture}"
    return f"k{c.k}_m{c.d_sae}_{c.tie}_s{c.seed}{arch}"


def _clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> None:
    """``clip_grad_norm_`` (same coefficient), skipping the rescaling pass when no clipping is needed."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = max_norm / (float(norm) + 1e-6)
    if coef < 1.0:
        torch._foreach_mul_(grads, coef)


def _dist() -> tuple[bool, int, int]:
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


class Trainer:
    """Holds the runs; :meth:`fit` trains them to ``cfg.samples``."""

    def __init__(self, source: BatchSource, saes: list[SAEConfig], cfg: TrainConfig, out: str | Path, meta=None):
        if not saes:
            raise ValueError("no SAE to train")
        names = [run_name(c) for c in saes]
        if len(set(names)) != len(names):
            raise UserError(f"duplicate SAE configurations in the sweep: {names}")
        self.source, self.cfg, self.out, self.meta = source, cfg, Path(out), dict(meta or {})
        self.distributed, self.rank, self.world = _dist()
        self.device = torch.device(cfg.device)
        self.compute_dtype = DTYPES[cfg.dtype]
        self.saes = saes
        if source.batch_size * self.world != cfg.batch_size:
            raise UserError(f"source batch {source.batch_size} x {self.world} ranks != global batch {cfg.batch_size}")
        self.total_steps = math.ceil(cfg.samples / cfg.batch_size)
        self.step, self.scale, self.elapsed = 0, 1.0, 0.0
        self.nonfinite = 0  #: input rows skipped because they held NaN/inf (e.g. fp16 overflow in a store)
        self.runs = [self._make_run(c) for c in saes]
        self.stop_signal: int | None = None

    def _make_run(self, c: SAEConfig) -> Run:
        if c.d_in != self.source.d:
            raise UserError(f"SAE d_in={c.d_in} but the data has d={self.source.d}")
        if c.uses_threshold and self.cfg.multi_topk:
            raise UserError(f"multi_topk is a TopK loss; it does not apply to the {c.architecture} SAE")
        sae = TopKSAE(c, device=self.device)
        lr = self.cfg.lr or default_lr(c.d_sae, self.cfg.samples)
        fused = self.device.type in ("cpu", "cuda")
        opt = torch.optim.Adam(sae.parameters(), lr=lr, eps=self.cfg.adam_eps, fused=fused)
        return Run(run_name(c), sae, opt, lr, torch.zeros(c.d_sae, dtype=torch.int64, device=self.device))

    # ----- initialisation
    def _init_sample(self) -> torch.Tensor:
        """First ``init_samples`` vectors of the (global) stream; the cursor is rewound afterwards."""
        cursor = self.source.state_dict()
        parts, n = [], 0
        while n < self.cfg.init_samples:
            b = self.source.next_batch()
            b = gather_rows(b, self.distributed, self.world)
            b = self._finite(b, count=False)  # counted when training reads them
            parts.append(b)
            n += b.shape[0]
        self.source.load_state_dict(cursor)
        return torch.cat(parts)[: self.cfg.init_samples].to(self.device)

    def _finite(self, x: torch.Tensor, count: bool = True) -> torch.Tensor:
        """Drop rows with NaN/inf (counted when ``count``); refuse data where they are not rare (> 10%)."""
        if bool(torch.isfinite(x.sum(1)).all()):  # cheap common case: any NaN/inf makes its row sum non-finite
            return x
        ok = torch.isfinite(x).all(1)  # (B,)
        bad = int((~ok).sum())
        if bad == 0:
            return x
        self.nonfinite += bad if count else 0
        total, seen = (self.nonfinite, (self.step + 1) * x.shape[0]) if count else (bad, x.shape[0])
        if bad == x.shape[0] or total > 0.1 * seen:
            raise UserError(
                f"the training data holds non-finite (NaN/inf) vectors: {total} of {seen} rows read; "
                "check the store (harvest in float32, or look for a broken model/weights)"
            )
        return x[ok]

    @torch.no_grad()
    def initialise(self) -> None:
        """Input scale (mean ||s x||^2 = d) and b_dec (by default the geometric median of the scaled sample)."""
        x = self._init_sample()
        if self.cfg.normalize_input:
            self.scale = float(math.sqrt(x.shape[1] / x.pow(2).sum(1).mean().clamp_min(1e-12)))
        x = x * self.scale
        start = {"median": geometric_median, "mean": lambda v: v.mean(0), "zero": lambda v: v.new_zeros(v.shape[1])}
        b_dec = start[self.cfg.b_dec_init](x)
        for r in self.runs:
            r.sae.b_dec.copy_(b_dec)
            if r.sae.dec is not None:
                r.sae.enc.mul_(self.cfg.enc_init_scale)

    # ----- one step
    def _lr(self, step: int, base: float) -> float:
        warm = min(1.0, (step + 1) / max(1, self.cfg.warmup))
        if self.cfg.lr is None:  # the default LR of the run length whose defaults hold now (length_at)
            seen = (step + 1) * self.cfg.batch_size
            base *= lr_short_run_factor(self.cfg.length_at(seen)) / lr_short_run_factor(self.cfg.samples)
        decay_steps = int(self.total_steps * self.cfg.decay_fraction)
        left = self.total_steps - step
        decay = min(1.0, left / decay_steps) if decay_steps > 0 else 1.0
        return base * warm * decay

    def _auxk(self, run: Run, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, list | None]:
        """AuxK on this run's dead latents: (detached loss, dead-row gradients for :meth:`_add_auxk_grads`)."""
        dead = (run.since_fired >= self.cfg.window_at((self.step + 1) * self.cfg.batch_size)).nonzero().squeeze(1)
        if dead.numel() == 0 or self.cfg.aux_coef == 0:
            return x.new_zeros(()), None
        k_aux = self.cfg.k_aux or x.shape[1] // 2
        return auxk_loss_and_grads(
            run.sae, x, x_hat, dead, k_aux, self.cfg.aux_coef, self.cfg.aux_rescale, self.distributed, self.world
        )

    _add_auxk_grads = staticmethod(add_row_grads)

    def _reduce_grads(self, run: Run) -> None:
        if not self.distributed:
            return
        grads = []
        for p in run.sae.parameters():
            assert p.grad is not None  # every parameter has its gradient by now (all ranks reduce the same list)
            grads.append(p.grad)
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def _train_step(self, run: Run, x: torch.Tensor, denom: torch.Tensor, raw: torch.Tensor) -> None:
        """One step of one SAE on the scaled batch ``x``; ``raw`` (the rows as read) keys resampling's draw."""
        sae, cfg = run.sae, self.cfg
        out = sae(x, multi_topk=cfg.multi_topk, compute_dtype=self.compute_dtype, distributed=self.distributed)
        # sq_err (the fused CPU path) was formed with the decoding: no pass of its own, forward or backward;
        # Matryoshka: the mean over the nested prefixes
        mse = normalized_mse(out.x_hat, x, denom, self.world, sq_err=out.sq_err)
        loss = mse if out.multi_x_hat is None else mse + normalized_mse(out.multi_x_hat, x, denom, self.world) / 8
        aux, aux_grads = self._auxk(run, x, out.x_hat)
        loss.backward()
        self._add_auxk_grads(aux_grads)
        self._reduce_grads(run)
        sae.remove_parallel_grad()
        if cfg.clip_grad > 0:
            _clip_grad_norm(list(sae.parameters()), cfg.clip_grad)
        for g in run.opt.param_groups:
            g["lr"] = self._lr(self.step, run.lr)
        run.opt.step()
        sae.release_grads()
        sae.normalize_decoder()
        sae.update_threshold(out.selection, cfg.threshold_step)
        counts = fire_counts(out.codes.indices, out.codes.values, sae.d_sae)
        if self.distributed:
            dist.all_reduce(counts)
        run.since_fired += cfg.batch_size
        run.since_fired[counts > 0] = 0
        window = cfg.window_at((self.step + 1) * cfg.batch_size)
        vals = out.codes.values.detach()
        resampled = 0
        # BatchTopK/Matryoshka restart dead latents only when asked to: a restarted latent's large activations on
        # the batch's largest rows took the batch's budget and set training back (FVU x100, measured)
        if self._resample_due() and (sae.threshold is None or cfg.resample_every is not None):
            dead = (run.since_fired >= window).nonzero().squeeze(1)
            x_hat, kth = out.x_hat.detach(), vals.min(1).values
            if sae.threshold is not None:  # batch selection: a new latent must beat the batch's smallest kept value
                kth = torch.full_like(kth, float(vals[vals > 0].min()) if bool((vals > 0).any()) else 0.0)
            resampled = resample_dead(
                sae, run.opt, dead, x, x_hat, kth, raw, self.step, cfg.resample_enc_scale, self.distributed, self.world
            )
        full = mse.detach() if out.prefix_sq is None else out.prefix_sq[-1] * self.world / denom
        run.stats = {
            "fvu": float(full) / self.world,
            "l0": float((vals > 0).sum(1).float().mean()),
            "aux_loss": float(aux.detach()),
            "dead_fraction": float((run.since_fired >= window).float().mean()),
            "dense_fraction": float((counts.float() / cfg.batch_size > DENSE_THRESHOLD).float().mean()),
            "resampled": resampled,
        }
        if out.prefix_sq is not None:  # each nested prefix's own FVU, smallest first
            run.stats.update({f"fvu_prefix{i}": float(p / denom) for i, p in enumerate(out.prefix_sq)})
        if sae.threshold is not None:
            run.stats["threshold"] = float(sae.threshold.mean())
        run.recent.add(run.stats)

    def _resample_due(self) -> bool:
        every, done = self.cfg.resample_steps, self.step + 1
        share = done / self.total_steps
        return bool(every) and done % every == 0 and self.cfg.resample_from < share <= self.cfg.resample_until

    def step_all(self) -> None:
        """One batch through every SAE."""
        raw = self.source.next_batch().to(self.device, non_blocking=True)
        x, s, sq = batch_moments(raw, self.scale)  # one pass on CPU: scale, column sums, squares
        if not bool(torch.isfinite(sq)):  # a NaN/inf row: drop it (counted), then redo the sums
            raw = self._finite(raw)
            x, s, sq = batch_moments(raw, self.scale)
        denom = variance_from_moments(s, sq, x.shape[0], self.distributed)
        for run in self.runs:
            self._train_step(run, x, denom, raw)
        self.step += 1

    @torch.no_grad()
    def calibrate(self) -> None:
        """BatchTopK/Matryoshka: the inference threshold from the finished SAE on the first ``init_samples`` vectors
        of the stream (the same every time, so a re-run of a finished folder writes the same threshold)."""
        if any(r.sae.threshold is not None for r in self.runs):
            x = self._init_sample() * self.scale
            for r in self.runs:
                r.sae.calibrate_threshold(x)

    # ----- checkpoints
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return ckpt.trainer_state(self)

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        ckpt.load_trainer_state(self, tensors, state)

    def save_checkpoint(self) -> None:
        tensors, state = self.state()
        if self.rank == 0:
            ckpt.save_checkpoint(self.out / "checkpoint", self.step, tensors, state)
        if self.distributed:
            dist.barrier()

    # ----- outputs
    def summaries(self) -> dict[str, dict]:
        held = getattr(self.source, "held_out", None)  # store rows [start, end) training never read
        return {
            r.name: {
                "samples_seen": self.step * self.cfg.batch_size,
                "steps": self.step,
                **r.recent.summary(),  # final_fvu, dense_fraction, l0: means over the last summary_window_steps
                "dead_fraction": r.stats.get("dead_fraction"),  # no firing in dead_window_samples: not noisy
                "last_batch": {k: r.stats.get(k) for k in ("fvu", "dense_fraction")},
                "lr": r.lr,
                "dead_window_samples": self.cfg.window,
                "multi_topk": self.cfg.multi_topk,
                "architecture": r.sae.architecture,
                **self._prefix_summary(r),
                "dtype": self.cfg.dtype,
                "nonfinite_skipped": self.nonfinite,
                "held_out_rows": list(held) if held else None,
            }
            for r in self.runs
        }

    @staticmethod
    def _prefix_summary(r: Run) -> dict[str, Any]:
        """Matryoshka: each nested prefix's own FVU (mean over the summary window) with its size."""
        sizes = r.sae.cfg.prefixes
        if not sizes:
            return {}
        return {"matryoshka_prefixes": list(sizes),
                "final_prefix_fvu": [r.recent.mean(f"fvu_prefix{i}") for i in range(len(sizes))]}  # fmt: skip

    def save_saes(self) -> list[Path]:
        paths = []
        sums = self.summaries()
        for r in self.runs:
            path = self.out if len(self.runs) == 1 else self.out / r.name
            r.sae.meta = {**self.meta, "training": sums[r.name]}
            if self.rank == 0:
                r.sae.save(path, input_scale=self.scale)
            paths.append(path)
        return paths


def _install_signals(trainer: Trainer) -> dict:
    def handler(signum, _frame):
        trainer.stop_signal = signum

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: no signal handling
            old[sig] = signal.signal(sig, handler)
    return old


def train(
    source: BatchSource, saes: list[SAEConfig], cfg: TrainConfig, out: str | Path, meta: dict | None = None
) -> TrainResult:
    """Train ``saes`` on ``source``; resume from ``out/checkpoint`` when present."""
    t = Trainer(source, saes, cfg, out, meta)
    saved = ckpt.load_checkpoint(t.out / "checkpoint")
    if saved is not None:
        t.load_state(*saved)
    else:
        t.initialise()
    old = _install_signals(t)
    logger = TrainLogger(t.out, t.total_steps, enabled=t.rank == 0, progress=cfg.progress, start=t.step)
    clock = Clock(cfg.checkpoint_every, cfg.checkpoint_every_s, distributed=t.distributed)
    try:
        while t.step < t.total_steps and t.stop_signal is None:
            tic = time.perf_counter()
            t.step_all()
            t.elapsed += time.perf_counter() - tic
            logger.step(t, time.perf_counter() - tic)
            if clock.due(t.step, t.total_steps):
                t.save_checkpoint()
    finally:
        logger.close()
        for sig, h in old.items():
            signal.signal(sig, h)
    if t.stop_signal is not None:
        t.save_checkpoint()
        return TrainResult([], t.step, True, t.summaries())
    t.calibrate()
    t.save_checkpoint()  # a re-run with the same --out is then a no-op that rewrites the SAE folders
    paths = t.save_saes()
    sums = t.summaries()
    if t.rank == 0:  # each SAE folder's marker, then (a sweep) the whole pass's in the parent folder
        for r, path in zip(t.runs, paths, strict=True):
            if path != t.out:
                SAEFolder.write_summary(path, {r.name: sums[r.name]})
        SAEFolder.write_summary(t.out, sums)
    return TrainResult(paths, t.step, False, sums)
