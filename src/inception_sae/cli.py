"""The ``inception-sae`` command: one thin subcommand per stage (see ``commands/``)."""

from __future__ import annotations

import errno
import sys
import traceback
from typing import Any

import typer

from .commands import register_all
from .errors import UserError


def _bare_flags() -> None:
    """Boolean flags in help as ``--offline``, not ``--offline <bool>`` (typer's rich help prints a type for all).

    Wraps the option's type display, where the installed typer has one; without it the help is unchanged.
    """
    from typer import core

    option: Any = getattr(core, "TyperOption", None)
    show = getattr(option, "display_type_rich", None)
    if show is None or getattr(show, "bare_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) and self.metavar is None else show(self, ctx)

    display_type_rich.bare_flags = True  # type: ignore[attr-defined]  # functions take attributes; mypy has none
    option.display_type_rich = display_type_rich


def _whole_option_names() -> None:
    """Option and command names in help never cut (``--training-exampl…``), whatever the terminal's width.

    typer's help tables shrink every column to fit; here the name columns keep their full width (empty ones
    none) and the last column, the description, gets what is left and wraps, folding a word longer than its
    line. Where the names alone leave less than :data:`MIN_HELP` columns, rich's own layout is kept.
    """
    from rich.table import Table
    from rich.text import Text
    from typer import rich_utils

    if getattr(rich_utils.Table, "whole_names", False):
        return

    class HelpTable(Table):
        whole_names = True

        def _calculate_column_widths(self, console, options):
            *names, last = self.columns
            widths = [self._measure_column(console, options, c).maximum for c in names]
            widths = [0 if _empty(col) else w for w, col in zip(widths, names, strict=True)]
            rest = options.max_width - sum(widths)
            if not names or rest < MIN_HELP:
                return super()._calculate_column_widths(console, options)
            last.overflow = "fold"
            return [*widths, rest]

    def _empty(column) -> bool:  # e.g. the short-option columns, where no option has one
        return all(isinstance(c, str | Text) and not str(c) for c in column.cells)

    parameter_help = rich_utils._get_parameter_help

    def folded_parameter_help(**kw):
        out = parameter_help(**kw)
        for item in getattr(out, "renderables", ()):
            if isinstance(item, Text):
                item.overflow = "fold"  # a long word (a file name) wraps instead of ending in '…'
        return out

    rich_utils.Table = HelpTable  # type: ignore[misc]  # typer's help tables, replaced by the subclass above
    rich_utils._get_parameter_help = folded_parameter_help


#: The narrowest description column of the help tables (see :func:`_whole_option_names`).
MIN_HELP = 16

_bare_flags()
_whole_option_names()
app = typer.Typer(
    name="inception-sae",
    help="Sparse autoencoders on InceptionV1 (inception5h): harvest, train, analyse, visualise, publish.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
register_all(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one line and exit code 2.

    Usage errors are click's (exit 2 with usage); every error the user can fix (bad layer names, missing
    files, mismatched artefacts, a full disk) is a :class:`~.errors.UserError` or ENOSPC and is one line.
    Anything else is a bug: it keeps its traceback, followed by a line asking to report it (exit code 1).
    The process's allocator is set up for CPU training here, once, rather than inside a library call.
    """
    from .sae.cpu_memory import keep_freed_memory

    keep_freed_memory()
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            return internal_error()
        # Any stage: every writer is atomic or resumable, so freeing space and rerunning continues.
        where = f" while writing {e.filename}" if e.filename else ""
        print(f"error: disk full{where} ({e.strerror}); free some space and rerun the same command", file=sys.stderr)
        return 2
    except Exception:
        return internal_error()
    return 0


#: The line after the traceback of an unexpected exception.
BUG_HINT = (
    "internal error: this is a bug in inception-sae, not a problem with your input; please report it "
    "with the command you ran and the traceback above"
)


def internal_error() -> int:
    """Print the current exception's traceback and :data:`BUG_HINT`; exit code 1."""
    traceback.print_exc()
    print(BUG_HINT, file=sys.stderr)
    return 1


def one_line(msg: object) -> str:
    """A message on one line (the CLI's promise), whatever the exception's text held."""
    return " ".join(str(msg).split())


if __name__ == "__main__":
    sys.exit(main())
