"""Crash-safe file writes and tolerant JSON reads: the one place the package writes a file atomically.

Every write goes to a temporary file next to its target, is fsynced, renamed over
the target and the folder fsynced, so a reader (or a restarted job) sees either the
old file or the complete new one, never a torn one. Temporary files end in ``.tmp``
so that a restart can find and delete the orphans a killed process left behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import UserError

TMP_SUFFIX = ".tmp"
#: ``read_json``'s default for "no default": a missing or broken file is an error.
_REQUIRED: Any = object()


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")


def disk_full_error(path: Path, e: OSError) -> Exception:
    """A one-line :class:`UserError` for a full disk (ENOSPC/EDQUOT); any other error unchanged."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(
            f"disk full while writing {path} ({e.strerror}); free some space and rerun the same command to resume"
        )
    return e


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name next to ``path`` for writers that want a file name; fsynced and renamed over ``path``.

    On any error the temporary file is removed and a full disk becomes a one-line
    :class:`UserError`.
    """
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise disk_full_error(path, e) from e
        raise
    fsync_dir(path.parent)


@contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """An open binary file at a temporary name, committed over ``path`` as :func:`atomic_path` does."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f
        f.flush()


atomic_file = _atomic_file  #: public name: an open binary file committed atomically when the block ends


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    with _atomic_file(Path(path)) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text written atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1, **dumps: Any) -> None:
    """JSON (indented, keys in insertion order unless ``sort_keys``) plus a newline, written atomically.

    ``dumps`` goes to :func:`json.dumps` (``default=float`` for numpy scalars, ``separators``,
    ``allow_nan=False``, ``sort_keys``).
    """
    atomic_write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n")


def atomic_save_image(path: str | Path, image: Any, format: str = "PNG", **save: Any) -> None:
    """A PIL image encoded as ``format`` (``save`` goes to ``Image.save``), written atomically."""
    with _atomic_file(Path(path)) as f:
        image.save(f, format=format, **save)


def atomic_save_safetensors(path: str | Path, tensors: dict[str, Any]) -> Path:
    """torch tensors as a ``.safetensors`` file, written atomically with the umask's permissions.

    The tensors are serialised in memory and written by Python, not by safetensors' own writer: its
    ``SafetensorError`` on a full disk is not an ``OSError``, so it escaped the one-line disk-full error
    (and its files are created 0600, where every other output follows the process umask).
    """
    from safetensors.torch import save

    atomic_write_bytes(path, save(tensors))
    return Path(path)


def read_json(path: str | Path, default: Any = _REQUIRED) -> Any:
    """Parse a JSON file; ``default`` when it is absent (without one, a missing file is an error).

    A file that exists but cannot be read or parsed is always a one-line :class:`UserError`.
    """
    path = Path(path)
    if default is not _REQUIRED and not path.is_file():
        return default
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from e
    try:
        return json.loads(text)
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from e


def json_or_none(path: str | Path) -> Any:
    """The parsed JSON of ``path``, or None where it is absent, unreadable or cut short.

    What completeness checks read: a stage's output that does not parse is not complete.
    """
    try:
        return read_json(path, None)
    except UserError:
        return None


def atomic_save_npy(path: str | Path, array: np.ndarray) -> str:
    """Save ``array`` as ``.npy`` atomically; returns the file's sha256 (hex)."""
    with _atomic_file(Path(path)) as f:
        hashing = _HashingWriter(f)  # hash while writing: no second read of the shard
        np.lib.format.write_array(hashing, np.ascontiguousarray(array), allow_pickle=False)
    return hashing.sha.hexdigest()


class _HashingWriter:
    """File-like object that forwards writes and hashes them (numpy then writes in chunks)."""

    def __init__(self, f) -> None:
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.f.write(data)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 (hex) of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def remove_orphans(folder: Path, prefix: str, keep: set[str]) -> list[str]:
    """Delete files in ``folder`` starting with ``prefix`` that are not in ``keep`` (or are ``.tmp``)."""
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        if p.name.startswith(prefix) and (p.name.endswith(TMP_SUFFIX) or p.name not in keep):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed
