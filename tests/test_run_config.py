"""`run`'s typed config: sections = stage dataclass fields, YAML/TOML, flags over file, refusals, configs/."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from factories import run_cli

from inception_sae.errors import UserError
from inception_sae.pipeline.config import STAGE_CONFIGS, build, fixed_keys, read_file, to_yaml
from inception_sae.pipeline.run import check_previous
from inception_sae.pipeline.stages import Paths

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"


def test_sections_are_the_stage_dataclasses_fields_with_their_defaults():
    """A section holds its stage config's fields but the ones run sets, each with the stage config's default."""
    cfg = build({}, {"layers": ["mixed4a"]})
    for name, cls in STAGE_CONFIGS.items():
        section = getattr(cfg, name)
        stage = {f.name: f for f in dataclasses.fields(cls)}
        own = {f.name for f in dataclasses.fields(section)} - ({"features"} if name == "featvis" else set())
        assert own | set(fixed_keys(name)) == set(stage) and not own & set(fixed_keys(name)), name
        for key in own:
            f = stage[key]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if key == "render":  # the nested render settings: RenderConfig's, but its transforms (not settable)
                default = {k: v for k, v in dataclasses.asdict(default).items() if k != "transforms"}
            assert dataclasses.asdict(section)[key] == default, (name, key)
    # the one default of the steps between training checkpoints (it was 0 in the library, 1000 in the CLI and run)
    from inception_sae.sae.train_config import TrainConfig

    assert cfg.train.checkpoint_every == TrainConfig().checkpoint_every == 1000


def test_a_stage_config_is_its_settings_plus_inputs():
    """Each setting is declared once: the stage config subclasses its section's settings class, keyword-only, and a
    section's own checks (ranges) run when it is read, as one line naming the section."""
    from inception_sae.analysis.config import AnalyzeConfig
    from inception_sae.models.choice import Model
    from inception_sae.pipeline.config import FeatvisRunSettings, RunConfig
    from inception_sae.settings import type_hints

    for name, cls in STAGE_CONFIGS.items():
        section = type_hints(RunConfig)[name]
        assert issubclass(cls, section.__mro__[1] if section is FeatvisRunSettings else section), name
    assert all(issubclass(STAGE_CONFIGS[x], Model) for x in ("harvest", "analyze", "featvis", "circuits", "compare"))
    with pytest.raises(UserError, match="unknown top-level key 'trian'"):
        build({}, {"layers": ["mixed4a"], "trian.samples": 5})  # a --set into no section is refused too
    with pytest.raises(TypeError):
        AnalyzeConfig("sae", "images", "out")  # type: ignore[misc]  # positional inputs would bind to settings
    for data, match in [
        ({"analyze": {"n_top": 0}}, r"^analyze: n_top must be >= 1"),
        ({"circuits": {"hops": 0}}, r"^circuits: hops, permutations"),
        ({"featvis": {"render": {"steps": -1}}}, r"^featvis\.render: steps must be >= 0"),
    ]:
        with pytest.raises(UserError, match=match):
            build(data, {"layers": ["mixed4a"]})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"train": {"sampels": 5}}, r"unknown key train\.sampels; valid keys: samples, batch_size"),
        ({"harvest": {"layer": "mixed4a"}}, r"harvest\.layer is set by `inception-sae run`"),
        ({"featvis": {"render": {"stepz": 3}}}, r"unknown key featvis\.render\.stepz; valid keys: steps"),
        ({"featvis": {"render": {"param": {"sise": 3}}}}, r"unknown key featvis\.render\.param\.sise"),
        ({"trian": {}}, r"unknown top-level key 'trian'; valid keys: weights, seed, device, layers"),
        ({"train": 3}, r"section 'train' must be a mapping"),
        ({"train": {"samples": "many"}}, r"train\.samples must be of type int, got 'many'"),
        ({"analyze": {"umap": "yes"}}, r"analyze\.umap must be of type bool"),
        ({"harvest": {"sampling": "top"}}, r"harvest\.sampling must be one of top-norm, norm-weighted, uniform, all"),
        ({"analyze": {"label_source": "gold"}}, r"analyze\.label_source must be one of auto, true, predicted; got"),
        ({"featvis": {"at": "edge"}}, r"featvis\.at must be one of center, mean; got 'edge'"),
        ({"sae": {"tie": "half"}}, r"sae\.tie must be one of init, full"),
        ({"train": {"b_dec_init": None}}, r"train\.b_dec_init must be one of median, mean, zero; got None"),
        ({"circuits": {"strongest_pairs": 5}}, r"unknown key circuits\.strongest_pairs"),
        ({"analyze": {"eval_report": "e.json"}}, r"analyze\.eval_report is set by `inception-sae run`"),
    ],
)
def test_bad_keys_are_one_line_errors(data, match):
    with pytest.raises(UserError, match=match):
        build(data, {})


