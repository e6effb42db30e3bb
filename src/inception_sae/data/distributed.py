"""The little of torch.distributed a harvest and a training run need: who am I, a barrier, gathered rows.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them a
run is a single process and no process group is created.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a data-parallel job."""

    rank: int = 0  #: global rank
    world: int = 1  #: number of processes
    local_rank: int = 0  #: rank on this node (picks the GPU)

    @classmethod
    def from_environ(cls) -> DistEnv:
        """Read torchrun's variables (defaults: a single process)."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    def device(self, device: str) -> str:
        """``cuda`` becomes ``cuda:<local rank>`` in multi-process runs."""
        return f"cuda:{self.local_rank}" if self.world > 1 and device == "cuda" else device


@contextmanager
def process_group(env: DistEnv, device: str) -> Iterator[None]:
    """Init a process group (nccl on CUDA, gloo on CPU) for world > 1; destroy it on exit."""
    import torch.distributed as dist

    created = env.world > 1 and not dist.is_initialized()
    if created:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend, rank=env.rank, world_size=env.world)
    try:
        yield
    finally:
        if created:
            shutdown()


def shutdown() -> None:
    """Destroy the default process group, then collect garbage while the interpreter is still whole.

    Without the collection a rank of a two-process gloo run aborted at interpreter exit, after its work was
    written ("terminate called without an active exception", SIGABRT), in about 1 run in 10: gloo's finished
    work can keep tensors alive until finalisation, when releasing them needs a GIL that is gone. With it, 0 in 120.
    """
    import gc

    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op in a single process)."""
    if env.world > 1:
        import torch.distributed as dist

        dist.barrier()


def gather_rows(t: torch.Tensor, distributed: bool, world: int) -> torch.Tensor:
    """Every rank's rows of ``t``, in rank order (``t`` itself in a single process)."""
    if not distributed:
        return t
    import torch.distributed as dist

    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)
