"""Image collections: folders or file lists, robust decoding, inception5h preprocessing.

Every image gets a stable id (its position in the sorted list of relative
paths) and, when the ImageNet layout gives it, a true label (the wnid of its
parent folder, or of its file name like ``n01440764.jpg``). Decoding never
crashes a run: corrupt, truncated, non-image and too-small files are skipped and
counted by reason; CMYK, greyscale, palette, 16-bit and alpha images are
converted to 8-bit RGB.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import IO

import numpy as np
import torch
from PIL import Image

from ..errors import MissingInputError, UserError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
WNID_RE = re.compile(r"^n\d{8}$")
#: Images whose short side is below this are skipped as "too small".
MIN_SIDE = 8


@dataclass(frozen=True)
class Preprocess:
    """Geometry of the evaluation crop: resize the short side, then centre-crop."""

    resize: int = 256  #: short side after resizing (0: no resize)
    crop: int = 224  #: side of the centre crop (0: no crop)

    def __post_init__(self) -> None:
        if self.resize < 0 or self.crop < 0:
            raise UserError("resize and crop must be >= 0")
        if self.resize and self.crop and self.crop > self.resize:
            raise UserError(f"crop {self.crop} is larger than the resized short side {self.resize}")

    @classmethod
    def for_crop(cls, crop: int) -> Preprocess:
        """InceptionV1's evaluation geometry (resize to 256, crop 224) scaled to a centre crop of side ``crop``."""
        return cls(resize=round(crop * 256 / 224), crop=crop)

    def to_dict(self) -> dict:
        """JSON-ready description, recorded in every artefact's manifest."""
        return {"resize": self.resize, "crop": self.crop, "scale": "x*255-117 in model", "colour": "RGB"}


