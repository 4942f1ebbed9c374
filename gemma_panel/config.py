"""The recipe: every setting of a fine-tuning run, typed, with its explanation and default.

A recipe has six sections (model, data, lora, train, eval, export). Each field carries a
``help`` text that says what it does and how it changes training and the finished model; the
dashboard's explanations, the CLI help and the YAML comments all come from these strings.
Defaults are for LoRA on Gemma 3 270M on a CPU; where they come from is said in the help.

Example:
    >>> recipe = load_recipe("recipes/quickstart.yaml", ["train.learning_rate=1e-4"])
    >>> recipe.train.learning_rate
    0.0001
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gemma_panel.errors import UserError


class RecipeError(UserError, ValueError):
    """A recipe that cannot run, with the field(s) named: ``train.batch_size: must be > 0``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))

    def lines(self) -> list[str]:
        if len(self.problems) == 1:
            return list(self.problems)
        return [f"the recipe has {len(self.problems)} problems:",
                *(f"  {p}" for p in self.problems)]


def option(default: Any, help: str, choices: tuple | None = None):
    """A recipe field: its default, its explanation and (optionally) the allowed values."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelSection:
    source: str = option(
        "gemma3-270m",
        "Which Gemma to fine-tune: a registry name (gemma3-270m ships with gemma_panel and "
        "works offline), a .gguf file, a Hugging Face folder or a KerasHub preset. Bigger "
        "models learn more from the same data but need more memory and time.",
    )
    dtype: str = option(
        "float32",
        "Number format of the computation. float32 is exact and, on CPUs, as fast as "
        "bfloat16 (XLA does not use the CPU's bfloat16 units); mixed_bfloat16 halves "
        "activation memory on GPUs and TPUs with a tiny loss of precision.",
        choices=("float32", "mixed_bfloat16", "bfloat16"),
    )


@dataclass
class DataSection:
    train_path: str = option(
        "examples/instruction/unit_conversions.jsonl",
        "The training file: CSV, JSONL, JSON, plain text or Parquet. Paths are relative to "
        "the directory you run from. Check it first with 'gemma-panel data check'.",
    )
    validation_path: str | None = option(
        None,
        "A separate validation file. Without one, validation_fraction of the training rows "
        "are held out; validation loss is how overfitting is seen.",
    )
    validation_fraction: float = option(
        0.1,
        "Share of the rows held out for validation when there is no validation file. More "
        "gives a steadier validation loss; less leaves more data to learn from.",
    )
    template: str = option(
        "auto",
        "How rows become text: gemma (Gemma's chat turns; loss on the answer only), "
        "completion (plain text; loss on every token), classification (a prompt listing the "
        "labels; loss on the label). auto picks from the columns found.",
        choices=("auto", "gemma", "completion", "classification"),
    )
    columns: dict = option(
        {},
        "Column overrides, role -> column name (roles: prompt, input, response, text, label, "
        "messages), when the detected mapping is wrong.",
    )
    text_mode: str = option(
        "line",
        "For plain-text files: one example per line, per paragraph, or the whole text cut "
        "into chunks (continued pre-training).",
        choices=("line", "paragraph", "chunk"),
    )
    chunk_chars: int = option(
        2000,
        "Characters per example when text_mode is chunk. About 4 characters make a token "
        "in English, so 1000 characters fill roughly 250 tokens.",
    )
    missing: str | None = option(
        None,
        "What to do with missing values: drop, keep, fill:TEXT or column:NAME. Unset, a "
        "missing value is an error reported before training.",
    )
    duplicates: str = option(
        "keep_first",
        "Exact duplicate rows: keep_first, drop_all or keep_all. Duplicates over-weight "
        "their examples and leak between training and validation.",
        choices=("keep_first", "drop_all", "keep_all"),
    )
    sequence_length: int = option(
        256,
        "Tokens per training sequence. Longer keeps long examples whole but costs memory "
        "and time roughly in proportion; examples longer than this are truncated.",
    )
    pack: bool = option(
        True,
        "Pack several short examples into each sequence (they cannot attend to each other). "
        "Removes padding, so the same data trains in fewer steps; results are unchanged.",
    )
    seed: int = option(0, "Seed of the train/validation split and the data order.")


# KerasHub's names for the projections inside each Gemma decoder block.
LORA_TARGETS = (
    "query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear",
)


@dataclass
class LoraSection:
    enabled: bool = option(
        True,
        "Train low-rank adapters (LoRA) beside frozen weights. False fine-tunes every weight "
        "(full fine-tuning): more capacity, about 3x the memory, only for small models.",
    )
    rank: int = option(
        8,
        "LoRA rank r. Higher: more capacity to learn and more memory; 4-16 suits most tasks "
        "(the LoRA paper found r = 4-8 enough for GPT-3; KerasHub's Gemma guide uses 4).",
    )
    alpha: float = option(
        16.0,
        "LoRA alpha; the update is scaled by alpha/rank. Common practice (QLoRA, most "
        "guides) is alpha = 2 x rank; raising it is like raising the learning rate.",
    )
    dropout: float = option(
        0.0,
        "Dropout on the LoRA branch's input during training. 0.05-0.1 helps small datasets "
        "overfit less (QLoRA used 0.05-0.1); 0 is fastest.",
    )
    target_layers: list = option(
        ["query", "value"],
        "Which projections get adapters. Query and value (the LoRA paper's and KerasHub's "
        "default) are cheapest; adding key, attention_output and the feed-forward layers "
        "(ffw_gating, ffw_gating_2, ffw_linear) learns more (QLoRA adapts all).",
    )


@dataclass
class TrainSection:
    learning_rate: float = option(
        2e-4,
        "Peak learning rate of AdamW. LoRA tolerates 1e-4 to 3e-4 (QLoRA: 2e-4); full "
        "fine-tuning wants about 10x less. Too high: loss spikes or NaN; too low: slow.",
    )
    batch_size: int = option(
        4,
        "Sequences per optimizer step (before accumulation). Larger is steadier and uses "
        "more memory; on a CPU it does not make a token faster.",
    )
    gradient_accumulation: int = option(
        1,
        "Add the gradients of this many batches before each update: an effective batch of "
        "batch_size x this, at the memory of one batch.",
    )
    epochs: float = option(
        1.0,
        "Passes over the training data (fractions allowed). More fits the data better until "
        "validation loss starts rising (overfitting).",
    )
    max_steps: int | None = option(
        None, "Stop after this many optimizer steps, whatever epochs says."
    )
    warmup_steps: int = option(
        10,
        "Steps over which the learning rate rises from 0 to its peak; avoids large early "
        "updates while Adam's statistics are poor.",
    )
    schedule: str = option(
        "cosine",
        "Learning-rate decay after warm-up: cosine (to 10% of peak), linear (to 0), or "
        "constant.",
        choices=("cosine", "linear", "constant"),
    )
    weight_decay: float = option(
        0.01,
        "AdamW decoupled weight decay on trained weights; a light brake on overfitting.",
    )
    max_grad_norm: float = option(
        1.0,
        "Clip the global gradient norm to this; protects against rare huge gradients. "
        "0 disables clipping.",
    )
    seed: int = option(0, "Seed of the LoRA initialisation and dropout.")
    checkpoint_every: int = option(
        50,
        "Save a checkpoint (trainable weights, optimizer, data position, RNG) every N steps; "
        "a stopped run resumes from the last one.",
    )
    log_every: int = option(1, "Report training loss and throughput every N steps.")


@dataclass
class EvalSection:
    every_steps: int = option(
        25,
        "Evaluate every N optimizer steps (and at the end): validation loss, perplexity, "
        "token accuracy, task metrics and sample generations. Each evaluation costs time.",
    )
    max_examples: int | None = option(
        64, "Evaluate on at most this many validation examples (None: all)."
    )
    sample_prompts: list = option(
        [],
        "Prompts answered at every evaluation, beside the base model's answers. Empty: the "
        "first num_samples validation prompts.",
    )
    num_samples: int = option(3, "How many sample prompts to take from validation data.")
    task_examples: int = option(
        16,
        "Validation rows answered by generation at each evaluation for task metrics: "
        "accuracy and macro-F1 of the label (classification), exact match and token F1 "
        "(short answers). More is steadier and slower (generation is token by token).",
    )
    max_new_tokens: int = option(48, "Length limit of each sample generation.")
    early_stopping_patience: int | None = option(
        None,
        "Stop when validation loss has not improved for this many evaluations; the best "
        "checkpoint is kept either way. None: never stop early.",
    )


@dataclass
class ExportSection:
    formats: list = option(
        [],
        "Formats the run exports when it succeeds (keras, preset, lora, savedmodel, hf, "
        "peft, gguf), each verified by loading it back and recorded on the run; the run "
        "fails if one does not verify. Later: gemma-panel export RUN --format F.",
    )
    quantize: str | None = option(
        None, "Quantization, applied to the listed formats that take it: GGUF f32, f16, "
        "bf16, q8_0, q5_0, q4_0 (K-quants with llama-quantize on PATH); Keras int8. Q8_0 "
        "keeps a 270M model's perplexity within 0.1%; Q4_0 costs it 77%."
    )
    merge: bool = option(
        True, "Fold LoRA into the base weights in exports (needed by most consumers)."
    )


SECTIONS = {
    "model": ModelSection, "data": DataSection, "lora": LoraSection,
    "train": TrainSection, "eval": EvalSection, "export": ExportSection,
}


@dataclass
class Recipe:
    """A whole fine-tuning run. Load with ``load_recipe``; check with ``validate``."""

    name: str = "run"
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    lora: LoraSection = field(default_factory=LoraSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    export: ExportSection = field(default_factory=ExportSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Recipe:
        data = dict(data or {})
        problems = []
        known = {"name", "description", *SECTIONS}
        for key in data:
            if key not in known:
                problems.append(f"{key}: unknown section{_suggest(key, known)}")
        kwargs = {k: data[k] for k in ("name", "description") if k in data}
        for section, section_cls in SECTIONS.items():
            values = data.get(section) or {}
            if not isinstance(values, dict):
                problems.append(f"{section}: must be a mapping of settings")
                continue
            names = {f.name for f in dataclasses.fields(section_cls)}
            for key in values:
                if key not in names:
                    problems.append(f"{section}.{key}: unknown setting{_suggest(key, names)}")
            kwargs[section] = section_cls(**{k: v for k, v in values.items() if k in names})
        if problems:
            raise RecipeError(problems)
        return cls(**kwargs)


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def field_help(path: str) -> str:
    """The explanation of a field, e.g. ``field_help("train.learning_rate")``."""
    section, name = path.split(".", 1)
    return {f.name: f for f in dataclasses.fields(SECTIONS[section])}[name].metadata["help"]


def iter_fields():
    """Yield (section, dataclasses.Field, type) for every recipe field, in order."""
    for section, section_cls in SECTIONS.items():
        hints = typing.get_type_hints(section_cls)
        for f in dataclasses.fields(section_cls):
            yield section, f, hints[f.name]


def _settings(recipe: Recipe):
    """Yield (path, holder, attribute, type) for every setting, name and description first."""
    yield "name", recipe, "name", str
    yield "description", recipe, "description", str
    for section, f, hint in iter_fields():
        yield f"{section}.{f.name}", getattr(recipe, section), f.name, hint


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
    if base is dict and not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                for k, v in value.items()):
        return f"{path}: must map names to text (or null), got {value!r}"
    return None


def _coerce(path: str, raw: Any, hint) -> Any:
    """Convert a value (from YAML or the command line) to the field's type, or explain."""
    allowed = typing.get_args(hint) or (hint,)
    if raw is None:
        if type(None) in allowed:
            return None
        raise RecipeError([f"{path}: must be set (it cannot be null)"])
    base = next(t for t in allowed if t is not type(None))
    base = typing.get_origin(base) or base
    if base is bool and isinstance(raw, bool):
        return raw
    if base is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if base is float and isinstance(raw, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(raw)
        except ValueError:
            pass
    if base is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if base in (str, list, dict) and isinstance(raw, base):
        return raw
    if base is str and isinstance(raw, (int, float)):
        return str(raw)
    raise RecipeError([f"{path}: expected {base.__name__}, got {raw!r}"])


def parse_override(text: str) -> tuple[str, Any]:
    """``train.learning_rate=1e-4`` -> (``"train.learning_rate"``, 0.0001)."""
    if "=" not in text:
        raise RecipeError([f"{text}: an override is SECTION.FIELD=VALUE, e.g. train.epochs=2"])
    key, value = text.split("=", 1)
    parsed = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, str) and parsed.lower() in ("none", "null"):
        parsed = None
    return key.strip(), parsed


