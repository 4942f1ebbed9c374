"""What to do with missing values and duplicates: choices the user makes, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gemma_panel.data.report import DatasetError

DuplicatePolicy = Literal["keep_first", "drop_all", "keep_all"]
DUPLICATE_POLICIES = ("keep_first", "drop_all", "keep_all")


@dataclass(frozen=True)
class MissingPolicy:
    """What to do with a row whose required value is missing or empty.

    Args:
        action: ``"drop"`` the row; ``"fill"`` with `value`; take the value from another
            ``"column"``; or ``"keep"`` the row with an empty value.
        value: the constant for ``"fill"``.
        column: the column for ``"column"``.

    Parse the CLI forms with `MissingPolicy.parse`: ``drop``, ``keep``, ``fill:TEXT``,
    ``column:NAME``.
    """

    action: Literal["drop", "fill", "column", "keep"]
    value: str = ""
    column: str | None = None

    @classmethod
    def parse(cls, spec: str | MissingPolicy) -> MissingPolicy:
        if isinstance(spec, MissingPolicy):
            return spec
        action, _, arg = spec.partition(":")
        if action in ("drop", "keep") and not arg:
            return cls(action)
        if action == "fill":
            return cls("fill", value=arg)
        if action == "column" and arg:
            return cls("column", column=arg)
        raise DatasetError(f"missing-value policy {spec!r} must be drop, keep, fill:TEXT or "
                           "column:NAME.")

    def describe(self) -> str:
        return {"drop": "the row is dropped", "keep": "the row is kept with an empty value",
                "fill": f"filled with {self.value!r}",
                "column": f"filled from column {self.column!r}"}[self.action]


def resolve_missing_policies(
    missing: str | MissingPolicy | dict[str, str | MissingPolicy] | None,
) -> dict[str, MissingPolicy]:
    """Per-role policies from one policy for all roles (``"*"``) or a role-keyed dict."""
    if missing is None:
        return {}
    if isinstance(missing, dict):
        return {role: MissingPolicy.parse(p) for role, p in missing.items()}
    return {"*": MissingPolicy.parse(missing)}


def check_duplicate_policy(policy: str) -> DuplicatePolicy:
    if policy not in DUPLICATE_POLICIES:
        raise DatasetError(f"duplicate policy {policy!r} must be one of "
                           f"{', '.join(DUPLICATE_POLICIES)}.")
    return policy  # type: ignore[return-value]
