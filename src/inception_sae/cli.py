"""The ``inception-sae`` command: one thin subcommand per stage (see ``commands/``)."""

from __future__ import annotations

import errno
import sys
import traceback

import typer

from .commands import register_all
from .errors import UserError

app = typer.Typer(
    name="inception-sae",
    help="Sparse autoencoders on InceptionV1 (inception5h): harvest, train, analyse, visualise, publish.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # click's own help layout: at any width option names stay whole and descriptions wrap beside or below them
    rich_markup_mode=None,
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
