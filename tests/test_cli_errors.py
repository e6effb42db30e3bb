"""The real commands on the inputs a new user tries first: one ``error:`` line and exit code 2, or success.

Every test calls the CLI's entry point (``inception_sae.cli.main``) with the arguments a user would type.
"""

from __future__ import annotations

import json

import pytest
import torch
from factories import one_line_error, run_args, run_cli, run_cli_process, synthetic_images

from inception_sae.data.labels import load_labels
from inception_sae.models.weights import random_state_dict
from inception_sae.sae.model import SAEConfig, TopKSAE


@pytest.fixture
def images(tmp_path):
    return synthetic_images(tmp_path / "images", 4)


def first(images) -> str:
    return str(sorted(images.rglob("*.png"))[0])


@pytest.fixture
def cached_random_weights(tmp_path, monkeypatch):
    """A cache folder holding a (random) inception5h.pth, so commands run with no --weights at all."""
    cache = tmp_path / "cache"
    cache.mkdir()
    torch.save(random_state_dict(0), cache / "inception5h.pth")
    monkeypatch.setenv("INCEPTION_SAE_CACHE", str(cache))
    monkeypatch.delenv("INCEPTION_SAE_LABELS", raising=False)
    return cache / "inception5h.pth"


def test_classify_prints_class_names_with_no_flags(images, cached_random_weights):
    r = run_cli("classify", first(images))
    assert r.returncode == 0
    rows = [line.split(maxsplit=2) for line in r.stdout.splitlines() if line.startswith("  ")]
    names = load_labels()
    assert len(rows) == 5
    for _p, index, name in rows:
        assert name == names[int(index)] and not name.startswith("class_")
    assert any(1 <= int(index) <= 1000 for _p, index, _n in rows)


@pytest.mark.parametrize("top", ["5000", "-1", "0"])
def test_classify_top_out_of_range(images, top):
    r = run_cli("classify", first(images), "--weights", "random", "--top", top)
    assert r.returncode == 2
    one_line_error(r, f"--top {top}", "1..1008")


def test_weights_that_are_a_folder_or_corrupt(tmp_path, images):
    r = run_cli("classify", first(images), "--weights", str(tmp_path))
    assert r.returncode == 2
    one_line_error(r, "is a folder")
    for name, payload in (("garbage.pth", bytes(range(256)) * 10), ("zipped.pth", b"PK\x03\x04garbage")):
        (tmp_path / name).write_bytes(payload)
        r = run_cli("classify", first(images), "--weights", str(tmp_path / name))
        assert r.returncode == 2
        error = one_line_error(r, name, "not a readable PyTorch state_dict")
        assert "weights_only" not in error


@pytest.mark.parametrize("layer", ["avgpool", "logits"])
def test_harvest_and_run_refuse_layers_without_positions(tmp_path, images, layer):
    store = tmp_path / "store"
    args = ["harvest", "--layer", layer, "--images", str(images), "--out", str(store), "--weights", "random"]
    res = run_cli(*args, "--no-progress", "--workers", "0")
    assert res.returncode == 2
    one_line_error(res, f"layer {layer!r} has one vector per image")
    assert not store.exists()  # no stub store left behind
    res = run_cli(*run_args(images, tmp_path / "run", layers=(layer,)))
    assert res.returncode == 2
    one_line_error(res, f"layer {layer!r} has one vector per image")
    assert not (tmp_path / "run").exists()


def test_run_refuses_a_store_smaller_than_one_batch_before_harvesting(tmp_path, images):
    run = tmp_path / "run"
    # 4 images x 1 view x 10 vectors = 40 < 256 (per_image sampling instead of TINY's "all")
    r = run_cli(*run_args(images, run, overrides={"harvest.sampling": "top-norm"}))
    assert r.returncode == 2
    one_line_error(r, "the mixed3b store would hold at most 40 vectors", "one training batch of 256")
    assert not (run / "mixed3b").exists()  # nothing harvested


