"""The documentation keeps up with the code.

Every error a user can cause (each subclass of ``gemma_panel.errors.UserError``, found by
reading every module with ``ast``) and every kind of problem the data check reports (the
codes of ``PROBLEM_TITLES``) has a troubleshooting section whose anchor exists, and the
troubleshooting index links each error class to its section. Nothing is imported to find
them, so a new error class or report kind without its section fails here in milliseconds.

Where the docs extra is installed (the tests session installs it), the site is also built as
`nox -s docs` builds it, with warnings as errors: a broken link or anchor, a page missing from
the nav, a docstring mkdocstrings cannot read. That takes a few seconds.

The README stays short and inside the repository, with the two quickstart commands as Get
started gives them; every row of docs/benchmarks.md names the command that measured it.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gemma_panel"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting"
BASE = "UserError"

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
EXPLICIT_ID = re.compile(r"\{\s*#([\w-]+)[^}]*\}\s*$")
LINK = re.compile(r"\[([^\]]*)\]\(([^)#\s]*)#([\w-]+)\)")


def user_error_classes() -> set[str]:
    """Names of the classes under gemma_panel/ that derive from UserError, transitively."""
    bases: dict[str, set[str]] = {}
    for module in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {b.id if isinstance(b, ast.Name) else b.attr
                         for b in node.bases if isinstance(b, ast.Name | ast.Attribute)}
                bases.setdefault(node.name, set()).update(names)
    found: set[str] = set()
    grew = True
    while grew:
        new = {name for name, parents in bases.items()
               if name not in found and parents & (found | {BASE})}
        found |= new
        grew = bool(new)
    return found


def report_kinds() -> dict[str, str]:
    """The data check's problem codes and titles (PROBLEM_TITLES in data/report.py)."""
    tree = ast.parse((PACKAGE / "data" / "report.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id == "PROBLEM_TITLES":
            return ast.literal_eval(node.value)
    raise AssertionError("PROBLEM_TITLES not found in gemma_panel/data/report.py")


def slug(text: str) -> str:
    """Python-Markdown's toc slugify: the id a heading without an explicit one gets."""
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def sections(page: Path) -> dict[str, str]:
    """anchor -> heading text, for every heading of a Markdown page (code blocks skipped)."""
    found, fenced = {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            text = match.group(2)
            explicit = EXPLICIT_ID.search(text)
            if explicit:
                text = text[:explicit.start()].strip()
            found[explicit.group(1) if explicit else slug(text)] = text
    return found


def all_sections() -> dict[str, dict[str, str]]:
    return {page.name: sections(page) for page in sorted(TROUBLESHOOTING.glob("*.md"))}


def test_the_walk_finds_the_error_classes():
    """A guard on the walk itself: it must see the classes we know are there."""
    classes = user_error_classes()
    assert {"RecipeError", "DatasetError", "VerificationError", "StaleAttempt",
            "DeviceProbeError"} <= classes
    assert BASE not in classes and "KerasInternalsChanged" not in classes  # not a UserError


def test_every_user_error_class_has_a_troubleshooting_section():
    anchors = {anchor: page for page, found in all_sections().items() for anchor in found}
    missing = sorted(c for c in user_error_classes() if c.lower() not in anchors)
    assert not missing, (
        f"no troubleshooting section for {missing}: add a heading with "
        f"{{#{missing[0].lower()}}} to a page of docs/troubleshooting/, starting from the "
        "message the error prints, and link it from docs/troubleshooting/index.md")


def test_the_index_links_every_error_class_to_its_section():
    pages = all_sections()
    links = {anchor: (target, text) for text, target, anchor in
             LINK.findall((TROUBLESHOOTING / "index.md").read_text(encoding="utf-8"))}
    for name in sorted(user_error_classes()):
        anchor = name.lower()
        assert anchor in links, f"docs/troubleshooting/index.md does not link {name} (#{anchor})"
        target = links[anchor][0] or "index.md"
        assert target in pages and anchor in pages[target], (
            f"docs/troubleshooting/index.md links {name} to {target}#{anchor}, "
            "which is no section")


def test_every_report_kind_has_a_section_that_starts_from_its_printed_line():
    data = all_sections()["data.md"]
    for code, title in report_kinds().items():
        assert code in data, (f"docs/troubleshooting/data.md has no section {{#{code}}} for "
                              f"the data check's {code!r} ({title!r})")
        # the heading is the line `data check` prints: "ERROR: <title>" or "WARNING: <title>"
        assert data[code] in (f"ERROR: {title}", f"WARNING: {title}"), (
            f"the section for {code!r} is headed {data[code]!r}; the report prints "
            f"'ERROR: {title}' or 'WARNING: {title}'")


def test_the_site_builds_strict_with_its_generated_reference(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_gen_files"):
        pytest.importorskip(
            module, reason="the docs extra is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISABLE_MKDOCS_2_WARNING": "true",
           "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    # offline: plain .html links, and the search index bundled as a script (file:// works)
    assert (site / "index.html").is_file() and (site / "search" / "search_index.js").is_file()
    assert 'href="get-started.html"' in (site / "index.html").read_text(encoding="utf-8")
    remote = re.compile(r"""<(?:script|link|img)\b[^>]*(?:src|href)="(?:https?:)?//""")
    fetching = [str(p.relative_to(site)) for p in site.rglob("*.html")
                if remote.search(p.read_text(encoding="utf-8"))]
    assert not fetching, f"pages that load a script, style or image from the web: {fetching}"
    # the reference is generated from the code, not written: the parser and the schema
    cli = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    assert "gemma-panel runs resume" in cli and "--accept-changed-data" in cli
    recipe = (site / "reference" / "recipe.html").read_text(encoding="utf-8")
    assert 'id="train-learning_rate"' in recipe and "Peak learning rate of AdamW" in recipe
    api = (site / "reference" / "api" / "config.html").read_text(encoding="utf-8")
    assert 'id="gemma_panel.config.load_recipe"' in api
    # docs/griffe_examples.py: "Example:" doctests render as code, not as nested quotes
    assert '<span class="gp">&gt;&gt;&gt; </span>' in api
    quoted = [p.name for p in (site / "reference" / "api").glob("*.html")
              if "<blockquote>" in p.read_text(encoding="utf-8")]
    assert not quoted, f"doctests rendered as quotes in {quoted}"
    # docs/gen_tutorials.py: every notebook is a page, its links rewritten to the site's
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        assert (site / "tutorials" / f"{notebook.stem}.html").is_file(), notebook.name
    tutorial = (site / "tutorials" / "instruction.html").read_text(encoding="utf-8")
    assert 'href="../troubleshooting/training.html#overfitting"' in tutorial
    assert 'href="export.html"' in tutorial and "ipynb\"" not in tutorial
    assert "recipes/instruction.yaml" in tutorial and "start_edited" in tutorial
    assert 'src="../screenshots/chat.png"' in tutorial  # a notebook's images, rewritten too


README = ROOT / "README.md"
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
OUTSIDE = re.compile(r"(?<![\w.~/-])(?:/(?:work|home|tmp|root|Users|opt|mnt)/|~/|[A-Z]:\\)")
COMMAND_PATH = re.compile(r"(?<![\w/])((?:benchmarks|tests)/[\w/.-]+?\.py)\b")


def test_the_readme_is_short_and_points_only_inside_the_repository():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 80, "the README is short: move the detail into docs/"
    for target in MD_LINK.findall(text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README.md links {target}, which is not in the repo"
    assert not OUTSIDE.findall(text), f"README.md names a path outside the repository: " \
                                      f"{OUTSIDE.findall(text)}"
    # the two quickstart commands, exactly as Get started gives them, and their nox sessions
    commands = [line for line in text.splitlines() if line.startswith("pip install nox && ")]
    assert len(commands) == 2, commands
    started = (ROOT / "docs" / "get-started.md").read_text(encoding="utf-8")
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    for line in commands:
        assert line in started, f"docs/get-started.md does not give {line!r}"
        session = line.split("nox -s ")[1].split()[0]
        assert f"def {session}(session)" in noxfile, f"no nox session {session!r}"


def test_every_measured_figure_names_a_command_that_exists():
    """docs/benchmarks.md: each row of its tables says how it was measured, with a script or
    test file that is in the repository."""
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    rows = [line for line in page.splitlines()
            if line.startswith("| ") and not line.startswith(("| ---", "| what", "| capability"))]
    assert len(rows) >= 15, "the status and measured tables moved to docs/benchmarks.md"
    for row in rows:
        last = row.rstrip(" |").rsplit(" | ", 1)[-1]
        assert "`" in last or last.strip() in ("same", "done"), f"a figure without its command: {row}"
    for path in COMMAND_PATH.findall(page):
        assert (ROOT / path).is_file(), f"docs/benchmarks.md runs {path}, which does not exist"
