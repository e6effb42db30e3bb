"""Class labels of inception5h's 1008 outputs (index 0 dummy, 1001-1007 unlabelled).

Read from a TSV ``index<TAB>wnid<TAB>name`` for indices 1..1000: an explicit path,
``$INCEPTION_SAE_LABELS``, or the copy shipped with the package
(``inception5h_classes.tsv``: the model's output order, class names are facts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingInputError, UserError
from ..models.layers import NUM_CLASSES

LABELS_ENV = "INCEPTION_SAE_LABELS"
#: The shipped class names of the model's outputs 1..1000 (index, wnid, name).
PACKAGED_LABELS = Path(__file__).with_name("inception5h_classes.tsv")


@dataclass(frozen=True)
class Labels:
    """Names and wnids for the 1008 outputs; unknown entries get placeholder names."""

    names: tuple[str, ...]  #: 1008 names; "dummy" at 0, "unlabelled_<i>" for 1001..1007
    wnids: tuple[str | None, ...]  #: 1008 wnids (None where unknown)
    source: str  #: where they came from ("none" when unavailable)

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def __len__(self) -> int:
        return len(self.names)

    def index_of_wnid(self, wnid: str) -> int | None:
        """Output index of an ImageNet wnid, or None."""
        return self._wnid_index.get(wnid)

    @property
    def _wnid_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.wnids) if w}

    @property
    def available(self) -> bool:
        return self.source != "none"


def placeholder_labels() -> Labels:
    """Numbered names, used when no label file can be found."""
    names = ["dummy"] + [f"class_{i}" for i in range(1, NUM_CLASSES)]
    return Labels(tuple(names), (None,) * NUM_CLASSES, "none")


def parse_labels(path: str | Path) -> Labels:
    """Parse ``index wnid name`` rows (tab-separated; a header line is allowed)."""
    names = ["dummy"] + [f"unlabelled_{i}" for i in range(1, NUM_CLASSES)]
    wnids: list[str | None] = [None] * NUM_CLASSES
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.rstrip("\n").split("\t")
        if not line.strip() or not parts[0].strip().isdigit():
            continue  # header or blank
        if len(parts) < 3:
            raise UserError(f"{path}:{lineno}: expected 'index<TAB>wnid<TAB>name', got {line!r}")
        idx = int(parts[0])
        if not 0 < idx < NUM_CLASSES:
            raise UserError(f"{path}:{lineno}: class index {idx} outside 1..{NUM_CLASSES - 1}")
        wnids[idx], names[idx] = parts[1].strip(), parts[2].strip()
    return Labels(tuple(names), tuple(wnids), str(path))


def load_labels(path: str | Path | None = None) -> Labels:
    """Labels from ``path``, else ``$INCEPTION_SAE_LABELS``, else the class names shipped with the package.

    An explicit ``path`` (or environment variable) that is missing is an error; numbered
    placeholders are returned only if the packaged file itself is gone.
    """
    if path is None:
        path = os.environ.get(LABELS_ENV) or None
    if path is not None:
        if not Path(path).is_file():
            raise MissingInputError(f"labels file {path} does not exist")
        return parse_labels(path)
    if PACKAGED_LABELS.is_file():
        shipped = parse_labels(PACKAGED_LABELS)
        return Labels(shipped.names, shipped.wnids, "packaged")
    return placeholder_labels()
