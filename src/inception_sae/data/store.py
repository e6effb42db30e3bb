"""The activation store: a folder of memory-mappable ``.npy`` shards plus ``manifest.json``.

Layout (the public store format)::

    STORE/manifest.json                  everything needed to reproduce and to check the store
    STORE/images.txt                     image ids (relative paths), one per line; line i is image i
    STORE/shards/rank0-00000.npy         (n, d) vectors in the storage dtype
    STORE/shards/rank0-00000.prov.npy    (n, 4) int32 provenance: image index, view, y, x
    STORE/parts/rank0.json               one harvest process's progress (merged into the manifest)
    STORE/stats.json                     cached per-dimension statistics

The image list lives in ``images.txt`` rather than inline in the manifest: the
manifest is rewritten after every shard, and at ImageNet scale (1.28M ids) an
inline list would make each rewrite ~40 MB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ..errors import UserError
from ..fsio import atomic_save_npy, atomic_write_bytes, atomic_write_json, file_sha256, json_or_none, read_json
from .sharded import ShardedArray

FORMAT = "inception-sae/activation-store"
FORMAT_VERSION = 1
MANIFEST, IMAGES_FILE, STATS_FILE = "manifest.json", "images.txt", "stats.json"
#: The manifest's ``status`` once every shard is written: the store's completion marker.
COMPLETE = "complete"
PROV_COLUMNS = ("image", "view", "y", "x")
StoreDtype = Literal["float16", "float32"]
DTYPES: tuple[str, ...] = get_args(StoreDtype)


def now_iso() -> str:
    """UTC time stamp for manifests."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_version() -> str:
    from .._version import __version__

    return __version__


def shard_names(rank: int, index: int) -> tuple[str, str]:
    """Relative paths of shard ``index`` of ``rank``: vectors and provenance."""
    stem = f"shards/rank{rank}-{index:05d}"
    return f"{stem}.npy", f"{stem}.prov.npy"


def write_shard(root: Path, rank: int, index: int, vectors: np.ndarray, prov: np.ndarray) -> dict[str, Any]:
    """Write one shard (vectors (n, d), provenance (n, 4) int32) durably; its manifest entry."""
    if len(vectors) != len(prov) or prov.shape[1:] != (4,):
        raise ValueError(f"vectors {vectors.shape} and provenance {prov.shape} do not match")
    vec_name, prov_name = shard_names(rank, index)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    # Provenance first, vectors last: a shard counts only once it is listed in a manifest anyway.
    prov_sha = atomic_save_npy(root / prov_name, prov.astype(np.int32, copy=False))
    vec_sha = atomic_save_npy(root / vec_name, vectors)
    return {
        "file": vec_name,
        "provenance": prov_name,
        "count": len(vectors),
        "sha256": vec_sha,
        "provenance_sha256": prov_sha,
        "rank": rank,
    }


