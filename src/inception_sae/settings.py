"""Typed settings: frozen dataclasses read from plain mappings (YAML, TOML, ``--set``) and validated from their types.

A stage's settings (``HarvestSettings``, ``AnalysisSettings``...) are a frozen :class:`Settings` dataclass: each
setting once, with its type, default and help text. That is what ``inception-sae run``'s config sections hold
and what the stage's command turns into flags. The stage's config (``HarvestConfig``, ``AnalyzeConfig``...)
subclasses its settings and adds the inputs (folders, the layer, the model). :func:`from_mapping` is the one
reader of such a dataclass from plain data: an unknown key, a value of the wrong type or outside a ``Literal``
is a one-line :class:`~.errors.UserError` naming the key. :func:`check_choices` is the one check of ``Literal``
fields, called by every settings class on creation.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args, get_origin

from .errors import UserError


@cache
def type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass."""
    return typing.get_type_hints(cls)


def choices(hint: Any) -> tuple | None:
    """The values a ``Literal[...]`` hint allows (also as ``Literal[...] | None``); None for other hints."""
    if get_origin(hint) is Literal:
        return get_args(hint)
    if get_origin(hint) in (typing.Union, types.UnionType):
        for arg in get_args(hint):
            if get_origin(arg) is Literal:
                return get_args(arg)
    return None


def check_choices(obj: Any, prefix: str = "") -> None:
    """One-line error when a ``Literal`` field of the dataclass ``obj`` holds a value it does not allow."""
    # a class is hashable; mypy does not see it for type[Any] (python/mypy#11470)
    for name, hint in type_hints(type(obj)).items():  # type: ignore[arg-type]
        allowed, value = choices(hint), getattr(obj, name, None)
        if allowed is not None and value is not None and value not in allowed:
            raise UserError(f"{prefix}{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


class Settings:
    """Base of the settings dataclasses: their ``Literal`` fields are checked on creation.

    A stage's settings class (``AnalysisSettings``...) is a frozen, keyword-only dataclass declaring each setting
    once: its type, its one default and its docstring (the help text). The stage's config subclasses it and adds
    the inputs (folders, layer, model) as keyword-only fields, so that a config *is* its settings plus inputs
    and no field is written twice. A subclass with its own ``__post_init__`` calls ``super().__post_init__()``.
    """

    if TYPE_CHECKING:  # every subclass is a dataclass
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        check_choices(self)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field of the dataclass ``cls`` -> its docstring (the string literal under the field), on one line.

    That text is the field's one description: the ``--help`` of its flag and its line in docs/config.md. Fields
    inherited from a base dataclass take the base's text; a field without any text maps to "".
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        (node,) = ast.parse(textwrap.dedent(inspect.getsource(klass))).body
        body = node.body if isinstance(node, ast.ClassDef) else []
        for field, after in itertools.pairwise(body):
            text = after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) else None
            if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(text, str):
                docs[field.target.id] = " ".join(text.split())
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}


def values(obj: Any, cls: type | None = None) -> dict[str, Any]:
    """A dataclass's fields as keyword arguments (nested settings stay objects); with ``cls`` (a dataclass that
    ``obj`` is an instance of), only ``cls``'s fields: a stage config's settings, or its network."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls or obj)}


def from_mapping(cls: type, data: Any, where: str, fixed: tuple[str, ...] = ()) -> Any:
    """An instance of the dataclass ``cls`` from a mapping; nested dataclass fields are nested mappings.

    ``fixed`` names fields the caller sets itself (refused with that reason). Values are checked against
    the field types: lists become tuples, strings become Paths, a :class:`TextValue` becomes its text for a
    string field and its parsed value otherwise.
    """
    if not isinstance(data, dict):
        raise UserError(f"config section '{where}' must be a mapping, got {type(data).__name__}")
    hints, names = type_hints(cls), [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    kwargs = {}
    for key, value in data.items():
        if key in fixed:
            raise UserError(f"{where}.{key} is set by `inception-sae run` itself (from the top level or the flags)")
        if key not in names:
            raise UserError(f"unknown key {where}.{key}; valid keys: {', '.join(names)}")
        kwargs[key] = convert(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)  # the class's own checks (ranges, consistency)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


class TextValue(str):
    """A value typed on the command line: the text as typed, plus the YAML scalar it parses to."""

    parsed: Any

    def __new__(cls, text: str, parsed: Any) -> TextValue:
        obj = super().__new__(cls, text)
        obj.parsed = parsed
        return obj


def convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against (and converted to) the type ``hint``; a one-line error naming ``where``."""
    args = get_args(hint)
    if get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]  # X | None is the only union the configs use
        args = get_args(hint)
    if isinstance(value, TextValue):
        takes_text = hint in (str, Path) or (get_origin(hint) is Literal and all(isinstance(a, str) for a in args))
        value = str(value) if takes_text else value.parsed
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)
    if get_origin(hint) is Literal:
        if value not in args:
            raise UserError(f"{where} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where} must be a list, got {value!r}")
        return tuple(convert(v, args[0], where) for v in value)
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise UserError(f"{where} must be a path, got {value!r}")
        return Path(value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise TypeError(f"{where}: no reader for the type {hint!r}")
    if not ok:
        raise UserError(f"{where} must be of type {hint.__name__}, got {value!r}")
    return value


def plain(x: Any) -> Any:
    """Dataclasses -> dicts, Paths -> str, tuples -> lists, recursively (YAML/JSON-safe)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return str(x) if isinstance(x, Path) else x