def test_yaml_and_toml_agree_and_flags_override(tmp_path):
    (tmp_path / "a.yaml").write_text("layers: [mixed4a]\ntrain:\n  samples: 1000\nsae:\n  k: 8\n")
    (tmp_path / "a.toml").write_text('layers = ["mixed4a"]\n[train]\nsamples = 1000\n[sae]\nk = 8\n')
    a, b = build(read_file(tmp_path / "a.yaml"), {}), build(read_file(tmp_path / "a.toml"), {})
    assert a.effective() == b.effective()
    c = build(read_file(tmp_path / "a.yaml"), {"sae.k": 16, "featvis.render.steps": 7, "seed": None})
    assert c.sae.k == 16 and c.train.samples == 1000
    assert c.featvis.render.steps == 7 and c.featvis.render == type(c.featvis.render)(steps=7)
    assert build(yaml.safe_load(to_yaml(c)), {}).effective() == c.effective()  # round trip


def test_print_config_cli(tmp_path):
    (tmp_path / "c.yaml").write_text("layers: mixed4a\ntrain: {samples: 1000}\n")
    r = run_cli("run", tmp_path / "c.yaml", "--samples", "2000", "--set", "sae.k=4", "--print-config",
                "--set", "train.lr=2e-4", "--set", "train.init_samples=1e4")  # fmt: skip
    assert r.returncode == 0
    printed = yaml.safe_load(r.stdout)
    assert printed["train"]["lr"] == 2e-4 and printed["train"]["init_samples"] == 10000
    assert printed["train"]["samples"] == 2000 and printed["sae"]["k"] == 4 and printed["layers"] == ["mixed4a"]
    assert not (tmp_path / "run").exists()
    (tmp_path / "bad.yaml").write_text("train: {sampels: 1}\n")
    r = run_cli("run", str(tmp_path / "bad.yaml"), "--print-config")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "unknown key train.sampels" in err[0]


def test_changed_config_of_a_complete_stage_is_refused_unless_forced(tmp_path):
    run = tmp_path / "run"
    old = build({}, {"layers": ["mixed3b"], "images": tmp_path, "out": run, "harvest.per_image": 10})
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(old))
    store = Paths(run).store("mixed3b")
    store.mkdir(parents=True)
    (store / "manifest.json").write_text(json.dumps({"status": "complete"}))
    new = build({}, {"layers": ["mixed3b"], "images": tmp_path, "out": run, "harvest.per_image": 5})
    with pytest.raises(UserError, match=r"different harvest config \(harvest\.per_image: 10 -> 5\).*--force-stage"):
        check_previous(new, Paths(run), ())
    assert check_previous(new, Paths(run), ("harvest",))[:2] == ("harvest", "train")
    assert check_previous(old, Paths(run), ()) == ()  # same config: nothing to redo
    # a change to a stage that has not run yet is fine
    later = build({}, {"layers": ["mixed3b"], "images": tmp_path, "out": run, "sae.k": 4})
    assert check_previous(later, Paths(run), ()) == ()
    with pytest.raises(UserError, match="unknown --force-stage 'trian'"):
        check_previous(new, Paths(run), ("trian",))


def test_cosmetic_and_run_only_settings_never_block_reuse(tmp_path):
    """A new site title rebuilds the site alone; more workers rebuild nothing; a real change is still refused."""
    run, base = tmp_path / "run", {"layers": ["mixed3b"], "images": tmp_path, "out": tmp_path / "run"}
    old = build({}, base)
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(old))
    for stage in ("harvest", "train", "eval", "analyze", "featvis", "site"):  # every stage on disk
        for path in Paths(run).outputs(stage, ("mixed3b",)):
            path.mkdir(parents=True)
    assert check_previous(build({}, {**base, "site.title": "Another title"}), Paths(run), ()) == ("site",)
    assert check_previous(build({}, {**base, "harvest.workers": 14, "analyze.workers": 3}), Paths(run), ()) == ()
    with pytest.raises(UserError, match=r"different site config \(site\.top_neighbours: 10 -> 3\)"):
        check_previous(build({}, {**base, "site.title": "x", "site.top_neighbours": 3}), Paths(run), ())


@pytest.mark.parametrize("name", ["demo.yaml", "bozoukov2025_mixed4.yaml", "gorton2024_mixed5b.yaml"])
def test_reproduction_configs_are_valid(name):
    cfg = build(read_file(REPO_CONFIGS / name), {})
    assert cfg.layers


def test_demo_yaml_mirrors_the_builtin_demo():
    from inception_sae.pipeline.demo import DEMO

    assert build(read_file(REPO_CONFIGS / "demo.yaml"), {}).effective() == build(DEMO, {}).effective()


def test_set_values_keep_their_text_for_string_fields():
    """`--set analyze.label_source=true` is the string "true", not a bool; numbers still parse."""
    from inception_sae.commands.run import parse_sets

    sets = parse_sets(
        ["analyze.label_source=true", "featvis.features=12", "train.samples=2e5", "train.normalize_input=false",
         "site.title=a: b", "featvis.render.steps=64"]
    )  # fmt: skip
    cfg = build({}, {"layers": ["mixed4a"], **sets})
    assert cfg.analyze.label_source == "true" and cfg.featvis.features == "12"
    assert cfg.train.samples == 200000 and cfg.train.normalize_input is False
    assert cfg.site.title == "a: b" and cfg.featvis.render.steps == 64
    with pytest.raises(UserError, match=r"train\.samples must be of type int"):
        build({}, {"layers": ["mixed4a"], **parse_sets(["train.samples=lots"])})
