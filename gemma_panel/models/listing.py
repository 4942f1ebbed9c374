"""The registry as a text table, for ``gemma-panel models list`` (and anything else that prints).

One row per model: size (active parameters beside the total for mixtures of experts and the
E models), context, vocabulary, what it reads, what fetching it costs, its KerasHub presets;
then which licence covers which models.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gemma_panel.models.registry import INSTRUCT_SUFFIX, MODELS, ModelSpec

_COLUMNS = (("name", 15, "<"), ("family", 8, "<"), ("params", 7, ">"), ("active", 7, ">"),
            ("context", 8, ">"), ("vocab", 8, ">"), ("reads", 25, "<"), ("download", 9, ">"))


def human(n: float) -> str:
    """268098176 -> '268M', 999885952 -> '1B', 3880099328 -> '3.88B'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale * 0.9995:
            return f"{n / scale:.3g}{unit}" if n / scale < 100 else f"{n / scale:.0f}{unit}"
    return str(int(n))


def kerashub_cache() -> Path:
    """Where KerasHub's preset downloads (through kagglehub) are kept."""
    default = Path.home() / ".cache" / "kagglehub"
    return Path(os.environ.get("KAGGLEHUB_CACHE") or default)


def is_downloaded(spec: ModelSpec) -> bool:
    """Whether one of the model's KerasHub presets is already in the download cache."""
    models = kerashub_cache() / "models" / "keras"
    return any(any(models.glob(f"*/keras/{preset}/*/config.json"))
               for preset in spec.keras_hub_presets)


def download_note(spec: ModelSpec) -> str:
    """What using the model fetches: ``bundled``, ``cached`` (downloaded before) or its size."""
    if spec.bundled:
        return "bundled"
    return "cached" if is_downloaded(spec) else f"{spec.download_bytes() / 1e9:.1f} GB"


def _cells(spec: ModelSpec) -> list[str]:
    download = download_note(spec)
    return [spec.name, spec.family, human(spec.params),
            human(spec.active_params) if spec.active_params else "",
            str(spec.context_length), str(spec.vocab_size), ", ".join(spec.modalities),
            download]


def _row(cells: list[str], presets: str) -> str:
    out = " ".join(f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, _COLUMNS))
    return f"{out}  {presets}"


def models_table(specs: Iterable[ModelSpec] | None = None) -> str:
    """The models as aligned text lines, with a licence summary at the end."""
    specs = list(MODELS.values() if specs is None else specs)
    header = _row([name for name, _, _ in _COLUMNS], "KerasHub presets (base, instruct)")
    lines = [header, "-" * len(header)]
    lines += [_row(_cells(s), ", ".join(s.keras_hub_presets)) for s in specs]
    instruct = (f"Add '{INSTRUCT_SUFFIX}' to a name for the instruction-tuned model "
                f"(gemma4-e2b{INSTRUCT_SUFFIX}). Download sizes are the bfloat16 weights; 'cached': already downloaded.")
    anything = ("Any Gemma GGUF file, Hugging Face folder or KerasHub preset folder also works "
                "as --model.")
    lines += ["", instruct, anything, *_licences(specs)]
    return "\n".join(lines)


def _licences(specs: list[ModelSpec]) -> list[str]:
    families: dict[str, list[str]] = {}
    for spec in specs:
        names = families.setdefault(spec.licence.split(":")[0], [])
        if spec.family not in names:
            names.append(spec.family)
    return [f"Licence: {name} ({', '.join(fams)})." for name, fams in families.items()]
