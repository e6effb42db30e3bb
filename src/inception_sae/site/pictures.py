"""Example pictures from an analysis's pack: data URIs in each unit's data file, thumbnails in sprite sheets.

The analysis packs every crop and heatmap into ``images/examples.pack`` (``analysis.render``). A static site
opened from disk cannot read byte ranges, so each unit's examples travel inside its own data file as JPEG data
URIs (one file per unit, as before), and the table / map / concept-page thumbnails are tiles of a few sprite
sheets per layer (``a/<layer>/thumbs/<k>.jpg``, 32 x 32 tiles of 48 px), addressed as
``sprite:<path>#<col>,<row>,<cols>,<rows>`` and drawn by ``SAE.img``. Folders of single image files (older
analyses) are linked as before.
"""

from __future__ import annotations

import base64
import io
import mmap
from pathlib import Path

from PIL import Image, ImageOps

from ..analysis.render import PACK, is_packed

TILE = 48  #: thumbnail side in the sprite sheets
GRID = 32  #: tiles per sprite side (1,024 per sheet)


class Pictures:
    """One analysis's packed pictures for the site: data URIs and thumbnail tiles (index = unit slot)."""

    def __init__(self, root: Path, out: Path, layer: str) -> None:
        self.root, self.out, self.layer = Path(root), Path(out), layer
        self._map: mmap.mmap | None = None
        self._file = None
        self.sheets: dict[int, Image.Image] = {}
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

    def data_uri(self, ref: str) -> str | None:
        data = self.bytes(ref)
        return None if data is None else "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")

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
        """Write the sprite sheets; the number of files written."""
        from ..fsio import atomic_save_image

        folder = self.out / "a" / self.layer / "thumbs"
        for k, img in self.sheets.items():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_save_image(folder / f"{k}.jpg", img, format="JPEG", quality=80)
        if self._map is not None:
            self._map.close()
        if self._file is not None:
            self._file.close()
        return len(self.sheets)


def resolve(ex: dict, key: str, prefix: str, pics: Pictures | None) -> None:
    """Point one example picture at what the site serves: a data URI (packed), a linked file, or None."""
    v = ex.get(key)
    if isinstance(v, str) and is_packed(v) and pics is not None:
        ex[key] = pics.data_uri(v)
    elif isinstance(v, str) and v and not v.startswith("/") and ".." not in v.split("/") and "#" not in v:
        ex[key] = prefix + v
    elif key in ex:
        ex[key] = None
