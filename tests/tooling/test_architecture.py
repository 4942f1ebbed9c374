"""The layers hold: only ``gemma_panel/ui`` imports Panel and its family, nothing below the
command line imports it, and no module or function grows past what one can read.

Imports are read with ``ast`` (``import x``, ``from x import y``, relative imports, and
imports inside functions alike), so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gemma_panel"
GUI_LIBRARIES = {"panel", "param", "bokeh", "holoviews"}
CLI = "gemma_panel.cli"

# Programs, not library modules: nothing imports them, and each hands its argv to the CLI.
ENTRY_POINTS = {
    "gemma_panel/__main__.py",  # python -m gemma_panel ...
    "gemma_panel/ui/__main__.py",  # python -m gemma_panel.ui: another name for `dashboard`
}

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Tables, not logic, may run longer: an argparse option table (an add_*_command(s) function
# of gemma_panel/cli) or a schema field table (the recipe's sections). Each entry names the
# module, or module::function, and says what table it is. Empty today: every table fits.
TABLES: dict[str, str] = {}

# Modules or functions known to be too long and being split (none left: keep it empty).
PENDING: set[str] = set()


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in ``path``; ``from x import y`` gives
    both ``x`` and ``x.y`` (``y`` may be a submodule: ``from gemma_panel import cli``)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y, from .. import y
                above = package[:len(package) - (node.level - 1)]
                base = ".".join(above + ([node.module] if node.module else []))
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def test_imports_resolve_relative_and_from_forms(tmp_path, monkeypatch):
    """The reader itself: every way of naming gemma_panel.cli or panel is seen."""
    fake = tmp_path / "gemma_panel" / "runs" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from .. import cli\nfrom ..cli.format import count\n"
                    "def f():\n    from panel import widgets\n    import bokeh.models\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "gemma_panel")
    names = {name for _, name in imports(fake)}
    assert {"gemma_panel.cli", "gemma_panel.cli.format", "panel", "bokeh.models"} <= names


def test_only_the_ui_imports_panel_param_bokeh_or_holoviews():
    found = [f"{relative(p)}:{line} imports {name}" for p in modules()
             if not relative(p).startswith("gemma_panel/ui/")
             for line, name in imports(p) if name.split(".")[0] in GUI_LIBRARIES]
    assert not found, ("only gemma_panel/ui may import Panel and its family; move this "
                       "into the ui package or take the value from it:\n" + "\n".join(found))


def test_nothing_outside_the_cli_imports_it():
    found = [f"{relative(p)}:{line} imports {name}" for p in modules()
             if not relative(p).startswith("gemma_panel/cli/") and
             relative(p) not in ENTRY_POINTS
             for line, name in imports(p) if name == CLI or name.startswith(CLI + ".")]
    assert not found, ("the core and the ui never import the command line; move what they "
                       "need below it:\n" + "\n".join(found))


def too_long() -> set[str]:
    """Every module over MAX_MODULE_LINES and function over MAX_FUNCTION_LINES, by name."""
    found = set()
    for path in modules():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            found.add(relative(path))
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                found.add(f"{relative(path)}::{node.name}")
    return found


def test_no_module_or_function_is_too_long_to_read():
    new = sorted(too_long() - TABLES.keys() - PENDING)
    assert not new, (f"over {MAX_MODULE_LINES} lines (module) or {MAX_FUNCTION_LINES} lines "
                     "(function); split it:\n" + "\n".join(new))


@pytest.mark.parametrize("allowance", ["TABLES", "PENDING"])
def test_every_allowance_is_still_needed(allowance):
    stale = sorted(set(globals()[allowance]) - too_long())
    assert not stale, f"short enough now; remove from {allowance}:\n" + "\n".join(stale)
