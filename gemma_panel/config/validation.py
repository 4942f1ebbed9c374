"""Checking a recipe: the type of every field, allowed values, and their combinations."""

from __future__ import annotations

import math
import typing
from typing import Any

from .fields import field_least, iter_fields, iter_settings
from .schema import AXES, LORA_TARGETS, DistributionSection, Recipe, RecipeError


def _type_problem(path: str, value: Any, hint) -> str | None:
    """What is wrong with the type of ``value`` for a field typed ``hint``, or None.

    Lists hold text (layer names, prompts, formats); ``data.columns`` maps roles to a
    column name or None.
    """
    allowed = typing.get_args(hint) or (hint,)
    if value is None:
        return None if type(None) in allowed else f"{path}: must be set (it cannot be null)"
    base = next(t for t in allowed if t is not type(None))
    base = typing.get_origin(base) or base
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {bool: isinstance(value, bool), float: number,
          int: number and isinstance(value, int)}.get(base, isinstance(value, base))
    if not ok:
        return f"{path}: expected {base.__name__}, got {value!r}"
    if base is list and not all(isinstance(item, str) for item in value):
        return f"{path}: every item must be text, got {value!r}"
    value_types = typing.get_args(next(t for t in allowed if t is not type(None)))
    if base is dict and value_types[1:] == (int,):  # distribution.mesh: checked by its rules
        return None
    if base is dict and not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                for k, v in value.items()):
        return f"{path}: must map names to text (or null), got {value!r}"
    return None


def validate(recipe: Recipe) -> None:
    """Check types, values and their combinations without building anything.

    Raises:
        RecipeError: naming each bad field and what would work.
    """
    problems = [p for path, value, hint in iter_settings(recipe)
                if (p := _type_problem(path, value, hint))]
    if problems:  # the checks below compare numbers: they need the right types
        raise RecipeError(problems)
    problems = _choice_problems(recipe) + _value_problems(recipe)
    if problems:
        raise RecipeError(problems)


def _choice_problems(recipe: Recipe) -> list[str]:
    problems = []
    for section, f, _ in iter_fields():
        value = getattr(getattr(recipe, section), f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            problems.append(f"{section}.{f.name}: {value!r} is not one of {', '.join(choices)}")
    return problems


def _value_problems(recipe: Recipe) -> list[str]:
    """Bounds and combinations, each message starting with the field to change."""
    problems = []
    d, lo, t, e = recipe.data, recipe.lora, recipe.train, recipe.eval

    def need(cond, message):
        if not cond:
            problems.append(message)

    least = field_least("data.sequence_length")
    need(d.sequence_length >= least, f"data.sequence_length: must be at least {least} tokens")
    least = field_least("data.chunk_chars")
    need(d.chunk_chars >= least, f"data.chunk_chars: must be at least {least} characters")
    need(0 < d.validation_fraction < 1 or d.validation_path,
         "data.validation_fraction: must be between 0 and 1 (or give data.validation_path)")
    need(lo.rank >= 1, "lora.rank: must be at least 1")
    need(lo.alpha > 0, "lora.alpha: must be positive")
    need(0 <= lo.dropout < 1, "lora.dropout: must be in [0, 1)")
    bad = [name for name in lo.target_layers if name not in LORA_TARGETS]
    need(not bad, f"lora.target_layers: unknown {bad}; choose from {', '.join(LORA_TARGETS)}")
    need(not lo.enabled or lo.target_layers, "lora.target_layers: LoRA needs at least one layer")
    need(t.learning_rate > 0, "train.learning_rate: must be positive")
    need(t.learning_rate <= 1e-2, "train.learning_rate: above 1e-2 diverges for Gemma; "
                                  "try 2e-4 for LoRA or 2e-5 for full fine-tuning")
    need(t.batch_size >= 1, "train.batch_size: must be at least 1")
    need(t.gradient_accumulation >= 1, "train.gradient_accumulation: must be at least 1")
    need(t.epochs > 0 or (t.max_steps or 0) > 0, "train.epochs: must be positive")
    need(t.max_steps is None or t.max_steps >= 1, "train.max_steps: must be at least 1")
    need(t.warmup_steps >= 0, "train.warmup_steps: cannot be negative")
    need(t.max_steps is None or t.warmup_steps < t.max_steps,
         "train.warmup_steps: must be below train.max_steps, or the peak is never reached")
    need(t.weight_decay >= 0, "train.weight_decay: cannot be negative")
    need(t.max_grad_norm >= 0, "train.max_grad_norm: cannot be negative (0 disables)")
    need(t.checkpoint_every >= 1, "train.checkpoint_every: must be at least 1")
    need(not t.storage or t.storage.startswith("gs://"),
         "train.storage: must be a gs://BUCKET/PATH prefix (or empty)")
    need(t.log_every >= 1, "train.log_every: must be at least 1")
    need(e.every_steps >= 1, "eval.every_steps: must be at least 1")
    need(e.max_new_tokens >= 1, "eval.max_new_tokens: must be at least 1")
    need(e.task_examples >= 0, "eval.task_examples: cannot be negative")
    need(e.early_stopping_patience is None or e.early_stopping_patience >= 1,
         "eval.early_stopping_patience: must be at least 1 (or null)")
    need(lo.enabled or recipe.memory.base_weights == "float32",
         f"memory.base_weights: {recipe.memory.base_weights} stores frozen weights, but "
         "lora.enabled is false (every weight trains); set lora.enabled=true or "
         "memory.base_weights=float32")
    return problems + section_problems(recipe.distribution)


def mesh_problem(strategy: str, mesh) -> str | None:
    """What is wrong with a mesh setting before any device is seen, or None.

    The device count is checked when the run resolves its mesh on the devices it has.
    """
    if mesh is None or mesh == {}:
        return None
    if not isinstance(mesh, dict):
        return f"distribution.mesh: a mapping of axis sizes, e.g. {{batch: 2, model: 4}}, " \
               f"not {mesh!r}"
    unknown = sorted(set(mesh) - set(AXES), key=str)
    if unknown:
        return (f"distribution.mesh: unknown axis {unknown[0]!r}; the axes are batch and "
                f"model, e.g. {{batch: 2, model: 4}}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
               for n in mesh.values()):
        return f"distribution.mesh: axis sizes must be whole numbers of at least 1, got {mesh}"
    if strategy == "single" and math.prod(mesh.values()) > 1:
        return ("distribution.mesh: single uses one device; leave the mesh empty or choose "
                "data_parallel, fsdp or model_parallel")
    if strategy == "data_parallel" and mesh.get("model", 1) != 1:
        return ("distribution.mesh: data_parallel replicates the model, so model must be 1; "
                "use fsdp or model_parallel to split it")
    return None


def section_problems(section: DistributionSection) -> list[str]:
    """The section's problems that need no devices (the strategy's choices are checked
    with every field's); the device count is checked by ``resolve``."""
    problem = mesh_problem(section.strategy, section.mesh)
    return [problem] if problem else []