class ImageDecodeError(Exception):
    """An image was skipped; ``reason`` is a short category for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def to_rgb8(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited on mid-grey)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        scale = 255.0 / (65535.0 if hi > 255 else max(hi, 1.0))
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = arr.min(), arr.max()
        img = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (128, 128, 128))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def decode_image(path: str | Path | IO[bytes]) -> Image.Image:
    """Open and fully decode an image (a path or a binary file) as 8-bit RGB, or raise :class:`ImageDecodeError`."""
    if isinstance(path, (str, Path)) and Path(path).is_symlink() and not Path(path).exists():  # dangling or a loop
        raise ImageDecodeError("broken_link", str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                rgb = to_rgb8(img)
    except FileNotFoundError as e:
        raise ImageDecodeError("missing", str(path)) from e
    except Image.UnidentifiedImageError as e:
        raise ImageDecodeError("not_an_image", str(path)) from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # pixels far beyond any photo
        raise ImageDecodeError("too_large", f"{path}: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError("corrupt", f"{path}: {e}") from e
    if min(rgb.size) < MIN_SIDE:
        raise ImageDecodeError("too_small", f"{path}: {rgb.size}")
    return rgb


def resize_crop(img: Image.Image, pre: Preprocess) -> Image.Image:
    """Resize the short side to ``pre.resize`` (antialiased) and centre-crop ``pre.crop``."""
    if pre.resize:
        w, h = img.size
        s = pre.resize / min(w, h)
        img = img.resize(
            (max(pre.resize, round(w * s)), max(pre.resize, round(h * s))), Image.Resampling.BILINEAR, reducing_gap=None
        )
    if pre.crop:
        w, h = img.size
        if min(w, h) < pre.crop:  # only possible with resize=0
            s = pre.crop / min(w, h)
            img = img.resize((max(pre.crop, round(w * s)), max(pre.crop, round(h * s))), Image.Resampling.BILINEAR)
            w, h = img.size
        left, top = (w - pre.crop) // 2, (h - pre.crop) // 2
        img = img.crop((left, top, left + pre.crop, top + pre.crop))
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def load_image(path: str | Path, pre: Preprocess = Preprocess()) -> torch.Tensor:
    """Decode, resize, crop: (3, crop, crop) in [0, 1]. Raises :class:`ImageDecodeError`."""
    return to_tensor(resize_crop(decode_image(path), pre))


def wnid_of(rel: PurePath) -> str | None:
    """The ImageNet wnid of a path, from its parent folder or its file stem."""
    for part in (rel.parent.name, rel.stem.split("_")[0]):
        if WNID_RE.match(part):
            return part
    return None


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files below ``root``, as sorted relative paths (by extension, case-insensitive)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"image folder {root} does not exist")
    pattern = root.rglob("*") if recursive else root.glob("*")
    # A broken or looping symlink is listed too, so that it is skipped and counted like any unreadable file.
    return sorted(
        p.relative_to(root) for p in pattern if p.suffix.lower() in IMAGE_EXTENSIONS and (p.is_file() or p.is_symlink())
    )


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """Images under a root folder (recursive) or from an explicit file list.

    ``dataset[i]`` returns ``(tensor (3, crop, crop) or None, i, skip reason or
    "")`` so that a DataLoader never dies on a bad file; :func:`iter_batches`
    drops the skipped ones and counts them.
    """

    root: Path
    files: list[Path]  #: paths relative to ``root`` (sorted for folders)
    preprocess: Preprocess = field(default_factory=Preprocess)

    @classmethod
    def from_folder(cls, root: str | Path, preprocess: Preprocess = Preprocess(), recursive: bool = True):
        """All images below ``root``; ids follow the sorted relative paths."""
        files = list_images(root, recursive)
        if not files:
            raise MissingInputError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {root}")
        return cls(Path(root), files, preprocess)

    @classmethod
    def from_list(
        cls, paths: Sequence[str | Path], root: str | Path | None = None, preprocess: Preprocess = Preprocess()
    ):
        """Explicit files in the given order; relative to ``root`` when given."""
        root = Path(root) if root is not None else Path(".")
        files = [Path(p).relative_to(root) if Path(p).is_absolute() and root != Path(".") else Path(p) for p in paths]
        return cls(root, files, preprocess)

    @classmethod
    def from_path(cls, path: str | Path, preprocess: Preprocess = Preprocess()):
        """A folder, or a text file listing one image path per line (relative to the file)."""
        path = Path(path)
        if path.is_dir():
            return cls.from_folder(path, preprocess)
        if path.is_file() and path.suffix.lower() in (".txt", ".lst"):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f"cannot read the image list {path}: {e}") from e
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
            outside = [ln for ln in lines if Path(ln).is_absolute() and not Path(ln).is_relative_to(path.parent)]
            if outside:
                raise UserError(f"the image list {path} names {outside[0]}, outside its folder {path.parent}")
            return cls.from_list(lines, root=path.parent, preprocess=preprocess)
        raise MissingInputError(f"{path} is neither an image folder nor a .txt list of images")

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        """Absolute path of image ``i``."""
        return self.root / self.files[i]

    def image_id(self, i: int) -> str:
        """Stable id: the relative path with forward slashes."""
        return self.files[i].as_posix()

    def label(self, i: int) -> str | None:
        """True label (wnid) if the layout gives one."""
        return wnid_of(self.files[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str]:
        try:
            return load_image(self.path(i), self.preprocess), i, ""
        except ImageDecodeError as e:
            return None, i, e.reason


def collate_skipping(items: list[tuple[torch.Tensor | None, int, str]]):
    """(stack of the good items or None, their indices, skipped [(i, reason)]).

    An item is an image (3, H, W), or an image's views (V, 3, S, S) in a harvest.
    """
    good = [(x, i) for x, i, _ in items if x is not None]
    skipped = [(i, r) for x, i, r in items if x is None]
    if not good:
        return None, [], skipped
    return torch.stack([x for x, _ in good]), [i for _, i in good], skipped


@dataclass
class SkipLog:
    """Counts of skipped images by reason, with the first few ids of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, image_id: str) -> None:
        self.counts[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 10:
            ex.append(image_id)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(self.counts), "examples": self.examples}

    def summary(self) -> str:
        """One line, e.g. ``skipped 3 images (corrupt: 2, not_an_image: 1)``."""
        if not self.total:
            return "skipped 0 images"
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        return f"skipped {self.total} images ({parts})"


def cpu_count() -> int:
    """CPU cores this process may run on (its affinity where the OS has one, else ``os.cpu_count()``)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_capped_noted: set[tuple[int, int]] = set()


def usable_workers(workers: int) -> int:
    """``workers`` capped at the cores this process may use (every stage's DataLoader goes through here).

    More decoding processes than cores only compete for them (and torch warns about it at each loader); the
    cap is said once per process in one line on stderr.
    """
    cap = cpu_count()
    if workers <= cap:
        return workers
    if (workers, cap) not in _capped_noted:
        import sys

        _capped_noted.add((workers, cap))
        print(f"note: {workers} workers asked, {cap} used (this machine has {cap} CPU cores)", file=sys.stderr)
    return cap


def iter_batches(
    dataset: ImageDataset,
    batch_size: int = 32,
    *,
    indices: Sequence[int] | None = None,
    workers: int = 0,
    skips: SkipLog | None = None,
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """Decoded batches ``(images (B, 3, H, W), dataset indices)`` in order.

    Skipped files are recorded in ``skips`` (a :class:`SkipLog`) with a warning
    count at the end; a batch in which every image failed is not yielded.
    """
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, list(indices))
    workers = usable_workers(workers)
    loader = torch.utils.data.DataLoader(
        subset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_skipping,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    for images, idx, skipped in loader:
        for i, reason in skipped:
            if skips is not None:
                skips.add(reason, dataset.image_id(i))
        if images is not None:
            yield images, idx
