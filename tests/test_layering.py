"""The package's import structure: no import cycles, and no module importing from a layer above its own.

Layers, top to bottom (a module may import from its own layer and any below it):
the command line and ``run`` pipeline; the stages built on an SAE (analysis, featvis,
circuits, site, compare, explain); the SAE; activation data; the model; and at the base
the modules everything may use (errors, atomic file I/O, checkpoints, downloads, typed settings, number display).
Every import counts, also those inside functions: a lazy import still ties two modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = "inception_sae"
SRC = Path(__file__).resolve().parents[1] / "src" / PKG
#: Top to bottom. ``inception_sae`` itself is the public API, which re-exports from below.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"", "__main__", "cli", "commands", "pipeline"}),
    frozenset({"analysis", "featvis", "circuits", "site", "compare", "explain"}),
    frozenset({"sae"}),
    frozenset({"data"}),
    frozenset({"models"}),
    frozenset({"fsio", "errors", "checkpoint", "download", "settings", "display", "_version"}),
)


def module_sources(root: Path = SRC) -> dict[str, str]:
    """Dotted module name -> source of every module of the package (``pkg.__init__`` is named ``pkg``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PKG, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path.read_text(encoding="utf-8")
    return out


def imports(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (relative imports resolved)."""
    graph: dict[str, set[str]] = {}
    for name, text in sources.items():
        is_pkg = any(m.startswith(name + ".") for m in sources) or name == PKG
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                anchor = base[: len(base) - node.level + 1] if node.level else []
                mod = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in sources else mod for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in sources:  # ``import inception_sae.x.y`` names a module; keep the longest known
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def layer(module: str) -> int:
    """Height of a module's layer (0 = base)."""
    top = module.split(".")[1] if "." in module else ""
    for i, members in enumerate(LAYERS):
        if top in members:
            return len(LAYERS) - 1 - i
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} imports {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer_and_none_imports_upward():
    graph = imports(module_sources())
    assert len(graph) > 100 and sum(map(len, graph.values())) > 200  # the walk sees the real package
    assert upward_imports(graph) == []


def test_no_import_cycles():
    assert cycles(imports(module_sources())) == []


def test_the_checks_catch_a_planted_upward_import_and_cycle():
    sources = module_sources()
    planted = dict(sources)
    planted[f"{PKG}.data.store"] += "\n\ndef _f():\n    from ..commands.common import console\n"
    assert upward_imports(imports(planted)) == [f"{PKG}.data.store imports {PKG}.commands.common"]
    planted = dict(sources)
    planted[f"{PKG}.models.layers"] += "\nfrom .weights import load_model\n"
    assert [f"{PKG}.models.layers", f"{PKG}.models.weights"] in [
        [m for m in c if m in (f"{PKG}.models.layers", f"{PKG}.models.weights")] for c in cycles(imports(planted))
    ]
