"""Example pictures from an analysis's pack: one file per picture in the site, thumbnails in sprite sheets.

The analysis packs every crop and heatmap into ``images/examples.pack`` (``analysis.render``). A static site
opened from disk cannot read byte ranges, so each picture a unit shows is copied out of the pack, byte for byte
and once however many units show it, to ``a/<layer>/images/<offset>.jpg``. (Data URIs inside each unit's file
were tried: a crop shown by several units is then stored once per unit, and a two-layer site at 8,192 / 8,448
features grew from 1.2 to 4.6 GB.) The table / map / concept-page thumbnails are tiles of a few sprite sheets
per layer (``a/<layer>/thumbs/<k>.jpg``, 32 x 32 tiles of 48 px), addressed as
``sprite:<path>#<col>,<row>,<cols>,<rows>`` and drawn by ``SAE.img``. Folders of single image files (older
analyses) are linked as before.
"""

from __future__ import annotations

import io
import mmap
from pathlib import Path

from PIL import Image, ImageOps

from ..analysis.render import PACK, is_packed

TILE = 48  #: thumbnail side in the sprite sheets
GRID = 32  #: tiles per sprite side (1,024 per sheet)


class Pictures:
    """One analysis's packed pictures for the site: copies of the shown ones and thumbnail tiles (by unit slot)."""

    def __init__(self, root: Path, out: Path, layer: str) -> None:
        self.root, self.out, self.layer = Path(root), Path(out), layer
        self._map: mmap.mmap | None = None
        self._file = None
        self.sheets: dict[int, Image.Image] = {}
        self.written: set[str] = set()  #: pack offsets already copied out
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

    def file(self, ref: str) -> str | None:
        """The site path of the picture at ``ref``, copied out of the pack on first use (None: not in the pack)."""
        offset = ref.split("#", 1)[1].split("+")[0]
        rel = f"a/{self.layer}/images/{offset}.jpg"
        if offset not in self.written:
            data = self.bytes(ref)
            if data is None:
                return None
            path = self.out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)  # a site is rebuilt whole: a half-written one is replaced, never reused
            self.written.add(offset)
        return rel

    def tile(self, slot: int, ref: str) -> str:
        """Paste the picture at ``ref`` as tile ``slot`` of the layer's sprite sheets; its ``sprite:`` address."""
        data = self.bytes(ref)
        if data is None:
            return ""
        sheet, at = divmod(slot, GRID * GRID)
        row, col = divmod(at, GRID)
        if sheet not in self.sheets:
            self.sheets[sheet] = Image.new("RGB", (GRID * TILE, GRID * TILE), (238, 240, 243))
        small = ImageOps.fit(Image.open(io.BytesIO(data)).convert("RGB"), (TILE, TILE))
        self.sheets[sheet].paste(small, (col * TILE, row * TILE))
        return f"sprite:a/{self.layer}/thumbs/{sheet}.jpg#{col},{row},{GRID},{GRID}"

    def close(self) -> int:
        """Write the sprite sheets; the number of files written (sheets and pictures)."""
        from ..fsio import atomic_save_image

        folder = self.out / "a" / self.layer / "thumbs"
        for k, img in self.sheets.items():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_save_image(folder / f"{k}.jpg", img, format="JPEG", quality=80)
        if self._map is not None:
            self._map.close()
        if self._file is not None:
            self._file.close()
        return len(self.sheets) + len(self.written)


def resolve(ex: dict, key: str, prefix: str, pics: Pictures | None) -> None:
    """Point one example picture at what the site serves: its copy out of the pack, a linked file, or None."""
    v = ex.get(key)
    if isinstance(v, str) and is_packed(v) and pics is not None:
        ex[key] = pics.file(v)
    elif isinstance(v, str) and v and not v.startswith("/") and ".." not in v.split("/") and "#" not in v:
        ex[key] = prefix + v
    elif key in ex:
        ex[key] = None
