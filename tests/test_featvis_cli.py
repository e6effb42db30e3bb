"""`inception-sae featvis`: SAE features and neurons to PNGs + index, resume, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inception_sae.cli import main
from inception_sae.commands.featvis import parse_ids
from inception_sae.errors import UserError
from inception_sae.featvis.run import item_seed
from inception_sae.sae.model import TopKSAE, load_layer_sae

FAST = ["--render.steps", "2", "--render.param.size", "24", "--render.model-size", "40", "--weights", "random",
        "--batch-size", "4"]  # fmt: skip


def make_sae(folder: Path, layer: str = "mixed3a", d: int = 256, m: int = 24, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, m, generator=g) / d**0.5
    weights = {"W_enc": w, "W_dec": w.T.clone(), "b_enc": torch.zeros(m), "b_dec": torch.zeros(d)}
    return TopKSAE.from_tensors(weights, 8, meta={"layer": layer, "model": "random:0"}).save(folder)


@pytest.fixture
def sae_dir(tmp_path):
    return make_sae(tmp_path / "sae")


def test_parse_ids():
    assert parse_ids("0-3,7, 9") == (0, 1, 2, 3, 7, 9)
    for bad in ("x", "5-2", ","):
        with pytest.raises(UserError):
            parse_ids(bad)


def test_sae_folder_reader(sae_dir):
    sae = load_layer_sae(sae_dir).frozen(sae_dir)
    assert sae.layer == "mixed3a" and sae.d_in == 256 and sae.d_sae == 24
    assert not sae.W_enc.requires_grad
    (sae_dir / "cfg.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        load_layer_sae(sae_dir).frozen(sae_dir)


def test_features_with_diversity_index_and_resume(sae_dir, tmp_path):
    out = tmp_path / "fv"
    args = ["featvis", "--sae", str(sae_dir), "--features", "0-2", "--diversity", "2", "--out", str(out), *FAST]
    assert main(args) == 0
    names = sorted(p.name for p in (out / "mixed3a" / "f").iterdir())
    assert names == [f"{i}{s}.png" for i in range(3) for s in ("", "_div0", "_div1")]
    index = json.loads((out / "featvis.json").read_text())
    assert index["untrained_weights"] is True and index["model"] == "random:0" and index["layer"] == "mixed3a"
    section = index["layers"]["mixed3a"]["f"]
    assert section["settings"]["steps"] == 2 and section["settings"]["objective"] == "encoder"
    item = section["items"]["1"]
    assert item["png"] == "mixed3a/f/1.png" and isinstance(item["final"], float)
    assert set(item["variants"]) == {"0", "1"}
    assert item["seed"] == item_seed(0, "mixed3a", "f", 1)
    stamp = (out / "mixed3a/f/0.png").stat().st_mtime_ns
    assert main([*args[:4], "0-3", *args[5:]]) == 0  # resume: only feature 3 is new
    assert (out / "mixed3a/f/0.png").stat().st_mtime_ns == stamp
    assert (out / "mixed3a/f/3_div1.png").is_file()
    items = json.loads((out / "featvis.json").read_text())["layers"]["mixed3a"]["f"]["items"]
    assert set(items) == {"0", "1", "2", "3"}


def test_neurons_via_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "fv"
    cmd = [sys.executable, "-m", "inception_sae", "featvis", "--out", str(out), *FAST]
    r = subprocess.run([*cmd, "--layer", "mixed3a_5x5", "--neurons", "0-1"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "UNTRAINED WEIGHTS" in r.stderr
    assert sorted(p.name for p in (out / "mixed3a_5x5" / "n").iterdir()) == ["0.png", "1.png"]


def test_out_of_range_ids_fail_before_loading_the_model(sae_dir, tmp_path, capsys):
    assert main(["featvis", "--out", str(tmp_path), *FAST, "--sae", str(sae_dir), "--features", "99"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: ids out of range 0-23: [99]"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--neurons", "0"], "needs --layer"),
        (["--layer", "mixed3a"], "exactly one of"),
        (["--layer", "mixed9z", "--neurons", "0"], "unknown layer"),
        (["--features", "0"], "needs --sae"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, extra, message):
    assert main(["featvis", "--out", str(tmp_path / "o"), *FAST, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_sae_on_other_layer_is_refused(tmp_path):
    sae = make_sae(tmp_path / "s4", layer="mixed4a", d=508, m=8)
    args = ["featvis", "--sae", str(sae), "--layer", "mixed3a", "--features", "0", "--out", str(tmp_path / "o"), *FAST]
    assert main(args) == 2


class KilledError(Exception):
    """Stands in for SIGKILL in the middle of a batch's optimisation."""


def test_killed_mid_batch_resumes_from_the_batch_checkpoint(tmp_path, sae_dir):
    """Stopped after step 5 of 8, the job restarts there (not at 0) and writes the same PNG bytes as an unbroken run."""
    from inception_sae.featvis import run as featvis
    from inception_sae.featvis.param import ParamConfig
    from inception_sae.featvis.render import RenderConfig
    from inception_sae.featvis.run import FeatvisConfig, progress_view
    from inception_sae.models import load_model

    model = load_model("random", seed=0)
    render = RenderConfig(steps=8, param=ParamConfig(size=24), model_size=40)

    def job(out):
        return FeatvisConfig(out=out, layer="mixed3a", kind="f", ids=(1, 2, 3), render=render, batch_size=2,
                             sae=sae_dir)  # fmt: skip

    def run(out, stop_at=None, seen=None):
        def on_progress(p):
            (seen if seen is not None else []).append(p.steps_done)
            if stop_at is not None and p.steps_done == stop_at:
                raise KilledError

        return featvis.run(job(out), model, on_progress=on_progress, checkpoint_every_s=1e-9)

    run(tmp_path / "ref")
    with pytest.raises(KilledError):
        run(tmp_path / "cut", stop_at=8 + 5)  # second batch, after its 5th step
    assert list((tmp_path / "cut" / ".checkpoint").glob("*.safetensors"))
    seen: list[int] = []
    run(tmp_path / "cut", seen=seen)
    assert seen[:2] == [0, 6]  # first batch's PNGs exist; the second continues after its 5 saved steps
    assert not (tmp_path / "cut" / ".checkpoint").exists()
    for u in (1, 2, 3):
        rel = f"mixed3a/f/{u}.png"
        assert (tmp_path / "cut" / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes(), u
    with progress_view(None, "featvis", enabled=False) as tick:
        assert tick is None


def test_job_kind_and_branch_are_checked_from_their_types(tmp_path):
    """The branch choices are the model's branches; a bad kind or branch is a one-line error naming the choices."""
    import typing

    from inception_sae.featvis.run import FeatvisConfig
    from inception_sae.models.layers import BRANCH_ORDER
    from inception_sae.settings import choices

    assert choices(typing.get_type_hints(FeatvisConfig)["branch"]) == BRANCH_ORDER
    ok = {"out": tmp_path, "layer": "mixed3a", "ids": (1,)}
    assert FeatvisConfig(**ok, kind="n", branch="5x5").branch == "5x5"
    with pytest.raises(UserError, match="branch must be one of 1x1, 3x3, 5x5, pool; got '7x7'"):
        FeatvisConfig(**ok, kind="f", branch="7x7")
    with pytest.raises(UserError, match="kind must be one of f, n; got 'x'"):
        FeatvisConfig(**ok, kind="x")
