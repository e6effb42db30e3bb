"""The exceptions that the CLI turns into a one-line message and exit code 2; anything else is a bug.

:class:`UserError` is a ``ValueError`` so that library callers which validate with ``except ValueError``
keep working; the two subclasses are also the built-in type a library caller would expect for a missing
file or an unknown name, so ``except FileNotFoundError`` / ``except KeyError`` still catch them.
"""


class UserError(ValueError):
    """Bad input or environment that the user can fix; the message says how."""

    __str__ = BaseException.__str__  # the message as given (KeyError's str() would quote it)


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist, or holds nothing usable (no images)."""


class UnknownNameError(UserError, KeyError):
    """A name the user gave (a layer, a branch) that does not exist; the message lists the valid ones."""
