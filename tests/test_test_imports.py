"""Tests reach the package through its public names and share data through ``factories``: no test module imports
another test module or a private (underscore) name of the package, so a refactor of internals breaks no test that
checks behaviour."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def bad_imports(source: str) -> list[str]:
    """The imports in ``source`` of a test module or of an underscore name from the package."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0].startswith("test_")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top.startswith("test_") or top in ("tests", "conftest"):
                out.append(node.module)
            elif top == "inception_sae":
                out += [f"{node.module}.{a.name}" for a in node.names if private(a.name)]
                out += [node.module] if any(private(p) for p in node.module.split(".")[1:]) else []
    return out


def test_the_check_finds_planted_bad_imports():
    planted = (
        "import test_x\nfrom test_quality_eval import save_sae\nfrom inception_sae.sae.measure import _SpliceAcc\n"
        "def f():\n    from inception_sae.sae._private import x\n"
        "from inception_sae.sae.measure import splice_back\nfrom factories.quality import labelled_store\n"
        "from inception_sae import __version__\n"  # a dunder is public
    )
    assert bad_imports(planted) == [
        "test_x", "test_quality_eval", "inception_sae.sae.measure._SpliceAcc", "inception_sae.sae._private"
    ]  # fmt: skip


def test_no_test_imports_a_test_module_or_a_private_name():
    found = {str(p.relative_to(TESTS)): bad for p in sorted(TESTS.rglob("*.py")) if (bad := bad_imports(p.read_text()))}
    assert found == {}
