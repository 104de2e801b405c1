"""The library ships no simulation and no attacker tool, and its layers never reach up for one.

Simulated hardware and worlds live in ``trunkkey.testing``; the scenes and the
attackers' signing tool in ``examples/``. These tests read the source, so a
helper that creeps back into the library fails here before it ships.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import trunkkey
import trunkkey.vehicle

SRC = Path(trunkkey.__file__).resolve().parent
MODULES = sorted(SRC.rglob("*.py"))
#: Everything below trunkkey.testing in the layers: the library proper
#: (``__main__`` is the command line's entry point, above it all).
LIBRARY = [
    p for p in MODULES if p.relative_to(SRC).parts[0] not in ("testing", "cli", "__main__.py")
]


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["trunkkey", *parts])


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved."""
    package = _name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", LIBRARY, ids=_name)
def test_library_modules_import_nothing_from_testing_cli_or_examples(path: Path) -> None:
    upward = {
        name for name in _imports(path)
        if name.split(".")[0] in ("examples", "world", "tests", "support")
        or name.startswith(("trunkkey.testing", "trunkkey.cli"))
    }
    assert not upward, f"{_name(path)} reaches up into {sorted(upward)}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_module_defines_an_unchecked_signer(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {
        node.name for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    } | {
        target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name)
    }
    assert not {n for n in names if "unchecked" in n.lower()}, _name(path)


def _signs_a_grant(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) == "sign1"
        and any("GRANT" in ast.unparse(arg) for arg in [*node.args, *node.keywords])
    )


def test_grants_are_signed_only_where_the_narrowing_check_lives() -> None:
    signing = sorted(
        _name(path) for path in MODULES
        if any(_signs_a_grant(node) for node in ast.walk(ast.parse(path.read_text("utf-8"))))
    )
    assert signing == ["trunkkey.consent.grant"]


def test_simulated_hardware_lives_in_trunkkey_testing_only() -> None:
    defined = {
        _name(path) for path in MODULES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name.startswith("Simulated")
    }
    assert defined == {"trunkkey.testing.vehicle"}
    assert not hasattr(trunkkey.vehicle, "SimulatedBody")
    assert not hasattr(trunkkey.vehicle, "SimulatedGps")


def test_the_boundary_check_resolves_relative_imports() -> None:
    # Were relative imports not resolved, every test above would pass vacuously.
    assert "trunkkey.vehicle.unit" in _imports(SRC / "testing" / "vehicle.py")
    assert "trunkkey.consent.grant.sign_delegation" in _imports(SRC / "cli" / "grants.py")
    assert "trunkkey.errors" in _imports(SRC / "vehicle" / "__init__.py") or any(
        name.startswith("trunkkey.vehicle.") for name in _imports(SRC / "vehicle" / "__init__.py")
    )
