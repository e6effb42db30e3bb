"""Example pictures from an analysis's pack: one sprite sheet per unit in the site, thumbnails in shared sheets.

The analysis packs every crop and heatmap into ``images/examples.pack`` (``analysis.render``). A static site
opened from disk cannot read byte ranges, so each unit (feature or neuron) gets one sheet holding every picture
its page shows, ``a/<layer>/sheets/<f|n><id>.jpg``: square tiles of :data:`SHEET_TILE` px (the pictures fitted to
the square the page draws them in), addressed as ``sprite:<path>#<col>,<row>,<cols>,<rows>`` and drawn by
``SAE.img``. A layer of 8,448 features is then one sheet and one data file per unit, not ~15 picture files.
(One copied file per picture made 150,000 files per layer; data URIs inside each unit's file stored a crop once
per unit showing it and grew a two-layer site from 1.2 to 4.6 GB.) The table / map / concept-page thumbnails
are tiles of a few shared sheets per layer (``a/<layer>/thumbs/<k>.jpg``, 32 x 32 tiles of 48 px). Folders of
single image files (older analyses) are linked as before.
"""

from __future__ import annotations

import io
import mmap
from collections.abc import Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

from ..analysis.render import PACK, THUMB, is_packed

TILE = 48  #: thumbnail side in the shared sprite sheets
GRID = 32  #: tiles per shared sprite side (1,024 per sheet)
SHEET_TILE = THUMB  #: tile side in a unit's sheet (the analysis's picture size: sharp at 2x the page's 59 px)
SHEET_COLS = 8  #: tiles per row of a unit's sheet
SHEET_QUALITY = 80  #: JPEG quality of a unit's sheet (its pictures were JPEGs already)
BACKGROUND = (238, 240, 243)


def compose_sheet(pictures: list[bytes], path: str) -> None:
    """Fit each JPEG to a square tile, lay them out row by row, and save the sheet atomically."""
    from ..fsio import atomic_save_image

    cols = min(len(pictures), SHEET_COLS)
    rows = -(-len(pictures) // cols)
    sheet = Image.new("RGB", (cols * SHEET_TILE, rows * SHEET_TILE), BACKGROUND)
    for i, data in enumerate(pictures):
        tile = Image.open(io.BytesIO(data)).convert("RGB")
        if tile.size != (SHEET_TILE, SHEET_TILE):
            tile = ImageOps.fit(tile, (SHEET_TILE, SHEET_TILE))
        sheet.paste(tile, ((i % cols) * SHEET_TILE, (i // cols) * SHEET_TILE))
    atomic_save_image(Path(path), sheet, format="JPEG", quality=SHEET_QUALITY)


class Pictures:
    """One analysis's packed pictures for the site: a sheet per unit and thumbnail tiles (by unit slot).

    Sheets are composed by ``workers`` processes (0: in this one) while the build goes on writing unit files.
    """

    def __init__(self, root: Path, out: Path, layer: str, workers: int = 0) -> None:
        self.root, self.out, self.layer = Path(root), Path(out), layer
        self._map: mmap.mmap | None = None
        self._file = None
        self.sheets: dict[int, Image.Image] = {}
        self.unit_sheets = 0
        self._pool: Executor | None = ProcessPoolExecutor(workers) if workers > 0 else None
        self._pending: list[Future] = []
        if (self.root / PACK).is_file() and (self.root / PACK).stat().st_size > 0:
            self._file = open(self.root / PACK, "rb")  # noqa: SIM115 - closed in close()
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def bytes(self, ref: str) -> bytes | None:
        """The JPEG a pack reference points at (None when the pack is missing or shorter)."""
        if self._map is None:
            return None
        offset, length = (int(x) for x in ref.split("#", 1)[1].split("+"))
        data = self._map[offset : offset + length]
        return data if len(data) == length else None

    def sheet(self, unit: str, refs: Iterable[str]) -> dict[str, str]:
        """Lay the pictures at ``refs`` out in the unit's sheet; each ref's ``sprite:`` address (missing: none)."""
        found: dict[str, bytes] = {}
        for ref in refs:
            if ref not in found and (data := self.bytes(ref)) is not None:
                found[ref] = data
        if not found:
            return {}
        rel = f"a/{self.layer}/sheets/{unit}.jpg"
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pictures = list(found.values())
        if self._pool is None:
            compose_sheet(pictures, str(path))
        else:
            self._pending.append(self._pool.submit(compose_sheet, pictures, str(path)))
            if len(self._pending) > 256:  # bound the bytes queued for the workers
                self._drain(keep=64)
        self.unit_sheets += 1
        cols = min(len(found), SHEET_COLS)
        rows = -(-len(found) // cols)
        return {ref: f"sprite:{rel}#{i % cols},{i // cols},{cols},{rows}" for i, ref in enumerate(found)}

    def _drain(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            self._pending.pop(0).result()

    def tile(self, slot: int, ref: str) -> str:
        """Paste the picture at ``ref`` as tile ``slot`` of the layer's thumbnail sheets; its ``sprite:`` address."""
        data = self.bytes(ref)
        if data is None:
            return ""
        sheet, at = divmod(slot, GRID * GRID)
        row, col = divmod(at, GRID)
        if sheet not in self.sheets:
            self.sheets[sheet] = Image.new("RGB", (GRID * TILE, GRID * TILE), BACKGROUND)
        small = ImageOps.fit(Image.open(io.BytesIO(data)).convert("RGB"), (TILE, TILE))
        self.sheets[sheet].paste(small, (col * TILE, row * TILE))
        return f"sprite:a/{self.layer}/thumbs/{sheet}.jpg#{col},{row},{GRID},{GRID}"

    def close(self) -> int:
        """Finish the unit sheets and write the thumbnail sheets; the number of files written."""
        from ..fsio import atomic_save_image

        try:
            self._drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
            folder = self.out / "a" / self.layer / "thumbs"
            for k, img in self.sheets.items():
                folder.mkdir(parents=True, exist_ok=True)
                atomic_save_image(folder / f"{k}.jpg", img, format="JPEG", quality=80)
            if self._map is not None:
                self._map.close()
            if self._file is not None:
                self._file.close()
        return len(self.sheets) + self.unit_sheets


def sheet_workers() -> int:
    """Processes composing unit sheets while the builder writes unit files: one per core (at most 8), none on a
    one-core machine (the builder composes them itself)."""
    from ..data.images import cpu_count

    cores = cpu_count()
    return min(cores, 8) if cores > 1 else 0


def resolve(ex: dict, key: str, prefix: str, sprites: dict[str, str]) -> None:
    """Point one example picture at what the site serves: its tile in the unit's sheet, a linked file, or None."""
    v = ex.get(key)
    if isinstance(v, str) and is_packed(v):
        ex[key] = sprites.get(v)
    elif isinstance(v, str) and v and not v.startswith("/") and ".." not in v.split("/") and "#" not in v:
        ex[key] = prefix + v
    elif key in ex:
        ex[key] = None
