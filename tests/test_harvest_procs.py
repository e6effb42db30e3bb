"""Harvest as separate processes: SIGKILL mid-run then resume, and a 2-process torchrun (gloo).

The images sit in class folders listed class by class (as ImageNet does); every run must visit them in the
same seeded order, so the store's consecutive rows mix the classes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from factories import make_images
from factories.cli import cli_command, process_env
from factories.images import classes_per_window
from factories.stores import store_as_dict

from inception_sae import ActivationStore
from inception_sae.data.subsets import class_of, visit_order

ARGS = ["--weights", "random", "--layer", "mixed4d", "--resize", "56", "--crop", "48", "--per-image", "3",
        "--no-progress"]  # fmt: skip


def env() -> dict[str, str]:
    return process_env(OMP_NUM_THREADS="1")


def cli(*args: str) -> list[str]:
    return cli_command("harvest", *args)


def complete_store(path: Path) -> dict[tuple, np.ndarray]:
    """The complete, verified store at ``path`` as a set (see ``store_as_dict``)."""
    store = ActivationStore.open(path)
    assert store.status == "complete" and store.verify() == []
    return store_as_dict(store)


def visits(path: Path, rank: int | None = None) -> list[int]:
    """Image indices in the order the store (or one rank's shards) holds them."""
    store = ActivationStore.open(path)
    owner = np.repeat([s["rank"] for s in store.shards], [s["count"] for s in store.shards])
    ids = store.image_ids if rank is None else store.image_ids[owner == rank]
    return list(dict.fromkeys(ids.tolist()))


def assert_class_mixed(path: Path) -> None:
    store = ActivationStore.open(path)
    labels = [class_of(store.images[i]) for i in store.image_ids]
    # 8 consecutive images (24 rows): listing order gives 2 classes, random order 4 x (1 - C(12,8)/C(16,8)) = 3.85
    assert classes_per_window(labels, 24) >= 3.5
    assert classes_per_window(sorted(labels), 24) == 2


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=2e-3) for k in a)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("procs") / "img", 4, classes=4, seed=1, suffix=".png")


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ref") / "s"
    subprocess.run(cli("--images", str(images), "--out", str(out), *ARGS, "--workers", "0"), env=env(), check=True)
    return complete_store(out)


def shards_in_manifest(path: Path) -> int:
    try:
        return len(json.loads((path / "manifest.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(images, reference, tmp_path):
    out = tmp_path / "s"
    args = cli("--images", str(images), "--out", str(out), *ARGS, "--batch-size", "2", "--shard-size", "6")
    proc = subprocess.Popen([*args, "--workers", "1"], env=env())
    deadline = time.time() + 120
    while shards_in_manifest(out) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "harvest finished before it could be killed; use more images"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = json.loads((out / "manifest.json").read_text())
    assert killed["status"] == "in_progress" and 1 <= len(killed["shards"]) < 8
    subprocess.run([*args, "--workers", "0"], env=env(), check=True)
    assert same(complete_store(out), reference)
    assert visits(out) == visit_order(16, 0).tolist()  # the uninterrupted order, kept across the kill
    assert_class_mixed(out)
    listed = {Path(s[k]).name for s in ActivationStore.open(out).shards for k in ("file", "provenance")}
    assert {p.name for p in (out / "shards").iterdir()} == listed  # no orphans or tmp files left


@pytest.mark.slow
def test_torchrun_two_processes_killed_then_resumed_equal_one(images, reference, tmp_path):
    out = tmp_path / "s"
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = [*run, "-m", "inception_sae", "harvest", "--images", str(images), "--out", str(out), *ARGS]
    args += ["--workers", "0", "--shard-size", "3", "--batch-size", "1"]
    proc = subprocess.Popen(args, env=env(), start_new_session=True)  # its own group: kill all ranks at once
    deadline = time.time() + 180
    while shards_in_manifest(out) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if killed:
        assert json.loads((out / "manifest.json").read_text())["status"] == "in_progress"
    subprocess.run(args, env=env(), check=True, timeout=240)
    assert {Path(s["file"]).name.split("-")[0] for s in ActivationStore.open(out).shards} == {"rank0", "rank1"}
    assert same(complete_store(out), reference)
    for rank in (0, 1):  # rank r took visits r, r + 2, ... of the same seeded order
        assert visits(out, rank) == visit_order(16, 0)[rank::2].tolist()
    assert_class_mixed(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world"] == 2 and manifest["images_done"] == 16 and killed
