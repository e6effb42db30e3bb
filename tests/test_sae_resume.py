"""Exact resume after SIGKILL, and data-parallel training (2 CPU processes on gloo) == one process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from factories.cli import process_env
from safetensors.torch import load_file

#: The training process, run as a module so that only ``src`` and ``tests`` are on its path.
WORKER = ["-m", "factories.sae_worker"]


def _env():
    return process_env(OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for sub in sorted(p for p in folder.iterdir() if (p / "sae_weights.safetensors").is_file()):
        for k, v in load_file(str(sub / "sae_weights.safetensors")).items():
            out[f"{sub.name}/{k}"] = v
    assert out, f"no SAE folders in {folder}"
    return out


def _run(args, **kw):
    return subprocess.run([sys.executable, *WORKER, *map(str, args)], env=_env(), check=True, timeout=120, **kw)


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_identical(tmp_path):
    samples, every = 64 * 40, 5
    _run([tmp_path / "ref", samples, every])
    proc = subprocess.Popen([sys.executable, *WORKER, *map(str, (tmp_path / "cut", samples, every, 0.05))], env=_env())
    state = tmp_path / "cut" / "checkpoint" / "state.json"
    deadline = time.time() + 60
    while time.time() < deadline and not (state.is_file() and '"step": 15' in state.read_text()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "train_summary.json").exists(), "run finished before it was killed"
    resumed = _run([tmp_path / "cut", samples, every], capture_output=True, text=True)  # resumes from the checkpoint
    step = json.loads(state.read_text())["step"]  # the final checkpoint; the resume printed the one it started at
    assert step == samples // 64 and "resumed from step " in resumed.stderr, resumed.stderr
    records = [json.loads(line) for line in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in records if "step" in r]  # the other records say what the data is
    assert logged == list(
        range(1, samples // 64 + 1)
    )  # each step once, though steps after the kill's checkpoint ran twice
    restarts = sum(s["resampled"] for r in records if "step" in r for s in r["saes"].values())
    assert restarts > 0, "no latent was resampled: the test would not cover resampling"
    ref, cut = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert ref.keys() == cut.keys()
    for k in ref:
        assert torch.equal(ref[k], cut[k]), k


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    samples = 64 * 12
    _run([tmp_path / "one", samples, 0])
    # --standalone: a free port of its own, so a port still held by another process cannot fail the run
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *WORKER, str(tmp_path / "two"), str(samples), "0"]  # fmt: skip
    r = subprocess.run(cmd, env=_env(), timeout=120, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert sum(s["resampled"] for r in records if "step" in r for s in r["saes"].values()) > 0
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-4, msg=k)


def test_checkpoints_by_time_as_well_as_steps(tmp_path, monkeypatch):
    """checkpoint_every=0 with a time rule still checkpoints mid-run; without it only the final one is written."""
    from factories.sae_worker import data, saes

    from inception_sae.data.source import ArraySource
    from inception_sae.sae import checkpoint as ckpt
    from inception_sae.sae.train import TrainConfig, train

    saved: list[int] = []
    real = ckpt.save_checkpoint
    monkeypatch.setattr(ckpt, "save_checkpoint", lambda folder, step, *a: saved.append(step) or real(folder, step, *a))
    for every_s, want in ((1e-9, list(range(1, 11))), (0.0, [10])):
        saved.clear()
        cfg = TrainConfig(samples=640, batch_size=64, checkpoint_every=0, checkpoint_every_s=every_s, progress=False,
                          warmup_steps=2, init_samples=256)  # fmt: skip
        train(ArraySource(data().numpy(), 64, seed=0), saes()[:1], cfg, tmp_path / f"t{every_s}")
        assert saved == want
