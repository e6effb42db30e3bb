"""Typed configurations of ``site build`` and ``site serve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..settings import Settings

#: Upload limit of the live box (bytes).
MAX_UPLOAD = 10 * 1024 * 1024
#: Image types the live box accepts (Content-Type of the upload).
UPLOAD_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp")


@dataclass(frozen=True, kw_only=True)
class SiteSettings(Settings):
    """How the site is built: what ``run``'s ``site`` section and the command's flags set."""

    title: str = "inception-sae features"
    """Title shown in the header."""
    top_neighbours: int = 10
    """Circuit neighbours kept per feature and direction."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_neighbours < 1:
            raise UserError("top_neighbours must be >= 1")


@dataclass(frozen=True, kw_only=True)
class SiteConfig(SiteSettings):
    """What ``site build`` reads and where it writes; the CLI builds it, the library never mutates it."""

    analyses: tuple[Path, ...]
    """Analysis folders (one per layer), each written by ``inception-sae analyze``."""
    out: Path
    """Site folder to write (created; a previous site there is replaced)."""
    featvis: Path | None = None
    """Featvis folder (``<layer>/f/<id>.png``, ``<layer>/f/<id>_div<j>.png``, ``<layer>/n/<id>.png``)."""
    circuits: tuple[Path, ...] = ()
    """Circuits folders (``neighbours.json`` and/or ``graph.json``, or graph files), e.g. one per layer pair."""
    compares: tuple[Path, ...] = ()
    """Folders (or files) of ``compare.json`` from ``inception-sae compare``: one page per pair, matches per feature."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.analyses:
            raise UserError("give at least one --analysis folder")


@dataclass(frozen=True)
class ServeConfig:
    """How ``site serve`` serves a built site (and, with ``live``, runs model + SAE on uploads)."""

    site: Path
    """Built site folder (holds index.html)."""
    host: str = "127.0.0.1"
    """Interface to bind: loopback by default; 0.0.0.0 exposes the site to the network."""
    port: int = 8000
    """TCP port (0: any free port)."""
    live: bool = False
    """Enable the 'try your own image' endpoint (needs ``sae``)."""
    sae: Path | None = None
    """SAE folder for the live box."""
    weights: str | None = None
    """Model weights for the live box: path, 'random', or None for the cached file."""
    seed: int = 0
    """Seed for random weights."""
    device: str = "cpu"
    """torch device for the live box."""
    max_upload: int = MAX_UPLOAD
    """Largest accepted upload in bytes (413 above)."""
    top: int = 12
    """Features returned per uploaded image."""
    request_timeout: float = 30.0
    """Seconds a connection may stay silent (headers or body not arriving) before the server gives up on it."""

    def __post_init__(self) -> None:
        if self.live and self.sae is None:
            raise UserError("--live needs --sae")
        if not 0 <= self.port < 65536:
            raise UserError(f"port must be in 0-65535, got {self.port}")
        if self.max_upload < 1 or self.top < 1:
            raise UserError("max_upload and top must be >= 1")
        if self.request_timeout <= 0:
            raise UserError(f"request_timeout must be > 0 seconds, got {self.request_timeout}")
