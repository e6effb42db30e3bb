"""Write the WordNet 3.0 hypernym hierarchy of the model's 1,000 classes as package data.

Source: ``data.noun`` of WordNet 3.0, as Debian's ``wordnet-base`` package ships it
(``apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn`` gives ``wn/usr/share/wordnet/data.noun``;
on a machine with the package installed it is ``/usr/share/wordnet/data.noun``). ImageNet's wnids are WordNet 3.0
noun offsets (``n`` + the 8-digit offset), so the file is read by offset.

Output, beside the class names (``src/inception_sae/data/wordnet.tsv``): one row per synset that is a class or an
ancestor of one, ``wnid  name  lemmas  hypernyms`` (hypernyms: the synset's ``@`` and ``@i`` pointers, in WordNet's
order, comma-separated; the first is the primary chain). The WordNet licence requires its notice on every copy: it
is written at the top of the file.

    python scripts/build_wordnet.py /usr/share/wordnet/data.noun
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ROOT / "src" / "inception_sae" / "data" / "inception5h_classes.tsv"
OUT = ROOT / "src" / "inception_sae" / "data" / "wordnet.tsv"
NOTICE = (
    "# WordNet 3.0 hypernyms of the inception5h classes, from Debian's wordnet-base 1:3.0-37 (data.noun).\n"
    "# WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. THIS SOFTWARE AND DATABASE IS\n"
    "# PROVIDED 'AS IS' AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED.\n"
    "# BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF\n"
    "# MERCHANTABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE OR\n"
    "# DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS.\n"
    "# Licence: https://wordnet.princeton.edu/license-and-commercial-use (permission to use, copy, modify and\n"
    "# distribute for any purpose and without fee, with this notice on all copies).\n"
    "# Written by scripts/build_wordnet.py. Columns: wnid, name, lemmas ('|'-separated), hypernyms (primary first).\n"
)


def read_noun_synsets(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """wnid -> (lemmas, hypernym wnids) for every noun synset of a WordNet ``data.noun`` file."""
    out = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue  # licence header
        head = line.split(" | ")[0].split()
        offset, n_words = head[0], int(head[3], 16)
        lemmas = [head[4 + 2 * i].replace("_", " ") for i in range(n_words)]
        at = 4 + 2 * n_words
        n_ptr = int(head[at])
        hyper = []
        for j in range(n_ptr):
            sym, target, pos = head[at + 1 + 4 * j : at + 4 + 4 * j]
            if sym in ("@", "@i") and pos == "n":
                hyper.append("n" + target)
        out["n" + offset] = ([lemma.split("(")[0] for lemma in lemmas], hyper)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_noun", type=Path, help="WordNet 3.0 data.noun")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    synsets = read_noun_synsets(args.data_noun)
    rows = [line.split("\t") for line in CLASSES.read_text().splitlines()[1:] if line.strip()]
    missing = [w for _, w, _ in rows if w not in synsets]
    if missing:
        raise SystemExit(f"{len(missing)} class wnids are not WordNet 3.0 nouns: {missing[:5]}")
    keep, todo = set(), [w for _, w, _ in rows]
    while todo:
        w = todo.pop()
        if w not in keep:
            keep.add(w)
            todo += synsets[w][1]
    lines = [NOTICE, "wnid\tname\tlemmas\thypernyms\n"]
    for w in sorted(keep):
        lemmas, hyper = synsets[w]
        lines.append(f"{w}\t{lemmas[0]}\t{'|'.join(lemmas)}\t{','.join(hyper)}\n")
    args.out.write_text("".join(lines), encoding="utf-8")
    print(f"{args.out}: {len(keep)} synsets ({len(rows)} classes and their ancestors)")


if __name__ == "__main__":
    main()
