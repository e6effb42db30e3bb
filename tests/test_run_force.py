"""`run --force-stage X` end to end for every stage, and a broken stage output that is redone, on one run folder.

The stages are forced from the last to the first, so each call redoes a longer tail of the same run.
"""

from __future__ import annotations

import json
import os

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


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A complete tiny run (FAST settings), progress bars on."""
    root = tmp_path_factory.mktemp("force")
    args = run_args(synthetic_images(root / "images", 12), root / "run", overrides=FAST)
    args.remove("--no-progress")
    first = run_cli_process(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    # piped: stdout holds only the result line (bars and stage lines go to stderr), nothing cut at 80 columns
    assert first.stdout.splitlines() == [f"open {root / 'run' / 'site' / 'index.html'}  or  inception-sae site serve "
                                         f"{root / 'run' / 'site'}"]  # fmt: skip
    assert any(len(line) > 80 for line in first.stderr.splitlines())
    return root / "run", args


def mtimes(run) -> dict[str, int]:
    return {s: (run / p).stat().st_mtime_ns for s, p in OUTPUT.items()}


@pytest.mark.parametrize("stage", STAGES[::-1])
def test_force_stage_redoes_it_and_the_stages_after(run_folder, stage):
    run, args = run_folder
    before = mtimes(run)
    r = run_cli_process(*args, "--force-stage", stage)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "run complete" in r.stderr
    after = mtimes(run)
    redone = STAGES[STAGES.index(stage) :]
    assert [s for s in STAGES if after[s] != before[s]] == list(redone)
    assert r.stderr.count("skipped (complete)") == len(STAGES) - len(redone)
    assert json.loads((run / "mixed3b" / "eval.json").read_text())["store"]["fvu"] >= 0


def test_truncated_sae_weights_are_not_complete(run_folder):
    run, args = run_folder
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
