"""A griffe extension: read our ``Example:`` docstring sections as ``Examples:`` sections.

The code's Google-style docstrings head their doctests ``Example:`` (as Google's style guide
and Napoleon allow); griffe knows only the plural, and renders the singular as an admonition
whose ``>>>`` lines become nested quotes. Renaming the heading here, before griffe parses the
docstring, renders them as Python code without editing the code's docstrings.
"""

from __future__ import annotations

import re

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