def write_image_list(root: Path, ids: list[str]) -> str:
    """Write ``images.txt`` atomically; returns its sha256."""
    data = "".join(f"{i}\n" for i in ids).encode()
    atomic_write_bytes(root / IMAGES_FILE, data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoreStats:
    """Per-dimension statistics of all vectors, computed in float64 in one streaming pass."""

    count: int  #: number of vectors
    mean: np.ndarray  #: (d,) mean of each dimension
    var: np.ndarray  #: (d,) population variance of each dimension
    mean_sq_norm: float  #: mean over vectors of ||v||^2 (for input scaling, e.g. sqrt(d / E||v||^2))

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean.tolist(),
            "var": self.var.tolist(),
            "mean_sq_norm": self.mean_sq_norm,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> StoreStats:
        return cls(int(obj["count"]), np.asarray(obj["mean"]), np.asarray(obj["var"]), float(obj["mean_sq_norm"]))


class ActivationStore:
    """A read-only view of a store folder; vectors stay on disk (memory-mapped).

    ``store.vectors`` (N, d), ``store.image_ids`` (N,), ``store.views`` (N,),
    ``store.positions`` (N, 2) = (y, x) on the layer's grid, ``store.images``
    (image index -> path relative to the image root), ``len(store)`` = N.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path, self.manifest = path, manifest

    # -- opening and writing ----------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> ActivationStore:
        """Open a store written by ``harvest`` or :meth:`write` (complete or in progress)."""
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise UserError(f"{path} is not an activation store (no {MANIFEST})")
        manifest = read_json(path / MANIFEST)
        if manifest.get("format") != FORMAT:
            raise UserError(f"{path / MANIFEST} is not an activation-store manifest (format {manifest.get('format')})")
        return cls(path, manifest)

    @classmethod
    def read(cls, path: str | Path) -> ActivationStore:
        """The store at ``path`` (:meth:`open`)."""
        return cls.open(path)

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        """The manifest says complete and every shard it lists is on disk with its rows (headers only are read)."""
        path = Path(path)
        manifest = json_or_none(path / MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("status") != COMPLETE:
            return False
        try:
            for shard in manifest.get("shards", []):
                if np.load(path / shard["file"], mmap_mode="r").shape[0] != shard["count"]:
                    return False
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True

    @classmethod
    def write(
        cls,
        path: str | Path,
        vectors,
        layer: str | None = None,
        *,
        image_ids=None,
        positions=None,
        views=None,
        images: list[str] | None = None,
        dtype: str | None = None,
        shard_size: int = 1 << 20,
        meta: dict[str, Any] | None = None,
    ) -> ActivationStore:
        """Store bring-your-own vectors (N, d); provenance defaults to -1 (unknown).

        ``dtype`` is the storage dtype (float16 or float32; default: the input's
        if it is one of them, else float32). Refuses to overwrite a store.
        """
        path = Path(path)
        if (path / MANIFEST).exists():
            raise UserError(f"{path} already holds an activation store; choose a new folder")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise UserError(f"vectors must be (N, d), got shape {vectors.shape}")
        dtype = dtype or (str(vectors.dtype) if str(vectors.dtype) in DTYPES else "float32")
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        prov = _provenance(len(vectors), image_ids, positions, views)
        path.mkdir(parents=True, exist_ok=True)
        shards = [
            write_shard(path, 0, i, vectors[s : s + shard_size].astype(dtype), prov[s : s + shard_size])
            for i, s in enumerate(range(0, len(vectors), shard_size))
        ]
        manifest = new_manifest(layer, int(vectors.shape[1]), dtype, meta or {"source": "ActivationStore.write"})
        if images is not None:
            manifest["images_sha256"] = write_image_list(path, list(images))
            manifest["num_images"] = len(images)
        manifest.update(shards=shards, count=sum(s["count"] for s in shards), status=COMPLETE)
        atomic_write_json(path / MANIFEST, manifest)
        return cls(path, manifest)

    # -- metadata ---------------------------------------------------------------------
    @property
    def layer(self) -> str | None:
        return self.manifest.get("layer")

    @property
    def d(self) -> int:
        return int(self.manifest["d"])

    @property
    def dtype(self) -> str:
        return self.manifest["dtype"]

    @property
    def status(self) -> str:
        return self.manifest.get("status", "unknown")

    @property
    def shards(self) -> list[dict[str, Any]]:
        return self.manifest.get("shards", [])

    def __len__(self) -> int:
        return int(sum(s["count"] for s in self.shards))

    @property
    def fingerprint(self) -> str:
        """sha256 of the manifest's content hashes: its vectors, provenance and image list, wherever the store lies.

        Read from the manifest alone (no shard is hashed), so an SAE folder can recognise
        its training store after the store was moved, and tell it from another store.
        """
        return store_fingerprint(self.manifest)

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.path)!r}, layer={self.layer}, N={len(self)}, d={self.d}, {self.status})"

    # -- data ---------------------------------------------------------------------------
    @cached_property
    def vectors(self) -> ShardedArray:
        """(N, d) memory-mapped vectors over all shards, in the storage dtype."""
        parts = [self._load(s["file"], s["count"]) for s in self.shards]
        return ShardedArray(parts, d=self.d, dtype=np.dtype(self.dtype))

    @cached_property
    def provenance(self) -> np.ndarray:
        """(N, 4) int32 columns image index, view, y, x (read into memory: 16 bytes per vector)."""
        parts = [np.asarray(self._load(s["provenance"], s["count"])) for s in self.shards]
        return np.concatenate(parts) if parts else np.zeros((0, 4), np.int32)

    def image_index(self, rows: np.ndarray) -> np.ndarray:
        """Image index (-1: unknown) of the given store rows, read from the provenance memory maps."""
        if "provenance" in self.__dict__:  # already in memory
            return self.provenance[np.asarray(rows), 0]
        parts = [self._load(s["provenance"], s["count"]) for s in self.shards]
        return ShardedArray(parts, d=4, dtype=np.dtype(np.int32))[np.asarray(rows)][:, 0]

    @property
    def image_ids(self) -> np.ndarray:
        """(N,) index into :attr:`images` of each vector's image (-1: unknown)."""
        return self.provenance[:, 0]

    @property
    def views(self) -> np.ndarray:
        """(N,) augmentation view of each vector (0: the plain evaluation crop)."""
        return self.provenance[:, 1]

    @property
    def positions(self) -> np.ndarray:
        """(N, 2) = (y, x) of each vector on the layer's spatial grid."""
        return self.provenance[:, 2:4]

    @cached_property
    def images(self) -> list[str]:
        """Image index -> path relative to the image root (``manifest['image_root']``)."""
        f = self.path / IMAGES_FILE
        return f.read_text().splitlines() if f.is_file() else []

    def _load(self, rel: str, count: int) -> np.ndarray:
        try:
            arr = np.load(self.path / rel, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"shard {self.path / rel} is unreadable ({e}); run `inception-sae store verify`") from e
        if len(arr) != count:
            raise UserError(f"shard {self.path / rel} has {len(arr)} rows, manifest says {count}")
        return arr

    # -- checks and statistics ----------------------------------------------------------
    def verify(self) -> list[str]:
        """Problems found by re-hashing every shard file (empty list: all good)."""
        problems = []
        for s in self.shards:
            for key, sha_key in (("file", "sha256"), ("provenance", "provenance_sha256")):
                f = self.path / s[key]
                if not f.is_file():
                    problems.append(f"{s[key]}: missing")
                elif file_sha256(f) != s[sha_key]:
                    problems.append(f"{s[key]}: sha256 mismatch")
        if self.manifest.get("count") is not None and self.manifest["count"] != len(self):
            problems.append(f"manifest count {self.manifest['count']} != sum of shard counts {len(self)}")
        images, want = self.path / IMAGES_FILE, self.manifest.get("images_sha256")
        if want is not None and images.is_file() and file_sha256(images) != want:
            problems.append(f"{IMAGES_FILE}: sha256 mismatch")
        return problems

    def stats(self, chunk: int = 1 << 16, refresh: bool = False) -> StoreStats:
        """Per-dimension mean and variance and the mean squared norm, cached in ``stats.json``."""
        key = hashlib.sha256("".join(s["sha256"] for s in self.shards).encode()).hexdigest()
        cache = self.path / STATS_FILE
        if cache.is_file() and not refresh:
            obj = read_json(cache)
            if obj.get("key") == key:
                return StoreStats.from_dict(obj)
        total, sq = np.zeros(self.d), np.zeros(self.d)
        n = 0
        for part in self.vectors.parts:
            for s in range(0, len(part), chunk):
                block = np.asarray(part[s : s + chunk], dtype=np.float64)  # (b, d)
                total += block.sum(0)
                sq += np.square(block).sum(0)
                n += len(block)
        if n == 0:
            raise UserError(f"{self.path} holds no vectors")
        mean = total / n
        var = np.maximum(sq / n - mean**2, 0.0)
        stats = StoreStats(n, mean, var, float(sq.sum() / n))
        with contextlib.suppress(OSError, UserError):  # a read-only store still gets its statistics
            atomic_write_json(cache, {"key": key, **stats.to_dict()})
        return stats

    def info(self) -> dict[str, Any]:
        """A short summary for ``store info``."""
        m = self.manifest
        keys: tuple[str, ...] = ("status", "layer", "d", "dtype", "model", "sampling", "per_image", "views", "seed")
        keys += ("image_root", "order")
        out = {k: m.get(k) for k in keys if k in m}
        out.update(vectors=len(self), shards=len(self.shards), num_images=m.get("num_images"))
        files = [self.path / s["file"] for s in self.shards]
        out["bytes"] = sum(f.stat().st_size for f in files if f.exists())
        if "skipped" in m:
            out["skipped"] = m["skipped"].get("by_reason", {})
        out.update(created=m.get("created"), updated=m.get("updated"))
        return out


def new_manifest(layer: str | None, d: int, dtype: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The common head of every manifest."""
    t = now_iso()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "status": "in_progress",
        "layer": layer,
        "d": d,
        "dtype": dtype,
        "count": 0,
        **extra,
        "shards": [],
        "created": t,
        "updated": t,
        "package_version": package_version(),
    }


def store_fingerprint(manifest: dict[str, Any]) -> str:
    """See :attr:`ActivationStore.fingerprint`: layer, d, dtype, each shard's rows and sha256s, the image list's."""
    shards = [[s.get("count"), s.get("sha256"), s.get("provenance_sha256")] for s in manifest.get("shards", [])]
    head = [manifest.get(k) for k in ("layer", "d", "dtype", "images_sha256")]
    return hashlib.sha256(json.dumps([head, shards]).encode()).hexdigest()


def _provenance(n: int, image_ids, positions, views) -> np.ndarray:
    """(n, 4) int32 provenance from optional columns; -1 where unknown (view 0)."""
    prov = np.full((n, 4), -1, dtype=np.int32)
    prov[:, 1] = 0
    for cols, value in ((slice(0, 1), image_ids), (slice(1, 2), views), (slice(2, 4), positions)):
        if value is not None:
            arr = np.asarray(value).reshape(n, -1)
            if arr.shape[1] != cols.stop - cols.start:
                raise UserError(f"provenance column has shape {arr.shape}, expected ({n}, {cols.stop - cols.start})")
            prov[:, cols] = arr
    return prov
