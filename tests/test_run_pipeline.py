"""`inception-sae run` end to end on two layers: SIGKILL during training, rerun resumes without re-harvesting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from factories import run_args, run_cli_process, synthetic_images
from factories.cli import cli_command, process_env
from factories.site import read_js

pytestmark = pytest.mark.slow

#: Two layers (so circuits run between them), 16 images, long enough training to be killed in the middle.
LAYERS = ("mixed3b", "mixed4a")
# 200 steps with a checkpoint every 20: the kill after the first checkpoint lands mid-training
# with ~180 steps to spare, whatever the machine's load (50 steps raced the 0.2 s poll).
OVERRIDES = {"train.samples": 25600, "train.batch_size": 128, "train.checkpoint_every": 20,
             "analyze.render_intervals": 0, "analyze.render_top": 1}  # fmt: skip


def snapshot(store) -> dict:
    """Every store file's (mtime_ns, size) and the manifest's bytes."""
    files = {p.relative_to(store).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
             for p in store.rglob("*") if p.is_file()}  # fmt: skip
    return {"files": files, "manifest": (store / "manifest.json").read_bytes()}


def test_run_killed_in_training_resumes_without_reharvesting(tmp_path):
    images = synthetic_images(tmp_path / "images", 16)
    run = tmp_path / "run"
    args = run_args(images, run, LAYERS, OVERRIDES)
    proc = subprocess.Popen(cli_command(*args), env=process_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "mixed3b" / "sae" / "checkpoint" / "state.json"  # the commit point of a checkpoint
    try:
        deadline = time.time() + 300
        while not ckpt.is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "run ended before its first training checkpoint"
        assert ckpt.is_file()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = run / "mixed3b" / "store"
    assert json.loads((store / "manifest.json").read_text())["status"] == "complete"
    assert not (run / "mixed3b" / "sae" / "train_summary.json").exists()  # killed mid-training
    before = snapshot(store)
    time.sleep(0.05)

    done = run_cli_process(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert snapshot(store) == before  # the harvest was neither redone nor touched
    assert "harvest mixed3b" in done.stderr and "skipped (complete)" in done.stderr
    log = [json.loads(line) for line in (run / "mixed3b" / "sae" / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "step" in r]
    assert steps[-1] == 200 and steps.count(steps[0]) == 1  # resumed from a checkpoint, not restarted at step 1
    summary = json.loads((run / "mixed3b" / "sae" / "train_summary.json").read_text())
    assert next(iter(summary.values()))["steps"] == 200
    for layer in LAYERS:
        assert (run / layer / "eval.json").is_file() and (run / layer / "analysis" / "summary.json").is_file()
        assert (run / layer / "featvis" / "featvis.json").is_file()
    assert json.loads((run / "circuits" / "mixed3b__mixed4a" / "summary.json").read_text())["focus"]
    cmp = json.loads((run / "compare" / "mixed3b__mixed4a" / "compare.json").read_text())
    assert cmp["images"]["positions_per_image"] == 14 * 14  # mixed3b's 28x28 grid pooled onto mixed4a's
    assert (run / "site" / "data" / "compare" / "0.js").is_file()
    assert (run / "site" / "index.html").is_file() and (run / "config.yaml").is_file()
    for layer in LAYERS:  # every layer's dashboard headline is its own eval.json, not only a single layer's
        ev = json.loads((run / layer / "eval.json").read_text())
        head = read_js(run / "site" / "data" / layer / "index.js")[1]["headline"]
        assert ev["layer"] == layer and ev["store"]["held_out"] is True
        assert head["fvu"] == ev["store"]["fvu"] and head["fvu_on"] == "held-out store rows"
        assert head["splice_top1"] == ev["splice"]["training_positions"]["top1_agreement"]
        assert head["splice_kl"] == ev["splice"]["training_positions"]["kl"]
        assert head["eval_report"] == str(run / layer / "eval.json")
    assert f"open {run / 'site' / 'index.html'}" in done.stdout.replace("\n", "")

    again = run_cli_process(*args)  # everything complete: every stage is skipped
    assert again.returncode == 0 and again.stderr.count("skipped (complete)") == 2 * 5 + 3

    changed = run_cli_process(
        *args, "--set", "train.lr=0.001"
    )  # another config for a finished stage: refused, nothing lost
    assert changed.returncode == 2 and "different train config (train.lr: None -> 0.001)" in changed.stderr
    assert snapshot(store) == before and (run / "mixed3b" / "sae" / "sae_weights.safetensors").is_file()
    site_only = run_cli_process(*args, "--force-stage", "site")  # redo just the last stage
    assert site_only.returncode == 0 and site_only.stderr.count("skipped (complete)") == 2 * 5 + 2
    assert "site" in site_only.stderr and (run / "site" / "index.html").is_file()
    # a new title (cosmetic) and more workers (how, not what) reuse every finished stage; the site shows the title
    titled = run_cli_process(*args, "--set", "site.title=Another title", "--set", "harvest.workers=1")
    assert titled.returncode == 0 and titled.stderr.count("skipped (complete)") == 2 * 5 + 2, titled.stderr
    assert read_js(run / "site" / "data" / "site.js")[1]["title"] == "Another title"
