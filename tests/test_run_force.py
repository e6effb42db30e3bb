"""`run --force-stage X` end to end for every stage, and a broken stage output that is redone.

One finished run is made once per module and only read; each case continues its own copy of it.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from factories import run_args, run_cli_process, synthetic_images

pytestmark = pytest.mark.slow

#: No splice-back images in eval and fewer rendered examples in analyze: the stages run up to six times here.
FAST = {"eval.max_images": 0, "analyze.render_intervals": 0, "analyze.render_top": 1}
STAGES = ("harvest", "train", "eval", "analyze", "featvis", "site")
#: What each stage writes for mixed3b; its mtime tells whether the stage ran again.
OUTPUT = {"harvest": "mixed3b/store/manifest.json", "train": "mixed3b/sae/sae_weights.safetensors",
          "eval": "mixed3b/eval.json", "analyze": "mixed3b/analysis/summary.json",
          "featvis": "mixed3b/featvis/featvis.json", "site": "site/index.html"}  # fmt: skip


def force_args(images, run) -> list[str]:
    """`run` of ``images`` into ``run`` with the FAST settings, progress bars on."""
    args = run_args(images, run, overrides=FAST)
    args.remove("--no-progress")
    return args


@pytest.fixture(scope="module")
def finished_run_read_only(tmp_path_factory):
    """(run folder, images) of a complete tiny run, made once for the module and shared READ-ONLY.

    No case writes to it: each takes its own copy through :func:`own_run` (checked when the module ends).
    """
    root = tmp_path_factory.mktemp("force")
    images = synthetic_images(root / "images", 12)
    first = run_cli_process(*force_args(images, root / "run"))
    assert first.returncode == 0, first.stderr[-2000:]
    # piped: stdout holds only the result line (bars and stage lines go to stderr), nothing cut at 80 columns
    assert first.stdout.splitlines() == [f"open {root / 'run' / 'site' / 'index.html'}  or  inception-sae site serve "
                                         f"{root / 'run' / 'site'}"]  # fmt: skip
    assert any(len(line) > 80 for line in first.stderr.splitlines())
    before = file_times(root / "run")
    yield root / "run", images
    assert file_times(root / "run") == before, "a case changed the shared run"


def file_times(folder) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def own_run(finished_run_read_only, tmp_path):
    """This case's copy of the finished run (file times kept), and the arguments that continue it."""
    done, images = finished_run_read_only
    run = shutil.copytree(done, tmp_path / "run")  # copy2: modification times kept
    return run, force_args(images, run)


def mtimes(run) -> dict[str, int]:
    return {s: (run / p).stat().st_mtime_ns for s, p in OUTPUT.items()}


@pytest.mark.parametrize("stage", STAGES)
def test_force_stage_redoes_it_and_the_stages_after(own_run, stage):
    run, args = own_run
    before = mtimes(run)
    r = run_cli_process(*args, "--force-stage", stage)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "run complete" in r.stderr
    after = mtimes(run)
    redone = STAGES[STAGES.index(stage) :]
    assert [s for s in STAGES if after[s] != before[s]] == list(redone)
    assert r.stderr.count("skipped (complete)") == len(STAGES) - len(redone)
    assert json.loads((run / "mixed3b" / "eval.json").read_text())["store"]["fvu"] >= 0


def test_truncated_sae_weights_are_not_complete(own_run):
    run, args = own_run
    weights = run / "mixed3b" / "sae" / "sae_weights.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    r = run_cli_process(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    train_line = next(line for line in r.stderr.splitlines() if "✓ train mixed3b" in line)
    assert "done in" in train_line and "FVU 0." in train_line, train_line
    assert weights.read_bytes() == good  # rewritten from the final training checkpoint
    files = [weights, *(run / "mixed3b" / "sae" / "checkpoint").glob("tensors-*.safetensors")]
    assert len(files) == 2 and all(f.stat().st_mode & 0o777 == 0o666 & ~current_umask() for f in files)
    summary = run / "mixed3b" / "analysis" / "summary.json"
    summary.write_text(summary.read_text()[:100])  # cut short: analyze runs again (and the site)
    again = run_cli_process(*args)
    assert again.returncode == 0 and json.loads(summary.read_text())["layer"] == "mixed3b"
    assert again.stderr.count("skipped (complete)") == 4, again.stderr  # harvest, train, eval, featvis


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
