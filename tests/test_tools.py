"""The development tools are one package, `tools/`, imported by name from the repository root.

Before, benchmarks, fuzzers, harnesses and scripts found each other by editing
``sys.path`` or loading files by path, so a moved file broke a command only when
someone ran it. These tests keep that glue from coming back and keep every
``python -m tools...`` command that the README and docs name pointing at a module.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Directories that hold no source of ours: virtual environments, build output, caches.
NOT_OURS = {"build", "dist", "node_modules", "__pycache__"}


def _python_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts[:-1]
        if any(p.startswith(".") or p in NOT_OURS or p.endswith(".egg-info") for p in parts):
            continue
        yield path


def _path_glue(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr == "spec_from_file_location":
            yield node.lineno, "spec_from_file_location"
        elif (node.attr == "insert" and isinstance(node.value, ast.Attribute)
              and node.value.attr == "path" and isinstance(node.value.value, ast.Name)
              and node.value.value.id == "sys"):
            yield node.lineno, "sys.path.insert"


def test_no_python_file_edits_sys_path_or_loads_a_file_by_path() -> None:
    files = list(_python_files())
    assert any(p.parts[-2:] == ("bench", "run.py") for p in files)  # the walk sees tools/
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in files
        for line, what in _path_glue(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == [], "import by package name (tools.*, examples.*) instead:\n" + "\n".join(found)


def test_the_glue_detector_sees_both_forms() -> None:
    source = "import sys, importlib.util\nsys.path.insert(0, 'x')\n" \
             "importlib.util.spec_from_file_location('m', 'm.py')\n"
    assert [what for _, what in _path_glue(ast.parse(source))] == [
        "sys.path.insert", "spec_from_file_location"]


def test_every_tools_command_the_docs_name_is_a_module() -> None:
    named: set[str] = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / ".ci" / "run"]:
        named |= set(re.findall(r"python -m (tools(?:\.\w+)+)", doc.read_text(encoding="utf-8")))
    assert {"tools.bench.run", "tools.fuzz.run", "tools.gen.api_docs"} <= named
    missing = sorted(name for name in named if importlib.util.find_spec(name) is None)
    assert missing == []
