"""Download a file once, atomically, check it, and record its size and sha256 beside it.

Used for the inception5h weights and the demo's Imagenette archive. A transfer
that stops short of Content-Length, or content that fails the caller's check,
leaves nothing at the destination; a cached file that no longer matches its
record is refused.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import UserError
from .fsio import atomic_path, atomic_write_json, file_sha256, read_json


def record_path(path: Path) -> Path:
    """The JSON record (url, size, sha256) kept next to a downloaded file."""
    return path.with_name(path.name + ".json")


def verify_recorded(path: Path, error: type[Exception] = UserError) -> str:
    """Check ``path`` against its download record (if any); return its sha256."""
    digest = file_sha256(path)
    record = record_path(path)
    if record.exists():
        meta = read_json(record)
        if meta.get("sha256") != digest or meta.get("size", path.stat().st_size) != path.stat().st_size:
            raise error(
                f"{path} does not match the sha256 and size recorded when it was downloaded; "
                "delete it to download again"
            )
    return digest


def fetch(
    url: str,
    dest: Path,
    *,
    check: Callable[[Path], None],
    remedy: str,
    error: type[Exception] = UserError,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``; ``check(tmp)`` raises on wrong content; record size and sha256.

    Network and disk failures become one ``error`` line ending in ``remedy``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0)
                try:
                    got = copy_with_progress(resp, out, total, progress, dest.name)
                except http.client.IncompleteRead as e:
                    got = total - (e.expected or 0)
            if total and got != total:
                raise error(f"download of {url} was interrupted: got {got} of {total} bytes")
            check(tmp)
            digest = file_sha256(tmp)
        atomic_write_json(record_path(dest), {"url": url, "size": got, "sha256": digest}, indent=2)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
        raise error(f"could not download {dest.name} from {url} ({e}). {remedy}") from e


def copy_with_progress(resp, out, total: int, progress: bool, label: str) -> int:
    """Copy a response body to ``out`` under a rich download bar; return the bytes copied."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    got = 0
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=not progress,
        transient=True,
        console=Console(stderr=True),  # stdout stays for results
    ) as bar:
        task = bar.add_task(f"downloading {label}", total=total or None)
        while chunk := resp.read(1 << 16):
            out.write(chunk)
            got += len(chunk)
            bar.update(task, advance=len(chunk))
    return got
