"""What a run's tuned model can be taken from: its checkpoints and its exports.

Read from the run folder alone (no run store, nothing loaded), so the Export tab (what to
export), the Chat tab (what to talk to) and the CLI see the same thing:

- ``run_checkpoints``: the whole checkpoints' steps, which is the latest, and which is the
  best (lowest validation loss) when it is still kept. The best step is the one the
  latest checkpoint's ``meta.json`` records: the trainer writes it there and keeps that
  checkpoint through pruning for it (``save_checkpoint``).
- ``run_exports``: every export folder of ``exports/`` that has a manifest, newest first,
  with its format, type, step, size and whether it verified.
- ``load_export``: a finished export's model as a KerasHub causal LM, read by its own
  consumer's loader (``CHAT_FORMATS`` says which formats have one here).

A choice of checkpoint is one of ``latest``, ``best`` or ``step N`` (``Checkpoints.choices``
and ``Checkpoints.step``), the words both tabs show.

Example:
    >>> run_checkpoints("runs/tiny-3f2a1b").choices()       # ['latest', 'best', 'step 4', ...]
    >>> [e.label for e in run_exports("runs/tiny-3f2a1b") if e.chattable]
    >>> lm = load_export("runs/tiny-3f2a1b/exports/gguf-f16-step000004")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.export.manifest import MANIFEST, ExportError, is_finished, read_manifest

# The formats whose export loads back as a KerasHub causal LM (``load_export``); the others
# (savedmodel: logits only; peft: transformers' adapter) have no generator here.
CHAT_FORMATS = ("preset", "keras", "gguf", "hf", "lora")


@dataclass(frozen=True)
class Checkpoints:
    """A run's whole checkpoints: their steps (oldest first) and the best one's, if kept."""

    steps: tuple[int, ...] = ()
    best: int | None = None

    @property
    def latest(self) -> int | None:
        return self.steps[-1] if self.steps else None

    def choices(self) -> list[str]:
        """``latest``, ``best`` (when kept), then ``step N`` for each, newest first."""
        return ["latest"] + (["best"] if self.best is not None else []) + \
            [f"step {s}" for s in reversed(self.steps)]

    def step(self, choice: str) -> int | None:
        """The step a choice names (None: the run has no checkpoint, or no best one)."""
        if choice.startswith("step "):
            return int(choice.split()[1])
        return self.best if choice == "best" else self.latest


def run_checkpoints(run_dir: str | os.PathLike) -> Checkpoints:
    """The checkpoints of the run in ``run_dir`` (see the module's docstring)."""
    from gemma_panel.training.checkpoint import checkpoint_step, list_checkpoints

    found = list_checkpoints(Path(run_dir))
    if not found:
        return Checkpoints()
    steps = tuple(checkpoint_step(p) for p in found)
    try:
        best = json.loads((found[-1] / "meta.json").read_text()).get("best_step")
    except (OSError, ValueError, AttributeError):
        best = None
    return Checkpoints(steps, best if best in steps else None)


@dataclass(frozen=True)
class RunExport:
    """One export folder of a run, as its manifest describes it."""

    path: Path
    format: str | None
    quantize: str | None
    step: int | None
    bytes: int
    verified: bool
    created: str | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def chattable(self) -> bool:
        return self.format in CHAT_FORMATS

    @property
    def label(self) -> str:
        """'export gguf-f16-step000004 (gguf f16, verified)': the name and what it is."""
        kind = " ".join(str(p) for p in (self.format, self.quantize) if p)
        return f"export {self.name} ({kind}, {'verified' if self.verified else 'NOT verified'})"

    def row(self) -> dict:
        """The export as a row of a table (the Export tab's list)."""
        return {"export": self.name, "format": self.format, "quantize": self.quantize,
                "step": self.step, "MB": round(self.bytes / 1e6, 2),
                "verified": self.verified, "created": self.created}


def run_exports(run_dir: str | os.PathLike) -> list[RunExport]:
    """The run's export folders that have a readable manifest, newest first."""
    folder = Path(run_dir) / "exports"
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not (path / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(path)
        except (OSError, ValueError):
            continue
        found.append(RunExport(path, manifest.get("format"), manifest.get("quantize"),
                               (manifest.get("source") or {}).get("step"),
                               manifest.get("total_bytes", 0), is_finished(path),
                               manifest.get("created_at")))
    return sorted(found, key=lambda e: e.created or "", reverse=True)


def load_export(folder: str | os.PathLike):
    """The causal LM of an export in ``folder``, loaded as its consumer loads it.

    Raises:
        ExportError: the folder holds no export, or one of a format with no loader here.
    """
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        raise ExportError(f"'{folder}' holds no readable export ({exc}); pick another "
                          "export or a checkpoint.") from exc
    fmt = manifest.get("format")
    if fmt not in CHAT_FORMATS:
        raise ExportError(f"A '{fmt}' export cannot be chatted with here; pick a "
                          f"{', '.join(CHAT_FORMATS)} export or a checkpoint.")
    from gemma_panel.models import load_model

    if fmt == "keras":
        import keras
        import keras_hub  # noqa: F401  (registers KerasHub's classes for deserialisation)

        return keras.saving.load_model(folder / "model.keras")
    if fmt == "gguf":
        return load_model(str(folder / manifest.get("gguf_file", "model.gguf")), progress=False)
    if fmt == "lora":
        from gemma_panel.models.lora import LORA_CONFIG, load_lora_adapter

        base = json.loads((folder / LORA_CONFIG).read_text()).get("base_model") or \
            (manifest.get("source") or {}).get("model_source")
        return load_lora_adapter(load_model(base, progress=False), folder)
    return load_model(str(folder), progress=False)  # preset, hf: the model loader reads them
