"""Subprocess worker for the resume and DDP tests: trains a tiny SAE on seeded data.

usage: python -m factories.sae_worker OUT SAMPLES CHECKPOINT_EVERY [SLEEP_S]  (with tests/ and src/ on PYTHONPATH)
Under torchrun it trains data-parallel (gloo); each rank reads its slice of every global batch.
"""

import os
import sys
import time

import torch
import torch.distributed as dist

from inception_sae.data.distributed import shutdown
from inception_sae.data.source import ArraySource
from inception_sae.sae.model import SAEConfig
from inception_sae.sae.train import TrainConfig, train

D, M, K, BATCH = 16, 64, 4, 64


def data() -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    return torch.randn(4096, D, generator=g).relu() * 3 + 0.1


class SlowSource(ArraySource):
    """ArraySource that sleeps per batch, so a test can kill the run mid-way."""

    sleep = 0.0

    def next_batch(self):
        time.sleep(self.sleep)
        return super().next_batch()


def config(samples: int, every: int) -> TrainConfig:
    # lr pinned at 3.2e-3 (the default at m=64 before it doubled): at 6.4e-3 the rounding difference of the
    # two-rank gradient average grew past the DDP test's 1e-4 within 12 steps; equivalence is what is tested
    # restarts of dead latents every 3 steps from the start: their draw (keyed by the rows' bits, the seed and
    # the step, out of the gathered global batch) must resume and shard exactly too
    return TrainConfig(samples=samples, batch_size=BATCH, warmup_steps=5, checkpoint_every=every, progress=False,
                       log_every=1, dead_window=128, lr=3.2e-3, resample_every=3, resample_from=0.0,
                       resample_until=1.0)  # fmt: skip


def saes() -> list[SAEConfig]:
    arch = os.environ.get("SAE_WORKER_ARCHITECTURE", "topk")  # the architecture tests train the others too
    return [
        SAEConfig(D, M, K, "init", seed=0, architecture=arch),
        SAEConfig(D, M, 2 * K, "full", seed=1, architecture=arch),
    ]


def main() -> None:
    out, samples, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world > 1:
        dist.init_process_group("gloo")
        rank = dist.get_rank()
    src = SlowSource(data().numpy(), BATCH // world, seed=7, rank=rank, world=world)
    src.sleep = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    train(src, saes(), config(samples, every), out)
    if world > 1:
        shutdown()  # what the train command does: without it a rank could abort at exit


if __name__ == "__main__":
    main()