def load_recipe(path: str | Path | None = None, overrides: list[str] = ()) -> Recipe:
    """Read a YAML recipe (or start from the defaults), apply overrides, type-check, validate.

    Raises:
        RecipeError: with one message per problem, each naming its field.
    """
    data = _read_yaml(Path(path)) if path is not None else {}
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        if len(parts) == 1 and parts[0] in ("name", "description"):
            data[parts[0]] = value
            continue
        if len(parts) != 2 or parts[0] not in SECTIONS:
            sections = ", ".join(SECTIONS)
            raise RecipeError([f"{key}: overrides name SECTION.FIELD, sections: {sections}"])
        section = data.setdefault(parts[0], {}) or {}
        data[parts[0]] = section
        section[parts[1]] = value
    recipe = Recipe.from_dict(data)
    problems = []
    for field_path, obj, name, hint in _settings(recipe):
        try:
            setattr(obj, name, _coerce(field_path, getattr(obj, name), hint))
        except RecipeError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RecipeError(problems)
    validate(recipe)
    return recipe


def _read_yaml(path: Path) -> dict:
    """The mapping in a recipe file, or a RecipeError saying why there is none."""
    if not path.is_file():
        raise RecipeError([f"{path}: no such recipe file; see the recipes/ folder"])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        raise RecipeError([f"{path}: not UTF-8 text ({where}); save the recipe as UTF-8"]) \
            from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RecipeError([f"{path}: not valid YAML ({exc})"]) from exc
    if not isinstance(data, dict):
        raise RecipeError([f"{path}: a recipe is a mapping of sections"])
    return data