def test_invalid_cfg_json_names_the_file(tmp_path, images):
    sae = tmp_path / "sae"
    TopKSAE(SAEConfig(480, 16, 4)).save(sae)
    (sae / "cfg.json").write_text("{\n")
    args = ["analyze", "--sae", str(sae), "--images", str(images), "--out", str(tmp_path / "an"), "--weights", "random"]
    r = run_cli(*args)
    assert r.returncode == 2
    one_line_error(r, str(sae / "cfg.json"), "not valid JSON")


def test_truncated_sae_weights_are_named(tmp_path, images):
    sae = tmp_path / "sae"
    TopKSAE(SAEConfig(480, 16, 4)).save(sae)
    cfg = json.loads((sae / "cfg.json").read_text())
    (sae / "cfg.json").write_text(json.dumps({**cfg, "layer": "mixed3b"}))
    w = sae / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    args = ["analyze", "--sae", str(sae), "--images", str(images), "--out", str(tmp_path / "an"), "--weights", "random"]
    r = run_cli(*args)
    assert r.returncode == 2
    one_line_error(r, "sae_weights.safetensors is unreadable")


def test_layers_lists_avgpool_and_refuses_size_zero():
    r = run_cli("layers", "--no-branches")
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines()[2:]]
    assert names[-2:] == ["avgpool", "logits"]
    r = run_cli("layers", "--input-size", "0")
    assert r.returncode == 2
    one_line_error(r, "--input-size 0")


def test_piped_output_is_not_wrapped_at_80_columns(tmp_path, images):
    r = run_cli_process("classify", first(images), "--weights", "random", COLUMNS="")
    assert r.returncode == 0, r.stderr
    warning = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and len(warning[0]) > 80 and "UNTRAINED WEIGHTS" in warning[0]


def test_help_shows_flags_without_a_type_and_names_real_commands():
    from inception_sae.cli import app

    commands = [[c.name or c.callback.__name__] for c in app.registered_commands]
    commands += [[g.name, c.name or c.callback.__name__] for g in app.registered_groups
                 for c in g.typer_instance.registered_commands]  # fmt: skip
    assert ["demo"] in commands and ["site", "build"] in commands
    for command in commands:
        r = run_cli(*command, "--help")
        assert r.returncode == 0
        text = r.stdout
        assert "<bool>" not in text, command
        if command == ["demo"]:
            assert "--offline" in text
        if command == ["analyze"]:  # names the real command that writes the report
            assert "`eval --report`" in text and "evaluate" not in text


def test_help_at_80_columns_shows_every_option_name_whole(capsys, monkeypatch):
    import typer

    from inception_sae.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    root = typer.main.get_command(app)
    todo, seen = [([], root)], 0
    while todo:
        path, command = todo.pop()
        todo += [([*path, name], sub) for name, sub in getattr(command, "commands", {}).items()]
        r = run_cli(*path, "--help")
        assert r.returncode == 0
        text = r.stdout
        lines = text.splitlines()
        assert max(map(len, lines)) <= 80 and "…" not in text, (path, text)
        words = {w for line in lines for w in line.replace("│", " ").replace(",", " ").split()}
        for param in command.params:
            if not getattr(param, "hidden", False):
                names = [n for n in (*param.opts, *param.secondary_opts) if n.startswith("-")]
                assert all(n in words for n in names), (path, names, text)
                seen += len(names)
        for name, sub in getattr(command, "commands", {}).items():
            assert sub.hidden or name in words, (path, name)
    assert seen > 100


BAD_SETTINGS = [
    ("featvis.render.steps", -1, "featvis.render: steps must be >= 0"),
    ("featvis.features", "top:x", "use top:N"),
    ("featvis.objective", "both", "featvis.objective must be one of encoder, decoder; got 'both'"),
    ("analyze.n_top", 0, "analyze: n_top must be >= 1, got 0"),
    ("train.decay_fraction", 2, "train: decay_fraction must be in [0, 1]"),
    ("circuits.hops", 0, "circuits: hops, permutations and candidates must be >= 1"),
    ("harvest.views", 0, "harvest: views must be >= 1, got 0"),
]


