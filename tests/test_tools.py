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


# -- the performance plots read correctly (drawn on a recording stand-in for pyplot) ----------


def _recording_pyplot(panels: int) -> tuple[object, list[object]]:
    from unittest.mock import MagicMock

    plt = MagicMock()
    axes = [MagicMock() for _ in range(panels)]
    plt.subplots.return_value = (MagicMock(), axes if panels > 1 else axes[0])
    return plt, axes


def _bench_results() -> dict[str, object]:
    import json

    root = Path(__file__).resolve().parents[1]
    data: dict[str, object] = json.loads(
        (root / "tools" / "bench" / "results" / "latest.json").read_text(encoding="utf-8"))
    return data


def test_fleet_plot_draws_its_bars_on_a_linear_axis_from_zero(tmp_path: Path) -> None:
    from tools.gen import plots

    plt, (lines, bars) = _recording_pyplot(2)
    plots._fleet(plt, _bench_results(), tmp_path)
    assert bars.bar.call_count == 2
    assert ("log",) not in [c.args for c in bars.set_yscale.call_args_list]
    assert bars.set_ylim.call_args.args[0] == 0
    assert ("log",) not in [c.args for c in lines.set_yscale.call_args_list]


def test_rates_plot_has_a_legend_for_every_colour_it_uses(tmp_path: Path) -> None:
    from tools.gen import plots

    plt, (ax,) = _recording_pyplot(1)
    plots._rates(plt, _bench_results(), tmp_path)
    used = set(ax.barh.call_args.kwargs["color"])
    labelled = {c.kwargs["color"] for c in plt.Rectangle.call_args_list}
    assert used == labelled
    assert len(used) >= 4
    assert ax.legend.call_args.kwargs["handles"]
    assert all(c.kwargs["label"] == plots.RATE_COLOURS[c.kwargs["color"]]
               for c in plt.Rectangle.call_args_list)
