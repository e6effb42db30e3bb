"""The training stage's one entry (``sae.train_stage.run``): the same SAEs as the trainer it wraps, its completion
marker written through ``SAEFolder``, and bad configs refused in one line."""

import json

import pytest
import torch
from factories.sae import planted
from safetensors.torch import load_file

from inception_sae import ActivationStore
from inception_sae.data.reader import StoreSource
from inception_sae.errors import UserError
from inception_sae.sae.architecture import SAESettings
from inception_sae.sae.folder import SUMMARY_FILE, SAEFolder
from inception_sae.sae.model import WEIGHTS_FILE, SAEConfig
from inception_sae.sae.train import TrainConfig, train
from inception_sae.sae.train_config import TrainSettings
from inception_sae.sae.train_stage import TrainStageConfig, run
from inception_sae.settings import values

SETTINGS = TrainSettings(samples=2048, batch_size=256, checkpoint_every=0, checkpoint_every_s=0, log_every=1)


@pytest.fixture
def store(tmp_path):
    X, _ = planted(1024, d=16, features=48, active=2, seed=3)
    return ActivationStore.write(tmp_path / "store", X.numpy(), "mixed3a", meta={"model": "random:0"})


def test_run_trains_the_sweep_as_the_trainer_does_and_marks_it_complete(tmp_path, store):
    sweep = (SAESettings(k=4, latents=64, seed=0), SAESettings(k=2, latents=64, seed=0))
    cfg = TrainStageConfig(out=tmp_path / "stage", store=store.path, saes=sweep, **values(SETTINGS), held_out=200)
    result = run(cfg, progress=False)
    assert not result.interrupted and result.steps == 8
    assert [p.name for p in result.paths] == ["k4_m64_init_s0", "k2_m64_init_s0"]
    summary = json.loads((tmp_path / "stage" / SUMMARY_FILE).read_text())  # the whole sweep's
    assert set(summary) == {p.name for p in result.paths}
    for p in result.paths:  # and each SAE folder's own marker
        assert SAEFolder.is_complete(p) and json.loads((p / SUMMARY_FILE).read_text()) == {p.name: summary[p.name]}
    assert summary["k4_m64_init_s0"]["held_out_rows"] == [824, 1024]  # the tail eval measures on, never read

    # the lower-level trainer on the source the stage describes: bitwise the same SAEs
    source = StoreSource(store, 256, seed=0, held_out=(824, 1024))
    saes = [SAEConfig.from_spec(s, 16) for s in sweep]
    ref = train(source, saes, TrainConfig(progress=False, **values(SETTINGS)), tmp_path / "ref")
    for mine, theirs in zip(result.paths, ref.paths, strict=True):
        a, b = load_file(mine / WEIGHTS_FILE), load_file(theirs / WEIGHTS_FILE)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert summary["k4_m64_init_s0"]["final_fvu"] < 0.9  # a planted 2-sparse signal is partly learnt in 8 steps


def test_one_sae_writes_its_folder_and_the_marker_last(tmp_path, store):
    out = tmp_path / "sae"
    notes: list[str] = []
    run(TrainStageConfig(out=out, store=store.path, saes=(SAESettings(k=4, latents=32),), **values(SETTINGS)),
        progress=False, on_note=notes.append)  # fmt: skip
    assert SAEFolder.is_complete(out) and SAEFolder.d_sae(out) == 32
    assert len(notes) == 1 and "held out from training" in notes[0]  # the reader's line: what training skips
    (out / SUMMARY_FILE).unlink()  # weights without the marker: a killed run, not a finished one
    assert not SAEFolder.is_complete(out)


def test_bad_configs_are_refused_in_one_line(tmp_path, store):
    with pytest.raises(UserError, match="exactly one"):
        TrainStageConfig(out=tmp_path, store=store.path, images=tmp_path)
    with pytest.raises(UserError, match="exactly one"):
        TrainStageConfig(out=tmp_path)
    with pytest.raises(UserError, match="needs a layer"):
        TrainStageConfig(out=tmp_path, images=tmp_path)
    with pytest.raises(UserError, match="no SAE"):
        TrainStageConfig(out=tmp_path, store=store.path, saes=())
    big = TrainStageConfig(out=tmp_path / "x", store=store.path, batch_size=2048)
    with pytest.raises(UserError, match="fewer than one batch of 2048"):
        run(big, progress=False)
    assert not (tmp_path / "x" / SUMMARY_FILE).exists()
