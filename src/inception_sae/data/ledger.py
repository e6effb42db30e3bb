"""Per-process harvest progress (``parts/rank<r>.json``) and the background shard writer.

Each harvest process owns a *ledger*: the shards it has made durable, how far
it got through its share of the image list (``next``: images before it are
done, each in exactly one shard or counted as skipped), and its skip counts.
A shard is first written to a temporary file, fsynced and renamed; only then is
the ledger rewritten (atomically) to list it. A kill at any moment therefore
leaves either the old ledger (the new shard file is an orphan, deleted on
restart) or the new one, never a shard half-listed.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..fsio import atomic_write_json, read_json, remove_orphans
from .store import now_iso, write_shard


@dataclass
class Ledger:
    """What one rank has durably harvested."""

    rank: int  #: process rank
    recipe_key: str  #: sha256 of the recipe it harvests (refuses to mix recipes)
    shards: list[dict[str, Any]] = field(default_factory=list)  #: manifest entries, in order
    next: int = 0  #: position in this rank's image list up to which everything is done
    skipped: dict[str, Any] = field(default_factory=lambda: {"total": 0, "by_reason": {}, "examples": {}})
    done: bool = False  #: True once the rank's whole list is harvested

    @staticmethod
    def path(root: Path, rank: int) -> Path:
        return root / "parts" / f"rank{rank}.json"

    @classmethod
    def load_or_new(cls, root: Path, rank: int, recipe_key: str) -> Ledger:
        """This rank's ledger, or a fresh one; refuses a ledger from another recipe."""
        p = cls.path(root, rank)
        if not p.is_file():
            return cls(rank, recipe_key)
        obj = read_json(p)
        if obj.get("recipe_key") != recipe_key:
            raise UserError(f"{p} belongs to a different harvest; use a new --out folder")
        return cls(rank, recipe_key, obj["shards"], int(obj["next"]), obj["skipped"], bool(obj["done"]))

    def save(self, root: Path) -> None:
        p = self.path(root, self.rank)
        p.parent.mkdir(parents=True, exist_ok=True)
        obj = {
            "rank": self.rank,
            "recipe_key": self.recipe_key,
            "next": self.next,
            "done": self.done,
            "count": self.count,
            "skipped": self.skipped,
            "shards": self.shards,
            "updated": now_iso(),
        }
        atomic_write_json(p, obj)

    @property
    def count(self) -> int:
        return sum(s["count"] for s in self.shards)

    def clean_orphans(self, root: Path) -> list[str]:
        """Delete this rank's temporary files and shards that the ledger does not list."""
        keep = {Path(s[k]).name for s in self.shards for k in ("file", "provenance")}
        removed = remove_orphans(root / "shards", f"rank{self.rank}-", keep)
        removed += remove_orphans(root / "parts", f"rank{self.rank}.json.", set())  # its .tmp files
        return removed

    def add_skips(self, reasons: Counter, examples: dict[str, list[str]]) -> None:
        s = self.skipped
        for reason, n in reasons.items():
            s["by_reason"][reason] = s["by_reason"].get(reason, 0) + n
            ex = s["examples"].setdefault(reason, [])
            ex.extend(examples.get(reason, [])[: max(0, 10 - len(ex))])
        s["total"] = sum(s["by_reason"].values())


def merge_skips(ledgers: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the skip logs of several ledgers."""
    by_reason: Counter = Counter()
    examples: dict[str, list[str]] = {}
    for led in ledgers:
        by_reason.update(led["skipped"]["by_reason"])
        for r, ex in led["skipped"]["examples"].items():
            examples.setdefault(r, []).extend(ex[: max(0, 10 - len(examples.get(r, [])))])
    return {"total": sum(by_reason.values()), "by_reason": dict(by_reason), "examples": examples}


@dataclass
class Pending:
    """Vectors and bookkeeping of complete images not yet written."""

    vectors: list[np.ndarray] = field(default_factory=list)  # each (n, d)
    prov: list[np.ndarray] = field(default_factory=list)  # each (n, 4)
    skips: Counter = field(default_factory=Counter)
    skip_examples: dict[str, list[str]] = field(default_factory=dict)
    next: int = 0  # ledger position after these images
    count: int = 0


class ShardWriter:
    """Writes shards and ledgers on a background thread, in submission order.

    The queue is short (``depth``), so a slow disk slows the harvest instead of
    filling memory. An error on the thread (e.g. a full disk) is raised in the
    caller at the next :meth:`submit` or at :meth:`close`.
    """

    def __init__(self, root: Path, ledger: Ledger, after_commit: Callable[[], object] | None = None, depth: int = 2):
        self.root, self.ledger, self.after_commit = root, ledger, after_commit
        self.queue: queue.Queue[Pending | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="shard-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._commit(job)
                except BaseException as e:  # handed to the main thread
                    self.error = e

    def _commit(self, job: Pending) -> None:
        led = self.ledger
        if job.count:
            entry = write_shard(
                self.root, led.rank, len(led.shards), np.concatenate(job.vectors), np.concatenate(job.prov)
            )
            led.shards.append(entry)
        led.next = job.next
        led.add_skips(job.skips, job.skip_examples)
        led.save(self.root)  # the commit point
        if self.after_commit is not None:
            self.after_commit()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, job: Pending) -> None:
        self._raise()
        self.queue.put(job)

    def close(self) -> None:
        """Wait for every submitted job; raise the thread's error, if any."""
        self.queue.put(None)
        self.thread.join()
        self._raise()
