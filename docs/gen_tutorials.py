"""Render every notebook in notebooks/ as a Tutorials page at build time (mkdocs-gen-files).

``notebooks/NAME.ipynb`` becomes ``tutorials/NAME.md``: Markdown cells as they are, code cells
as Python blocks, and any output a cell kept as a text block. The notebooks are the source
(tests/tooling/test_tutorials.py executes them); nothing here is committed.

Why not mkdocs-jupyter: it hands a notebook's Markdown to nbconvert, so its links stay
``.md`` links (broken in the built site) and ``mkdocs build --strict`` never checks them. Here
the pages are plain Markdown, so MkDocs rewrites and validates every link and anchor as on any
other page. A notebook links the docs as seen from notebooks/ (``../docs/faq.md``, which also
works when the notebook is opened in Jupyter), and another notebook as ``NAME.ipynb``; both are
rewritten to the page's place in the site.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
DOCS_LINK = re.compile(r"\]\(\.\./docs/")
NOTEBOOK_LINK = re.compile(r"\]\(([\w-]+)\.ipynb([#)])")


def markdown(source: str) -> str:
    source = DOCS_LINK.sub("](../", source)
    return NOTEBOOK_LINK.sub(r"](\1.md\2", source)


def outputs(cell: dict) -> list[str]:
    """The text a code cell kept from its last run (streams and plain-text results)."""
    texts = []
    for out in cell.get("outputs", []):
        text = out.get("text") or out.get("data", {}).get("text/plain")
        if text:
            texts.append("".join(text) if isinstance(text, list) else text)
    return [f"```text\n{t.rstrip()}\n```" for t in texts]


def page(notebook: Path) -> str:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    parts = []
    for cell in cells:
        source = "".join(cell["source"]).rstrip()
        if cell["cell_type"] == "markdown":
            parts.append(markdown(source))
        elif cell["cell_type"] == "code" and source:
            parts += [f"```python\n{source}\n```", *outputs(cell)]
        if len(parts) == 1:  # under the title: where the page comes from
            parts.append(f'!!! note "A notebook"\n    This page is `notebooks/{notebook.name}`: '
                         "open it in Jupyter to run it. The tests run it top to bottom in a "
                         "fresh kernel, so every cell works with this version.")
    return "\n\n".join(parts) + "\n"


def main() -> None:
    import mkdocs_gen_files

    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        with mkdocs_gen_files.open(f"tutorials/{notebook.stem}.md", "w") as out:
            out.write(page(notebook))


main()