@pytest.mark.parametrize(("key", "value", "needle"), BAD_SETTINGS)
def test_run_refuses_bad_stage_settings_before_any_work(tmp_path, images, key, value, needle):
    run = tmp_path / "run"
    r = run_cli(*run_args(images, run, overrides={key: value}))
    assert r.returncode == 2
    one_line_error(r, needle)
    assert not run.exists()  # refused before harvesting


@pytest.mark.parametrize("bug", [KeyError("layer"), ValueError("bad shape"), FileNotFoundError("x.npy")])
def test_a_bug_inside_a_stage_keeps_its_traceback(tmp_path, images, bug, monkeypatch):
    """Only UserError (and a full disk) is one line: a KeyError/ValueError/FileNotFoundError from the code is a bug."""
    from inception_sae.cli import BUG_HINT
    from inception_sae.pipeline import work

    def broken_harvest(ctx, layer, also=()):
        raise bug

    monkeypatch.setattr(work, "do_harvest", broken_harvest)
    r = run_cli(*run_args(images, tmp_path / "run"))
    assert r.returncode == 1
    err = r.stderr
    assert "Traceback (most recent call last)" in err and "in broken_harvest" in err, err
    assert f"{type(bug).__name__}: " in err
    assert not any(line.startswith("error: ") for line in err.splitlines())
    assert err.strip().splitlines()[-1] == BUG_HINT


def harvest_args(images, out) -> list:
    return ["harvest", "--images", images, "--layer", "mixed3b", "--out", out, "--weights", "random", "--no-progress"]


def test_an_unreadable_image_list_is_one_line_naming_it(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"\xff\xfeimg.png\n")  # not UTF-8
    for args in (harvest_args(lst, tmp_path / "store"), run_args(lst, tmp_path / "run")):
        r = run_cli(*args)
        assert r.returncode == 2
        one_line_error(r, f"cannot read the image list {lst}")


@pytest.mark.parametrize("command", ["harvest", "run"])
def test_a_bug_while_listing_images_keeps_its_traceback(tmp_path, images, command, monkeypatch):
    """Listing the images turns only the user's mistakes into one line, not any ValueError raised on the way."""
    from inception_sae.cli import BUG_HINT
    from inception_sae.data.images import ImageDataset

    def broken(cls, root, preprocess=None, recursive=True):
        raise ValueError("a bug while listing")

    monkeypatch.setattr(ImageDataset, "from_folder", classmethod(broken))
    args = harvest_args(images, tmp_path / "store") if command == "harvest" else run_args(images, tmp_path / "run")
    r = run_cli(*args)
    assert r.returncode == 1 and "ValueError: a bug while listing" in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == BUG_HINT


def test_user_errors_are_still_the_builtin_types_library_callers_catch():
    """The CLI's one-line errors subclass what a library caller would catch (and print their message unquoted)."""
    from inception_sae.errors import MissingInputError, UnknownNameError, UserError
    from inception_sae.models.layers import layer_info

    with pytest.raises(KeyError) as e:
        layer_info("mixed4z")
    assert isinstance(e.value, UnknownNameError) and str(e.value).startswith("unknown layer 'mixed4z'")
    assert issubclass(MissingInputError, FileNotFoundError) and issubclass(UserError, ValueError)


def test_circuits_classes_are_a_repeated_flag_of_integers(tmp_path):
    args = ["circuits", "--upstream", str(tmp_path), "--downstream", str(tmp_path), "--out", str(tmp_path / "c")]
    r = run_cli(*args, "--classes", "208", "--classes", "dog")
    assert r.returncode == 2
    assert "Invalid value for '--classes'" in r.stderr and "Traceback" not in r.stderr
