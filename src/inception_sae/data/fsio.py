"""Crash-safe file writes: temporary file, fsync, atomic rename, fsync of the folder.

A reader (or a restarted harvest) therefore sees either the old file or the
complete new one, never a torn one. Temporary files end in ``.tmp`` so that a
restart can find and delete the orphans a killed process left behind.
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

from ..errors import UserError

TMP_SUFFIX = ".tmp"


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
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write to a temp file next to ``path``, fsync it, rename it over ``path``, fsync the folder.

    On any error the temp file is removed and a full disk becomes a one-line :class:`UserError`.
    """
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise disk_full_error(path, e) from e
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    with _atomic_file(path) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON (indented, keys in insertion order) written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def read_json(path: Path) -> Any:
    """Parse a JSON file; a clear :class:`UserError` when it is unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from e


def atomic_save_npy(path: Path, array: np.ndarray) -> str:
    """Save ``array`` as ``.npy`` atomically; returns the file's sha256 (hex)."""
    with _atomic_file(path) as f:
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
    removed = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        if p.name.startswith(prefix) and (p.name.endswith(TMP_SUFFIX) or p.name not in keep):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed
