"""Typed settings: frozen dataclasses read from plain mappings (YAML, TOML, ``--set``) and validated from their types.

A stage's config dataclass (``HarvestConfig``, ``AnalyzeConfig``...) holds its inputs (folders, the layer, the
model) and its settings, each setting with its one default. Beside it, a frozen :class:`Settings` dataclass holds
the settings alone (same names, types and defaults), which is what ``inception-sae run``'s config sections hold;
:func:`settings_of` checks on import that the two agree. :func:`from_mapping` is the one reader of such a
dataclass from plain data: an unknown key, a value of the wrong type or outside a ``Literal`` is a one-line
:class:`~.errors.UserError` naming the key. :func:`check_choices` is the one check of ``Literal`` fields, called
by every config's ``__post_init__``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, get_args, get_origin

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
    """Base of the settings dataclasses: their ``Literal`` fields are checked on creation."""

    #: the fields of the stage config that the settings leave out (the inputs ``run`` fills in itself)
    inputs: ClassVar[tuple[str, ...]] = ()
    if TYPE_CHECKING:  # every subclass is a dataclass
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        check_choices(self)


S = TypeVar("S", bound=Settings)
#: settings dataclass -> the stage config it was checked against (by :func:`settings_of`)
_CONFIG_OF: dict[type, type] = {}


def settings_of(cls: type, *, extra: tuple[str, ...] = ()) -> Callable[[type[S]], type[S]]:
    """Class decorator: check that a settings dataclass is ``cls``'s fields minus its ``inputs``.

    The settings are declared as a class so that type checkers see them; this check keeps them in step with
    ``cls``: the same names in the same order, types and defaults. A field whose type is another settings
    dataclass stands for ``cls``'s field of the config that class was checked against, and defaults to that
    class. ``extra`` names the settings' own fields, which come first. A mismatch is a TypeError on import.
    """

    def check(settings: type[S]) -> type[S]:
        def fail(what: str) -> TypeError:
            return TypeError(f"{settings.__name__} does not match {cls.__name__}: {what}")

        mirrored = {f.name: f for f in dataclasses.fields(cls) if f.name not in settings.inputs}
        names = [f.name for f in dataclasses.fields(settings)]
        if names != [*extra, *mirrored]:
            raise fail(f"fields {names}, expected {[*extra, *mirrored]}")
        hints, own = type_hints(cls), type_hints(settings)  # type: ignore[arg-type]  # hashable (mypy#11470)
        for f in dataclasses.fields(settings):
            if f.name in extra:
                continue
            g, hint = mirrored[f.name], own[f.name]
            if g.default is dataclasses.MISSING and g.default_factory is dataclasses.MISSING:
                raise fail(f"{f.name} has no default in {cls.__name__}: name it as an input")
            if _CONFIG_OF.get(hint) is not None and _CONFIG_OF[hint] is hints[f.name]:
                if f.default_factory is not hint:
                    raise fail(f"{f.name} must default to {hint.__name__}()")
            elif hint != hints[f.name]:
                raise fail(f"{f.name} is {hint}, expected {hints[f.name]}")
            elif f.default_factory is not g.default_factory or not (
                type(f.default) is type(g.default) and f.default == g.default
            ):
                raise fail(f"{f.name}'s default differs")
        _CONFIG_OF[settings] = cls
        return settings

    return check


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field of the dataclass ``cls`` -> its docstring (the string literal under the field), on one line.

    That text is the field's one description: the ``--help`` of its flag and its line in docs/config.md. A
    settings class mirroring a stage config (:func:`settings_of`) takes the config's text for the fields it does
    not document itself; a field without any text maps to "".
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
    mirrored = _CONFIG_OF.get(cls)
    if mirrored is not None:
        docs = {**field_docs(mirrored), **docs}
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}


def values(settings: Any) -> dict[str, Any]:
    """A settings dataclass's fields as keyword arguments (nested settings stay objects)."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


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
    return cls(**kwargs)


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
