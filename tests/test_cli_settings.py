"""The stage commands' options are generated from the settings classes: every setting, its default, its help.

For every field of every ``run`` section, the test picks a value other than the default, gives it to the stage's
own command as its flag and to ``run`` as ``--set section.key=value``, and checks that both settings objects hold it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import typer
import yaml

from inception_sae.cli import app
from inception_sae.pipeline.config import SECTIONS, RunConfig, build
from inception_sae.settings import TextValue, field_docs, type_hints


def commands() -> dict[str, tuple[Any, Any]]:
    """Command path -> (its click command, its decorated function) for every command with generated options."""
    root, found = typer.main.get_command(app), {}
    for name, cmd in root.commands.items():
        for sub_name, sub in (getattr(cmd, "commands", None) or {name: cmd}).items():
            fn = getattr(sub.callback, "__wrapped__", sub.callback)
            path = name if sub is cmd else f"{name} {sub_name}"
            if hasattr(fn, "groups"):
                found[path] = (sub, fn)
    return found


def fields(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    """(path, type, default) of every leaf field of a settings dataclass, nested ones flattened."""
    out = []
    for f in dataclasses.fields(cls):
        hint = type_hints(cls)[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out += fields(hint, (*prefix, f.name))
        else:
            factory = f.default_factory if f.default_factory is not dataclasses.MISSING else lambda: None
            default = f.default if f.default is not dataclasses.MISSING else factory()
            out.append(((*prefix, f.name), hint, default))
    return out


def other_value(hint: Any, default: Any) -> tuple[Any, str, str]:
    """A value of type ``hint`` other than ``default``, its text after the flag and its text in ``--set``."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) is Literal:
        value = next(a for a in get_args(hint) if a != default)
        return value, value, value
    if get_origin(hint) is tuple:  # the flag is repeated; the key takes a list
        if get_args(hint)[0] is float:  # fractions (Matryoshka's prefixes)
            return (0.5,), "0.5", "[0.5]"
        return (7,), "7", "[7]"
    # values inside every setting's own checks: a fraction stays a fraction, "3,17" is also a valid analyze.family
    value = {bool: lambda: not default, int: lambda: (default or 0) + 3, float: lambda: (default or 0) * 0.875 or 0.25,
             str: lambda: "3,17", Path: lambda: Path("p1")}[hint]()  # fmt: skip
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return value, text, text


def required_args(cmd) -> list[str]:
    args = []
    for p in cmd.params:
        if p.required:
            args += ["x"] if not p.opts[0].startswith("-") else [p.opts[0], "x"]
    return args


def test_every_setting_of_every_stage_is_a_flag_of_its_command_and_a_run_key():
    found, covered = commands(), set()
    assert {"harvest", "train", "eval", "analyze", "featvis", "circuits", "compare", "site build"} <= set(found)
    for name, (cmd, fn) in found.items():
        opts = {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        for group_name, group in fn.groups.items():
            for path, hint, default in fields(group.cls):
                if path[0] in group.skip or (group.only and path[0] not in group.only):
                    continue
                flag = "--" + ".".join(p.replace("_", "-") for p in path)
                param = opts.get(flag)
                assert param is not None, (name, flag)
                assert param.help, (name, flag)  # the field's docstring
                swept = path[0] in group.sweep
                if get_origin(hint) is not tuple and not swept and not group.unset:  # unset: run's overrides
                    assert param.default == default, (name, flag, param.default, default)
                value, text, set_text = other_value(hint, default)
                args = [f"--no-{flag[2:]}" if value is False else flag] + ([] if isinstance(value, bool) else [text])
                ctx = cmd.make_context(name, [*required_args(cmd), *args])
                built = fn.settings(ctx.params)[group_name]
                got = built[0] if isinstance(built, list) else built
                for part in path:
                    got = got[part] if isinstance(got, dict) else getattr(got, part)
                assert got == value, (name, flag, got, value)
                if group.section in SECTIONS:  # the same key reaches run's config through --set
                    key = ".".join((group.section, *path))
                    cfg = build({}, {"layers": ["mixed4a"], key: TextValue(set_text, yaml.safe_load(set_text))})
                    node: Any = getattr(cfg, group.section)
                    for part in path:
                        node = getattr(node, part)
                    assert node == value, (key, node, value)
                    covered.add(key)
    hints = type_hints(RunConfig)
    every = {".".join((s, *p)) for s in SECTIONS for p, _, _ in fields(hints[s])} - {"featvis.features"}
    assert every - covered == set()  # featvis.features is the featvis command's --features input


def test_every_settings_field_has_help_text():
    hints = type_hints(RunConfig)
    groups = [g for _, fn in commands().values() for g in fn.groups.values()]
    todo = [(hints[s], ()) for s in SECTIONS] + [(g.cls, g.only or tuple(field_docs(g.cls))) for g in groups]
    seen = 0
    while todo:
        cls, names = todo.pop()
        for name, text in field_docs(cls).items():
            if names and name not in names:
                continue
            assert text.strip(), (cls.__name__, name)
            seen += 1
            hint = type_hints(cls)[name]
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                todo.append((hint, ()))
    assert seen > 100


@dataclasses.dataclass(frozen=True)
class Shape:
    """An SAE shape with a setting the commands have never heard of."""

    k: int = 4
    """active latents"""
    architecture: Literal["topk", "batchtopk"] = "topk"
    """which sparsity rule"""


def test_a_new_settings_field_becomes_a_flag_with_its_help():
    """A field added to a settings class needs no CLI change: its flag, default and help appear by themselves."""
    from inception_sae.commands.options import Group, stage

    @stage(shape=Group(Shape, "sae"))
    def fit(shape: Shape = Shape()) -> Shape:
        return shape

    sub = typer.Typer()
    sub.command()(fit)
    sub.command("other")(lambda: None)
    command = typer.main.get_command(sub).commands["fit"]
    opt = next(p for p in command.params if p.opts == ["--architecture"])
    assert opt.help == "which sparsity rule" and opt.default == "topk"
    ctx = command.make_context("fit", ["--architecture", "batchtopk", "--k", "9"])
    assert fit.settings(ctx.params)["shape"] == Shape(k=9, architecture="batchtopk")
    with pytest.raises(typer.BadParameter.__mro__[1]):  # click's UsageError: not one of the choices
        command.make_context("fit", ["--architecture", "dense"])


def test_no_option_is_cut_or_wider_than_80_columns_without_patching_typer(capsys, monkeypatch):
    """Help is click's own layout; nothing in typer or rich is replaced at import."""
    from typer import rich_utils

    from inception_sae.cli import main

    assert rich_utils.Table.__module__.startswith("rich")
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert max(map(len, text.splitlines())) <= 80
    for flag in (
        "--k",
        "--seed",
        "--warmup-steps",
        "--resample-enc-scale",
        "--normalize-input",
        "--no-normalize-input",
    ):
        assert flag in text.split(), flag


def test_docs_config_md_lists_every_setting_as_the_classes_say():
    from inception_sae.commands.docs import config_markdown

    path = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert path.read_text() == config_markdown(), "rerun: PYTHONPATH=src python -m inception_sae.commands.docs"
