"""The layers of docs/architecture.md hold in the code: no import runs upward or
in a circle, and no module or function outgrows its one job.

The rule is read from the table in docs/architecture.md, so the page and the
test cannot disagree.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PAGE = ROOT / "docs" / "architecture.md"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Layer:
    name: str
    prefixes: tuple[str, ...]
    may_import: frozenset[str]


def read_layers(text: str) -> list[Layer]:
    rows = re.findall(r"^\| ([a-z-]+) \| ((?:`[\w.]+` ?)+) \| ([a-z -]*)\|$", text, re.MULTILINE)
    return [
        Layer(name, tuple(re.findall(r"`([\w.]+)`", modules)), frozenset(allowed.split()))
        for name, modules, allowed in rows
    ]


LAYERS = read_layers(PAGE.read_text(encoding="utf-8"))


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> Layer | None:
    best: tuple[int, Layer] | None = None
    for layer in LAYERS:
        for prefix in layer.prefixes:
            inside = module == prefix or (
                prefix != "trunkkey" and module.startswith(prefix + ".")
            )
            if inside and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return None if best is None else best[1]


MODULES = {module_name(p): p for p in sorted((SRC / "trunkkey").rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    target: str
    line: int
    type_only: bool


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(module: str) -> Iterator[Import]:
    """Every trunkkey module that ``module`` imports, resolved to a module name."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # ``from . import cbor`` imports the module trunkkey.cbor, not the package.
            targets = [
                f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source
                for a in node.names
            ]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target == "trunkkey" or target.startswith("trunkkey."):
                yield Import(target, node.lineno, node.lineno in type_only)


def test_the_page_names_every_layer_it_allows() -> None:
    names = {layer.name for layer in LAYERS}
    assert len(LAYERS) >= 8, "the layer table of docs/architecture.md was not read"
    for layer in LAYERS:
        assert layer.may_import <= names, f"{layer.name} allows an unknown layer"
        assert layer.name not in layer.may_import


def test_every_library_module_belongs_to_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_no_import_runs_upward() -> None:
    wrong = []
    for module in MODULES:
        mine = layer_of(module)
        assert mine is not None
        for imp in imports_of(module):
            theirs = layer_of(imp.target)
            if theirs is None:
                wrong.append(f"{module}:{imp.line} imports {imp.target}, which is in no layer")
            elif theirs is not mine and theirs.name not in mine.may_import:
                wrong.append(
                    f"{module}:{imp.line} ({mine.name}) imports {imp.target} ({theirs.name})"
                )
    assert wrong == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_imports_run_in_a_circle() -> None:
    graph = {
        m: {i.target for i in imports_of(m) if not i.type_only and i.target != m}
        for m in MODULES
    }
    # A package's __init__ runs when any of its modules is imported; that is
    # Python's order, not a dependency of the module on its siblings.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_an_upward_import_is_reported() -> None:
    core = layer_of("trunkkey.verifier")
    car = layer_of("trunkkey.vehicle.unit")
    assert core is not None
    assert car is not None
    assert car.name not in core.may_import
    assert layer_of("trunkkey.ledger.base") is not layer_of("trunkkey.ledger.sqlite")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_functions_stay_short(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({(node.end_lineno or node.lineno) - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
