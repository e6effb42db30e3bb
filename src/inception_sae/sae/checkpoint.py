"""Training checkpoints as safetensors + JSON (no pickle), written atomically.

A checkpoint folder holds ``state.json`` (step, data cursor, configs, optimiser
hyper-parameters) naming one ``tensors-<step>.safetensors`` (weights, Adam moments,
dead-latent counters, RNG state), written by :func:`inception_sae.checkpoint.save`:
``state.json`` is replaced atomically only after its tensors file is complete, so a
run killed at any instant (even SIGKILL) leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import checkpoint
from ..errors import UserError

STATE_FILE = "state.json"


def save_checkpoint(folder: str | Path, step: int, tensors: dict[str, Tensor], state: dict[str, Any]) -> Path:
    """Write ``tensors-<step>.safetensors``, then atomically point ``state.json`` at it; remove older ones."""
    checkpoint.save(folder, f"tensors-{step:09d}.safetensors", tensors, state, pointer=STATE_FILE,
                    stale="tensors-*.safetensors*")  # fmt: skip
    return Path(folder)


def load_checkpoint(folder: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """(tensors, state) of the last complete checkpoint in ``folder``; None when there is none."""
    return checkpoint.load(folder, STATE_FILE)


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, Tensor], list[dict]]:
    """Adam state as flat tensors ``{prefix}/{param_index}/{name}`` + JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            tensors[f"{prefix}/{pid}/{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list[dict], prefix: str) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "/"):
            pid, name = key[len(prefix) + 1 :].split("/", 1)
            state.setdefault(int(pid), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _saes_state(saes: list) -> list[dict]:
    """SAE configs as a checkpoint's JSON holds them (tuples as lists; older checkpoints: TopK)."""
    return [{"architecture": "topk", "prefixes": [], **json.loads(json.dumps(c))} for c in saes]


def trainer_state(self: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Everything that shapes a trainer's weights from here on: tensors (weights, buffers such as a BatchTopK
    threshold, Adam moments, dead counters, RNG) and the JSON state (step, data cursor, configs)."""
    tensors: dict[str, Tensor] = {"rng/torch": torch.get_rng_state()}
    groups = {}
    for r in self.runs:
        for pname, p in r.sae.named_parameters():
            tensors[f"{r.name}/param/{pname}"] = p.detach()
        for bname, b in r.sae.named_buffers():
            tensors[f"{r.name}/buffer/{bname}"] = b.detach()
        tensors[f"{r.name}/since_fired"] = r.since_fired
        opt_t, groups[r.name] = optimizer_tensors(r.opt, f"{r.name}/opt")
        tensors.update(opt_t)
    state = {
        "step": self.step,
        "samples_seen": self.step * self.cfg.batch_size,
        "scale": self.scale,
        "elapsed_s": self.elapsed,
        "nonfinite_skipped": self.nonfinite,
        "source": self.source.state_dict(),
        "train_config": asdict(self.cfg),
        "saes": [asdict(c) for c in self.saes],
        "optimizer_groups": groups,
        "world": self.world,
        "recent": {r.name: r.recent.state_dict() for r in self.runs},
        "last_stats": {r.name: r.stats for r in self.runs},  # a resumed, finished run still reports them
    }
    return tensors, state


def load_trainer_state(self: Any, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
    """Restore :func:`trainer_state` into a trainer built for the same SAEs and run."""
    if _saes_state(state["saes"]) != _saes_state([asdict(c) for c in self.saes]):
        raise UserError(f"{self.out}/checkpoint is for other SAEs ({state['saes']}); use a new --out")
    for key in ("batch_size", "samples", "dtype", "multi_topk"):
        if state["train_config"][key] != getattr(self.cfg, key):
            raise UserError(f"checkpoint has {key}={state['train_config'][key]}, this run {getattr(self.cfg, key)}")
    self.step, self.scale, self.elapsed = int(state["step"]), float(state["scale"]), float(state["elapsed_s"])
    self.nonfinite = int(state.get("nonfinite_skipped", 0))
    self.source.load_state_dict(state["source"])
    torch.set_rng_state(tensors["rng/torch"])
    with torch.no_grad():
        for r in self.runs:
            for pname, p in r.sae.named_parameters():
                p.copy_(tensors[f"{r.name}/param/{pname}"])
            for bname, b in r.sae.named_buffers():
                b.copy_(tensors[f"{r.name}/buffer/{bname}"])
            r.since_fired.copy_(tensors[f"{r.name}/since_fired"])
            r.recent.load_state_dict(state.get("recent", {}).get(r.name, []))
            r.stats = dict(state.get("last_stats", {}).get(r.name, {}))
            restore_optimizer(r.opt, tensors, state["optimizer_groups"][r.name], f"{r.name}/opt")
