"""The files that tell a rerun a stage is complete are written atomically (through ``fsio``), never torn.

A stage counts as done when its marker parses (train_summary.json, the analysis's summary.json, the circuits'
summary.json, the site's site.json and index.html); a marker written in place and cut short by a kill or a full
disk could still parse, or leave the stage neither done nor redone. Each stage here runs with ``fsio``'s one
commit point (``atomic_path``) watched, and every marker must have passed through it, with no temporary file left.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from factories import make_images, make_sae
from factories.analysis import quick_analysis
from factories.sae import planted, random_sae
from factories.site import make_analysis

from inception_sae import fsio


@pytest.fixture
def atomic_writes(monkeypatch) -> list[Path]:
    """The paths committed through ``fsio.atomic_path`` while the test runs."""
    seen: list[Path] = []
    real = fsio.atomic_path

    @contextmanager
    def watched(path):
        with real(path) as tmp:
            yield tmp
        seen.append(Path(path))

    monkeypatch.setattr(fsio, "atomic_path", watched)
    return seen


def no_tmp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(fsio.TMP_SUFFIX)]


def test_training_writes_its_summary_atomically(tmp_path, atomic_writes):
    from inception_sae.data.source import ArraySource
    from inception_sae.sae.model import SAEConfig
    from inception_sae.sae.train import TrainConfig, train

    X, _ = planted(512, d=8, features=16, active=2)
    train(ArraySource(X.numpy(), 128, seed=0), [SAEConfig(8, 16, 2)], TrainConfig(samples=256, batch_size=128,
          progress=False), tmp_path)  # fmt: skip
    assert {tmp_path / "train_summary.json", tmp_path / "cfg.json"} <= set(atomic_writes)
    assert no_tmp_files(tmp_path)


def test_analysis_writes_its_summary_last_and_atomically(model, tmp_path, atomic_writes):
    from inception_sae.analysis.run import analyze

    make_images(tmp_path / "imgs", 4, size=(36, 34))
    sae = make_sae(tmp_path / "sae", 256, 12, 4, layer="mixed3a")
    cfg = quick_analysis(sae, tmp_path / "imgs", tmp_path / "out", n_top=2)
    analyze(cfg, model=model)
    out = tmp_path / "out"
    assert atomic_writes[-1] == out / "summary.json"  # the marker comes after everything it vouches for
    assert out / "report.md" in atomic_writes and no_tmp_files(out)


def test_circuits_write_every_output_file_atomically(model, tmp_path, atomic_writes):
    from inception_sae.circuits.config import CircuitsConfig
    from inception_sae.circuits.run import run as run_circuits

    a = make_sae(tmp_path / "a", tensors=random_sae("mixed3a", 256, 16, 4, 0))
    b = make_sae(tmp_path / "b", tensors=random_sae("mixed3b", 480, 16, 4, 1))
    out = tmp_path / "out"
    run_circuits(CircuitsConfig(upstream=a, downstream=b, out=out, feature=1, top=3), model)
    json_files = {p for p in out.iterdir() if p.suffix == ".json"}
    assert {"summary.json", "graph.json", "neighbours.json", "validation.json"} <= {p.name for p in json_files}
    assert json_files <= set(atomic_writes) and atomic_writes[-1] == out / "summary.json"
    assert no_tmp_files(out)


def test_site_writes_its_markers_atomically(tmp_path, atomic_writes):
    from inception_sae.site.build import build_site
    from inception_sae.site.config import SiteConfig

    analysis = make_analysis(tmp_path / "a", "mixed4b", 4)
    out = tmp_path / "site"
    build_site(SiteConfig(analyses=(analysis,), out=out))
    marks = [p for p in atomic_writes if p.parent == out]
    assert marks[0] == out / "site.json" and marks[-1] == out / "site.json"  # "building" first, the report last
    assert out / "index.html" in marks and no_tmp_files(out)
