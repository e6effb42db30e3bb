"""`inception-sae layers` and `classify`, and labels."""

from __future__ import annotations

import pytest
from factories import run_cli, run_cli_process

from inception_sae.data import labels as labels_mod
from inception_sae.data.labels import load_labels, parse_labels


def test_labels_from_shared_tsv(labels_tsv):
    labels = parse_labels(labels_tsv)
    assert len(labels) == 1008
    assert labels[0] == "dummy"
    assert labels[1] == "kit fox" and labels[2] == "English setter" and labels[3] == "Siberian husky"
    assert labels[1000] == "dumbbell"
    assert labels[1001].startswith("unlabelled")
    assert labels.index_of_wnid(labels.wnids[1]) == 1


def test_packaged_labels_are_the_default_and_match_the_shared_tsv(labels_tsv, monkeypatch):
    monkeypatch.delenv("INCEPTION_SAE_LABELS", raising=False)
    shipped, shared = load_labels(), parse_labels(labels_tsv)
    assert shipped.source == "packaged" and shipped.available
    assert shipped.names == shared.names and shipped.wnids == shared.wnids
    assert shipped[0] == "dummy" and shipped[1001] == "unlabelled_1001" and shipped[1007] == "unlabelled_1007"


def test_labels_override_and_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv("INCEPTION_SAE_LABELS", raising=False)
    mine = tmp_path / "mine.tsv"
    mine.write_text("index\twnid\tname\n1\tn0\tmy fox\n")
    assert load_labels(mine)[1] == "my fox" and load_labels(mine)[2] == "unlabelled_2"
    monkeypatch.setenv("INCEPTION_SAE_LABELS", str(mine))
    assert load_labels()[1] == "my fox"
    with pytest.raises(FileNotFoundError):
        load_labels(tmp_path / "missing.tsv")
    monkeypatch.setattr(labels_mod, "PACKAGED_LABELS", tmp_path / "gone.tsv")
    monkeypatch.delenv("INCEPTION_SAE_LABELS")
    placeholders = load_labels()
    assert not placeholders.available and placeholders[5] == "class_5"


def test_layers_command_lists_branches():
    r = run_cli("layers")
    assert r.returncode == 0
    out = r.stdout
    assert "mixed4d_5x5" in out and "400-463" in out and "363" in out


def test_classify_eight_shared_images(sample_dir, labels_tsv):
    images = sorted(sample_dir.glob("*.jpg"))[:8]
    args = ["classify", *map(str, images), "--top", "3", "--weights", "random", "--labels", str(labels_tsv)]
    r = run_cli(*args)
    assert r.returncode == 0
    assert "UNTRAINED WEIGHTS" in r.stderr
    assert r.stdout.count("[UNTRAINED WEIGHTS]") == 8
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("  ")]
    assert len(lines) == 24
    probs = [float(ln.split()[0]) for ln in lines]
    assert all(0 < p < 1 for p in probs)


def test_bad_input_is_one_line(tmp_path):
    r = run_cli("classify", str(tmp_path / "x.jpg"), "--weights", str(tmp_path / "nope.pth"))
    assert r.returncode == 2
    err = r.stderr.strip()
    assert err.startswith("error:") and "\n" not in err


def test_python_dash_m_entry_point():
    r = run_cli_process("layers")
    assert r.returncode == 0 and "mixed5b" in r.stdout


def test_classify_a_folder_classifies_its_images(tmp_path):
    from inception_sae.data.synthetic import write_synthetic_images

    write_synthetic_images(tmp_path / "imgs", n=3, size=48, seed=0)
    (tmp_path / "empty").mkdir()
    r = run_cli("classify", str(tmp_path / "imgs"), "--top", "2", "--weights", "random")
    assert r.returncode == 0
    out = r.stdout
    assert out.count("[UNTRAINED WEIGHTS]") == 3 and "skipped" not in out
    r = run_cli("classify", str(tmp_path / "empty"), "--weights", "random")
    assert r.returncode == 2
    assert "no images found" in r.stderr
