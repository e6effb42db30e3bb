"""Command-line options generated from the settings dataclasses: each field one flag, its default, its help.

A stage command declares its inputs (folders, the layer) as ordinary typer parameters, plus one parameter per
settings group, annotated with the group's dataclass and given as :func:`stage`'s keywords. :func:`stage` replaces
each group parameter by one option per field of its dataclass and, when the command runs, hands the function the
dataclass built from those options with :func:`~inception_sae.settings.from_mapping` (so a value is checked as
``run --set`` checks it). The rules (docs/config.md):

- flag = the field name with dashes (``n_top`` -> ``--n-top``); a bool is ``--x/--no-x``;
- a field of a nested settings dataclass is ``--<outer>.<inner>`` (``--render.param.size``), the key that
  ``run --set featvis.render.param.size`` also names;
- a ``Literal`` field takes one of its values (click's Choice), ``X | None`` may be left out (None), a tuple field
  is repeated (``--classes 208 --classes 209``);
- default = the field's default; help = the field's docstring (:func:`~inception_sae.settings.field_docs`).

A new field of a settings class is therefore a new flag of its command without any change here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, get_args, get_origin

import typer

from ..settings import field_docs, from_mapping, type_hints

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Group:
    """A settings dataclass as options of a command."""

    cls: type
    """the dataclass whose fields become options"""
    section: str
    """its name in error messages and in ``run``'s config (``train``: ``train.samples must be ...``)"""
    sweep: tuple[str, ...] = ()
    """fields that take several values (repeat the flag); the command gets one instance per combination"""
    skip: tuple[str, ...] = ()
    """fields left out (the command sets them itself)"""
    build: bool = True
    """False: the command gets the values as a dict (for a class that also needs the command's inputs)"""
    only: tuple[str, ...] = ()
    """if given, only these fields"""
    unset: bool = False
    """every option defaults to None (not given): the command gets only the values given, as overrides"""


@dataclass(frozen=True)
class Flag:
    """One generated option: the field it sets (a path through nested dataclasses) and its typer parameter."""

    path: tuple[str, ...]
    parameter: inspect.Parameter

    @property
    def name(self) -> str:
        return "--" + ".".join(p.replace("_", "-") for p in self.path)


def _is_settings(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def flags(group: Group, cls: type | None = None, prefix: tuple[str, ...] = ()) -> list[Flag]:
    """The options of a group's fields, nested dataclasses flattened (their fields under ``outer.`` names)."""
    cls = cls or group.cls
    hints, docs, out = type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        if not prefix and (f.name in group.skip or (group.only and f.name not in group.only)):
            continue
        hint, path = hints[f.name], (*prefix, f.name)
        if _is_settings(hint):
            out += flags(group, hint, path)
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]  # a field without a default has a factory
        if group.unset:
            hint, default = hint | None, None
        out.append(_flag(path, hint, default, docs[f.name], sweep=not prefix and f.name in group.sweep))
    return out


def _flag(path: tuple[str, ...], hint: Any, default: Any, doc: str, sweep: bool) -> Flag:
    name = "--" + ".".join(p.replace("_", "-") for p in path)
    help, metavar = doc.replace("``", "`"), None
    if get_origin(hint) is tuple:  # a tuple field is a repeated flag
        hint, default = list[get_args(hint)[0]], list(default)  # type: ignore[misc]
    elif sweep:
        hint, default, help = list[hint], [default], help + "; repeat for a sweep"  # type: ignore[valid-type]
    if get_origin(hint) is list:
        metavar = f"<{get_args(hint)[0].__name__}>"
    decls = (f"{name}/--no-{name[2:]}",) if _bare(hint) is bool else (name,)
    option = typer.Option(default, *decls, help=help, metavar=metavar, show_default=default not in (None, []))
    return Flag(path, inspect.Parameter("__".join(path), inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=hint))  # fmt: skip


def _bare(hint: Any) -> Any:
    """``X`` of ``X | None``."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in get_args(hint) if a is not type(None)]
    return hint


def _settings(group: Group, given: dict[tuple[str, ...], Any]) -> Any:
    """The group's dataclass (or dict, or list for a sweep) from the options' values."""

    def one(values: dict[tuple[str, ...], Any]) -> Any:
        data: dict[str, Any] = {}
        for path, value in values.items():
            node = data
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        if group.unset:
            return {key: value for key, value in data.items() if value is not None}
        return from_mapping(group.cls, data, group.section) if group.build else data

    if not group.sweep:
        return one(given)
    swept = [[((name,), v) for v in given[(name,)]] for name in group.sweep]
    return [one(given | dict(combo)) for combo in itertools.product(*swept)]


def stage(**groups: Group) -> Callable[[F], F]:
    """Decorator: each parameter of the command named in ``groups`` becomes its group's generated options.

    The decorated function keeps its other parameters (the inputs) and receives, for each group, the settings
    built from the options. ``wrapper.groups`` and ``wrapper.flags`` tell tests and docs what was generated;
    ``wrapper.settings(params)`` builds the groups from a click context's ``params``.
    """

    def decorate(fn: F) -> F:
        sig, hints = inspect.signature(fn), typing.get_type_hints(fn)
        generated = {name: flags(group) for name, group in groups.items()}
        params = []
        for p in sig.parameters.values():
            if p.name in groups:
                params += [f.parameter for f in generated[p.name]]
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, Any)))

        def settings(kw: dict[str, Any]) -> dict[str, Any]:
            """``kw`` (click's parameter values) with each group's options replaced by the group's settings."""
            kw = dict(kw)
            for name, group in groups.items():
                kw[name] = _settings(group, {f.path: kw.pop(f.parameter.name) for f in generated[name]})
            return kw

        @functools.wraps(fn)
        def wrapper(**kw: Any) -> Any:
            return fn(**settings(kw))

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.groups, wrapper.flags, wrapper.settings = groups, generated, settings  # type: ignore[attr-defined]
        return typing.cast(F, wrapper)

    return decorate