def validate(recipe: Recipe) -> None:
    """Check types, values and their combinations without building anything.

    Raises:
        RecipeError: naming each bad field and what would work.
    """
    problems = [p for path, obj, name, hint in _settings(recipe)
                if (p := _type_problem(path, getattr(obj, name), hint))]
    if problems:  # the checks below compare numbers: they need the right types
        raise RecipeError(problems)
    for section, f, _ in iter_fields():
        value = getattr(getattr(recipe, section), f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            problems.append(f"{section}.{f.name}: {value!r} is not one of {', '.join(choices)}")
    d, lo, t, e = recipe.data, recipe.lora, recipe.train, recipe.eval

    def need(cond, message):
        if not cond:
            problems.append(message)

    need(d.sequence_length >= 16, "data.sequence_length: must be at least 16 tokens")
    need(d.chunk_chars >= 16, "data.chunk_chars: must be at least 16 characters")
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
    need(t.log_every >= 1, "train.log_every: must be at least 1")
    need(e.every_steps >= 1, "eval.every_steps: must be at least 1")
    need(e.max_new_tokens >= 1, "eval.max_new_tokens: must be at least 1")
    need(e.task_examples >= 0, "eval.task_examples: cannot be negative")
    need(e.early_stopping_patience is None or e.early_stopping_patience >= 1,
         "eval.early_stopping_patience: must be at least 1 (or null)")
    if problems:
        raise RecipeError(problems)


def recipe_to_yaml(recipe: Recipe, comments: bool = True) -> str:
    """YAML for a recipe, each field preceded by its explanation as a comment."""
    def scalar(value) -> str:
        return yaml.safe_dump(value, width=10**6).strip().removesuffix("...").strip()

    lines = [f"name: {scalar(recipe.name)}"]
    if recipe.description:
        lines.append(f"description: {scalar(recipe.description)}")
    current = None
    for section, f, _ in iter_fields():
        if section != current:
            lines.append(f"\n{section}:")
            current = section
        if comments:
            for chunk in _wrap(f.metadata["help"], 92):
                lines.append(f"  # {chunk}")
        value = yaml.safe_dump({f.name: getattr(getattr(recipe, section), f.name)},
                               default_flow_style=True, width=10**6).strip()
        lines.append(f"  {value[1:-1]}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def recipe_diff(a: Recipe, b: Recipe) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ: ``{"train.learning_rate": (2e-4, 1e-4)}``."""
    out = {}
    for section, f, _ in iter_fields():
        va, vb = getattr(getattr(a, section), f.name), getattr(getattr(b, section), f.name)
        if va != vb:
            out[f"{section}.{f.name}"] = (va, vb)
    return out
