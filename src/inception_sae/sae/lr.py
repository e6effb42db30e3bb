"""The default Adam learning rate of an SAE: the literature's, scaled for short runs (docs/training.md)."""

from __future__ import annotations

import math

#: The run length the literature's SAE learning rates were tuned at (Gao et al.; sparsify): about 1e9 vectors.
LR_TUNED_SAMPLES = 1e9
#: The short-run factor on that LR, and the run length up to which it holds (measured best or near-best
#: at 0.4-1.6M samples on every data family: docs/training.md).
LR_SHORT_RUN_MAX = 8.0
LR_SHORT_RUN_SAMPLES = 2e6


def lr_short_run_factor(samples: float) -> float:
    """The factor on the literature's LR for a run of ``samples`` vectors: x8 up to 2M, falling log-linearly in
    the run length to x1 at 1e9 (x1 beyond)."""
    n = min(max(samples, LR_SHORT_RUN_SAMPLES), LR_TUNED_SAMPLES)
    slope = math.log(LR_SHORT_RUN_MAX) / math.log(LR_TUNED_SAMPLES / LR_SHORT_RUN_SAMPLES)
    return (LR_TUNED_SAMPLES / n) ** slope


def default_lr(d_sae: int, samples: float = LR_TUNED_SAMPLES) -> float:
    """Adam LR for an SAE of ``d_sae`` latents trained on ``samples`` vectors.

    The literature's 2e-4 / sqrt(m / 2**14) (sparsify, dictionary_learning), tuned on runs of about
    1e9 vectors, times a short-run factor: x8 up to 2M samples, falling log-linearly in the run length
    to x1 at 1e9 (x1 beyond). A short run ends before its decoder rows have turned to their directions
    at the literature's LR; larger steps, annealed by the final decay, gave a lower held-out FVU at
    0.4-1.6M samples on every data family measured (docs/training.md). This is the LR a run ends at;
    with ``TrainConfig.anytime`` (the default) a longer run starts higher (``TrainConfig.length_at``).
    """
    return 2e-4 / math.sqrt(d_sae / 2**14) * lr_short_run_factor(samples)
