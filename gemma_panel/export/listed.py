"""The exports a recipe lists (its ``export:`` section), made when its run succeeds.

``check_listed`` runs when a run is queued, so a recipe asking for an unknown format or a
quantization no listed format takes is refused before any training; ``export_listed``
runs in the worker after training succeeded and exports and verifies each format in turn,
exactly as ``gemma-panel export RUN --format F`` would. Its outcome is recorded on the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gemma_panel.config import Recipe
from gemma_panel.export.manifest import ExportError

# Which formats a recipe's one ``export.quantize`` applies to: Keras takes int8 only; GGUF
# takes its file types. The other formats are exported unquantized.
_KERAS_TYPES = ("int8", "int4")


def quantize_for(fmt: str, quantize: str | None) -> str | None:
    """The part of a recipe's ``export.quantize`` that applies to ``fmt``."""
    if quantize is None:
        return None
    if fmt == "keras":
        return quantize if quantize.lower() in _KERAS_TYPES else None
    if fmt == "gguf":
        return None if quantize.lower() in _KERAS_TYPES else quantize
    if fmt == "litert":
        from gemma_panel.export.litert import LITERT_TYPES

        return quantize if quantize.lower() in LITERT_TYPES else None
    return None


def check_listed(recipe: Recipe) -> None:
    """Refuse, before training, exports that ``export_run`` would refuse after it.

    Raises:
        ExportError: an unknown format, or a quantization it cannot take.
    """
    from gemma_panel.export.pipeline import check_request

    section = recipe.export
    for fmt in section.formats:
        check_request(fmt, quantize_for(fmt, section.quantize), section.merge)
    if section.quantize and not any(quantize_for(f, section.quantize) for f in section.formats):
        raise ExportError(f"export.quantize: {section.quantize} applies to none of the listed "
                          f"formats ({', '.join(section.formats) or 'none'}); add gguf (its "
                          "file types) or keras (int8), or remove export.quantize.")


@dataclass(frozen=True)
class ListedExport:
    """One listed export's outcome: its folder when verified, else why it failed."""

    fmt: str
    path: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def export_listed(run_dir: str | os.PathLike, recipe: Recipe,
                  on_done=lambda outcome: None) -> list[ListedExport]:
    """Export and verify every format the recipe lists from the run's latest checkpoint.

    A format that fails (its verification included) is reported and the others still run;
    ``on_done`` is called with each outcome as it is known.
    """
    from gemma_panel.errors import as_user_error
    from gemma_panel.export.pipeline import export_run

    outcomes = []
    for fmt in recipe.export.formats:
        try:
            result = export_run(run_dir, fmt, quantize=quantize_for(fmt, recipe.export.quantize),
                                merge=recipe.export.merge)
            outcome = ListedExport(fmt, str(result.path), None)
        except Exception as exc:  # noqa: BLE001 - each export's failure is the run's record
            error = as_user_error(exc)
            outcome = ListedExport(fmt, None, str(error) if error else
                                   f"{type(exc).__name__}: {exc}")
        outcomes.append(outcome)
        on_done(outcome)
    return outcomes


def summary(outcomes: list[ListedExport]) -> str | None:
    """One sentence for the run's message: what was exported, what failed and what to do."""
    if not outcomes:
        return None
    failed = [o for o in outcomes if not o.ok]
    made = ", ".join(o.fmt for o in outcomes if o.ok)
    if not failed:
        return f"exported and verified: {made}"
    why = "; ".join(f"{o.fmt}: {o.error}" for o in failed)
    return (f"training succeeded but {len(failed)} listed export(s) failed ({why}); "
            f"retry with gemma-panel export RUN --format {failed[0].fmt}"
            + (f" (verified: {made})" if made else ""))
