"""The docs quote only flags the commands have: every ``--flag`` written next to an ``inception-sae <command>`` in
README.md and docs/*.md (in the same code span, the same shell command of a code block, or the same table row as
the command) is an option of that command, as the command line itself declares it."""

from __future__ import annotations

import re
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9.-]*")
#: ``inception-sae train``, ``python -m inception_sae train`` (``torchrun ... -m inception_sae train``).
COMMAND = re.compile(r"(?:inception-sae|-m inception_sae)\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?")
#: Where one shell command ends and the next begins, inside a code block line.
SEPARATOR = re.compile(r"\s(?:&&|\|\||;|\|)\s")


def command_flags() -> dict[str, set[str]]:
    """Command path ("train", "site build") -> every option spelling it accepts, from the command line itself."""
    from inception_sae.cli import app

    out: dict[str, set[str]] = {}

    def walk(cmd, path: str) -> None:
        out[path] = {"--help"} | {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return out


def quoted(text: str) -> list[tuple[str, str, str]]:
    """(command words, flag, the text it was read from) for each flag quoted next to ``inception-sae <command>``:
    in a shell command of a fenced code block (continuation lines included), in an inline code span, or anywhere
    in a table row whose first cell names the command. An inline span that starts with a word and a flag
    (`` `eval --report` ``) is read as that command; words that are not commands are skipped later."""
    out: list[tuple[str, str, str]] = []

    def take(snippet: str) -> None:
        for part in re.split(r"(?=(?:inception-sae|-m inception_sae)\s)", snippet):
            m = COMMAND.match(part)
            if m:
                out.extend(
                    (" ".join(w for w in m.groups() if w), f.rstrip(".-"), part.strip()) for f in FLAG.findall(part)
                )

    lines, i, prose = text.splitlines(), 0, []
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            i += 1
            command = ""
            while i < len(lines) and not lines[i].lstrip().startswith("```"):
                body = re.sub(r"\s#\s.*$", "", lines[i])  # a shell comment
                if command and (command.endswith("\\") or body[:1].isspace()):
                    command = command.rstrip("\\") + " " + body.strip()
                else:
                    for piece in SEPARATOR.split(command):
                        take(piece)
                    command = body
                i += 1
            for piece in SEPARATOR.split(command):
                take(piece)
        elif line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)
            if len(cells) > 2 and COMMAND.search(cells[1]):
                take(cells[1].strip(" `") + " " + " ".join(cells[2:]))
            else:
                prose.append(line)
        else:
            prose.append(line)
        i += 1
    for span in re.findall(r"`([^`]+)`", "\n".join(prose)):
        span = " ".join(span.split())
        take(span if COMMAND.search(span) or not re.match(r"[a-z]+ ([a-z]+ )?--", span) else "inception-sae " + span)
    return out


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def wrong_flags(text: str, flags: dict[str, set[str]]) -> list[str]:
    """ "command --flag" for each flag quoted next to a command that lacks it (words that are no command: skipped)."""
    bad = []
    for words, flag, _ in quoted(text):
        cmd = words if words in flags else words.split()[0]
        if cmd not in flags:
            continue  # a placeholder such as `inception-sae <command> --help`
        if flag not in flags[cmd] and not any(flag in flags[f"{cmd} {s}"] for s in subcommands(flags, cmd)):
            bad.append(f"{cmd} {flag}")
    return bad


def subcommands(flags: dict[str, set[str]], cmd: str) -> list[str]:
    return [k.split()[1] for k in flags if k.startswith(cmd + " ")]


def test_the_reader_attributes_flags_to_their_command():
    text = (
        "Run `inception-sae train --store S --k 32` then `eval --report r.json` (`ruff format --check`).\n\n"
        "```\ninception-sae analyze --sae A --images I \\\n    --n-top 20 --top 5   # --null-samples: a comment\n"
        "inception-sae site serve SITE [--live --sae D] && ls --color\n"
        "torchrun --nproc-per-node 8 -m inception_sae harvest --views 4\n```\n\n"
        "| command | what |\n| --- | --- |\n"
        "| `inception-sae harvest --images DIR` | one pass (`--per-image`, `--bogus`) |\n"
    )
    got = [(c, f) for c, f, _ in quoted(text)]
    assert got == [
        ("analyze", "--sae"), ("analyze", "--images"), ("analyze", "--n-top"), ("analyze", "--top"),
        ("site serve", "--live"), ("site serve", "--sae"), ("harvest", "--views"),
        ("harvest", "--images"), ("harvest", "--per-image"), ("harvest", "--bogus"),
        ("train", "--store"), ("train", "--k"), ("eval", "--report"), ("ruff format", "--check"),
    ]  # fmt: skip
    assert wrong_flags(text, command_flags()) == ["analyze --top", "harvest --bogus"]


def test_every_flag_the_docs_quote_exists_for_its_command():
    flags = command_flags()
    found = {p.name: bad for p in doc_files() if (bad := wrong_flags(p.read_text(encoding="utf-8"), flags))}
    assert found == {}
