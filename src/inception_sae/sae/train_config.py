"""Settings shared by the SAEs trained in one pass; docs/training.md explains the defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import UserError
from ..settings import Settings
from .model import LR_SHORT_RUN_SAMPLES

ComputeDtype = Literal["float32", "bfloat16", "fp32", "bf16"]
#: torch dtype of the encoder GEMM for each ComputeDtype (None: float32)
DTYPES = {"float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass(frozen=True, kw_only=True)
class TrainSettings(Settings):
    """How the SAEs of one pass are trained: what ``run``'s ``train`` section and the ``train`` flags set."""

    samples: int = 10_000_000
    """training length in vectors (global, all ranks together)"""
    batch_size: int = 4096
    """global batch size (split across ranks)"""
    lr: float | None = None
    """Adam LR; None = model.default_lr(m, samples): 2e-4/sqrt(m/2^14), x8 in short runs"""
    anytime: bool = True
    """the run-length defaults (LR, warm-up, dead_window) of a run longer than 2M samples follow the samples seen so far
    (at least 2M), so any point of a long run trains like a run of that length but for the final decay
    (docs/training.md); False: those of the planned length throughout"""
    warmup_steps: int | None = None
    """linear LR warm-up; None = min(100, 2% of the steps of length_at(0)) (docs/training.md)"""
    decay_fraction: float = 0.1
    """final share of steps with linear LR decay to 0"""
    clip_grad: float = 1.0
    """gradient-norm clip per SAE (0 = off)"""
    adam_eps: float = 6.25e-10
    """Gao et al.'s Adam epsilon"""
    dead_window: int | None = None
    """samples without firing before a latent counts dead (and AuxK trains it); None = min(10M, samples/40), at least 4
    batches (docs/training.md)"""
    k_aux: int | None = None
    """dead latents in the AuxK loss; None = d/2"""
    aux_coef: float = 1 / 32
    """AuxK coefficient (0 = off)"""
    aux_rescale: bool = True
    """scale the AuxK reconstruction by its least-squares factor (<= 1) before the loss. Without it the summed k_aux
    dead latents overshoot the small residual, AuxK shrinks them until ReLU closes and they never revive (measured:
    benchmarks/LOG.md); with it AuxK trains their direction, not their size."""
    resample_every: int | None = None
    """steps between restarts of dead latents on badly reconstructed rows (sae/resample.py; Bricken et al. 2023, with a
    bias set for TopK); None = the dead window in steps (at the end of the run) for TopK and off for
    BatchTopK/Matryoshka (docs/training.md, "Architectures"), 0 = off"""
    resample_from: float = 0.5
    """no restarts before this share of the steps"""
    resample_until: float = 0.95
    """nor after this share, so that every restarted latent still trains"""
    resample_enc_scale: float = 1.0
    """a restarted encoder row's norm, x the median live one"""
    multi_topk: bool = False
    """add L(4k)/8 (Gao et al. MultiTopK)"""
    threshold_rate: float | None = None
    """BatchTopK/Matryoshka: the step size of the running threshold's update toward the value that as many of a batch's
    pre-activations exceed as its selection keeps; None = max(0.01, 20 / steps) (docs/training.md)"""
    normalize_input: bool = True
    """train on s*x with mean ||s*x||^2 = d; s is folded out on save"""
    b_dec_init: Literal["median", "mean", "zero"] = "median"
    """b_dec start: geometric median (Gao), mean or zero"""
    init_samples: int = 16384
    """vectors used for the input scale and the b_dec geometric median"""
    enc_init_scale: float = 0.5
    """encoder rows start as this x the unit decoder rows (tie="init"; docs/training.md)"""
    dtype: ComputeDtype = "float32"
    """compute dtype of the encoder GEMM: float32 or bfloat16"""
    checkpoint_every: int = 1000
    """steps between checkpoints (0: only on signals, the time rule and at the end)"""
    checkpoint_every_s: float = 300.0
    """also checkpoint when this many seconds passed since the last (0: off)"""
    log_every: int = 10
    """steps between JSONL log lines"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples < 1 or self.batch_size < 1:
            raise UserError("samples and batch_size must be positive")
        if not 0 <= self.decay_fraction <= 1:
            raise UserError("decay_fraction must be in [0, 1]")
        if (self.resample_every or 0) < 0 or not 0 <= self.resample_from <= self.resample_until <= 1:
            raise UserError("resample_every must be >= 0, and 0 <= resample_from <= resample_until <= 1")
        if self.threshold_rate is not None and not 0 < self.threshold_rate <= 1:
            raise UserError(f"threshold_rate must be in (0, 1], got {self.threshold_rate}")

    @property
    def threshold_step(self) -> float:
        """The inference threshold's step size (``threshold_rate`` or its default)."""
        if self.threshold_rate is not None:
            return self.threshold_rate
        return min(1.0, max(0.01, 20 / math.ceil(self.samples / self.batch_size)))

    def length_at(self, seen: int) -> int:
        """The run length whose defaults hold after ``seen`` samples: the planned length, or with ``anytime`` the
        samples seen so far, between 2M and the planned length (so runs up to 2M samples keep their own)."""
        if not self.anytime:
            return self.samples
        return min(self.samples, max(seen, int(LR_SHORT_RUN_SAMPLES)))

    @property
    def warmup(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(100, math.ceil(0.02 * math.ceil(self.length_at(0) / self.batch_size)))

    def window_at(self, seen: int) -> int:
        """Samples without firing before a latent counts dead, after ``seen`` samples of the run."""
        return self.dead_window or max(4 * self.batch_size, min(10_000_000, self.length_at(seen) // 40))

    @property
    def window(self) -> int:
        """The dead window at the end of the run."""
        return self.window_at(self.samples)

    @property
    def resample_steps(self) -> int:
        """Steps between restarts of dead latents (0: none)."""
        if self.resample_every is not None:
            return self.resample_every
        return max(1, self.window // self.batch_size)


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainSettings):
    """Everything shared by the SAEs trained in one pass: the settings, the device and the progress bar."""

    device: str = "cpu"
    """torch device"""
    progress: bool = True
    """show a progress bar"""
