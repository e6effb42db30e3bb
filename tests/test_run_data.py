"""`run` on an ImageNet-shaped, class-sorted folder: class-spread subsets, held-out eval, one evaluation stage."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from factories import make_images, run_args, run_cli_process

from inception_sae import ActivationStore
from inception_sae.data.subsets import class_of

pytestmark = pytest.mark.slow

CLASSES = [f"n{c:08d}" for c in range(6)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rundata")
    images = make_images(tmp / "train", 10, classes=6, size=(64, 64), suffix=".png")  # 60 images, class by class
    run = tmp / "run"
    done = run_cli_process(*run_args(images, run), "--max-images", "20")
    assert done.returncode == 0, done.stderr[-2000:]
    return images, run


def test_max_images_spans_the_classes(run_dir):
    _, run = run_dir
    store = ActivationStore.open(run / "mixed3b" / "store")
    per_class = Counter(class_of(i) for i in store.images)
    assert set(per_class) == set(CLASSES) and set(per_class.values()) <= {3, 4}  # the first 20 would be 2 classes
    analysis = json.loads((run / "mixed3b" / "analysis" / "summary.json").read_text())["images"]
    assert analysis["subset"]["classes"] == 6 and analysis["subset"]["images"] == 20
    splice = json.loads((run / "mixed3b" / "eval.json").read_text())["splice"]
    assert splice["subset"]["images"] == 4 and splice["subset"]["classes"] >= 3


def test_run_eval_is_held_out_and_equals_the_eval_command(run_dir):
    images, run = run_dir
    ev = json.loads((run / "mixed3b" / "eval.json").read_text())
    cfg = json.loads((run / "mixed3b" / "sae" / "cfg.json").read_text())
    held = cfg["training"]["held_out_rows"]
    assert held and ev["store"]["held_out"] is True and ev["store"]["rows"] == held
    assert ev["splice"]["subset"]["from"].startswith("images of the store's held-out rows")
    assert ev["splice"]["preprocess"] == {"resize": 73, "crop": 64}  # the harvest's crop, not 256/224
    trained = ev["splice"]["training_positions"]
    assert trained["rule"]["sampling"] == "all" and trained["fvu"] == pytest.approx(ev["splice"]["fvu"], rel=1e-5)
    report = run / "eval_cli.json"
    args = ["eval", "--sae", str(run / "mixed3b" / "sae"), "--store", str(run / "mixed3b" / "store"),
            "--images", str(images), "--max-images", "4", "--batch-size", "4", "--weights", "random",
            "--report", str(report)]  # fmt: skip
    done = run_cli_process(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(report.read_text()) == ev  # the same stage: the same numbers, rows, images and crop
