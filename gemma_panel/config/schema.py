"""The recipe's schema: eight sections of typed fields, each with its help text and default.

Each field carries a ``help`` text that says what it does and how it changes training and the
finished model; the dashboard's explanations, the CLI help and the YAML comments all come
from these strings. Defaults are for LoRA on Gemma 3 270M on a CPU; where they come from is
said in the help. Looking fields up by path is in ``fields``; loading and checking are in
``loading`` and ``validation``; YAML and differences in ``rendering``.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

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


def option(default: Any, help: str, choices: tuple | None = None,
           least: float | None = None):
    """A recipe field: its default, its explanation and (optionally) the allowed values.

    ``least`` is the smallest value ``validate`` accepts, for the widgets that show the
    field elsewhere (the Data tab's sequence length) to refuse the same values.
    """
    meta = {"help": help, "choices": choices, "least": least}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
        "How rows become text: gemma (Gemma 1-3's chat turns; loss on the answer only), gemma4 "
        "(Gemma 4's turns, with a system role), "
        "completion (plain text; loss on every token), classification (a prompt listing the "
        "labels; loss on the label). auto picks from the columns found.",
        choices=("auto", "gemma", "gemma4", "completion", "classification"),
    )
    thinking: bool = option(
        False,
        "Gemma 4 only: switch on the model's thinking channel. Leave off unless answers "
        "include reasoning.",
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
        least=16,
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
        least=16,
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
    storage: str | None = option(
        None,
        "A gs://bucket/runs prefix: the run keeps a copy of its folder under it (metrics, "
        "samples and each checkpoint, uploaded create-only as they are written), which a "
        "Vertex AI job resumes from and a dashboard elsewhere reads.",
    )


@dataclass(frozen=True)
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
        "(short answers). More is steadier and slower (all rows are generated together, "
        "in one batch).",
    )
    max_new_tokens: int = option(48, "Length limit of each sample generation.")
    early_stopping_patience: int | None = option(
        None,
        "Stop when validation loss has not improved for this many evaluations; the best "
        "checkpoint is kept either way. None: never stop early.",
    )


@dataclass(frozen=True)
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


STRATEGIES = ("auto", "single", "data_parallel", "fsdp", "model_parallel")
AXES = ("batch", "model")


@dataclass(frozen=True)
class DistributionSection:
    strategy: str = option(
        "auto",
        "How training uses the devices. auto: data_parallel when the model fits one "
        "device, fsdp otherwise. single: one device. data_parallel: each device holds the "
        "whole model and a slice of every batch (fastest when the model fits). fsdp: "
        "weights, LoRA factors and optimizer state are split over the devices too (memory "
        "per device drops about 1/N, at the cost of gathering weights each step). "
        "model_parallel: attention heads and feed-forward units are split over a 'model' "
        "axis, for models too big even for fsdp. 'gemma-panel devices' shows the devices.",
        choices=STRATEGIES,
    )
    mesh: dict[str, int] | None = option(
        None,
        "The device mesh's shape, e.g. {batch: 2, model: 4}: batch x model must equal the "
        "number of devices, and the batch size must divide by batch. Empty: all devices on "
        "batch (model for model_parallel).",
    )


BASE_WEIGHTS = ("float32", "bfloat16", "int8")


@dataclass(frozen=True)
class MemorySection:
    base_weights: str = option(
        "float32",
        "How LoRA's frozen base weights are stored; LoRA factors and optimizer state stay "
        "float32 and the computation keeps model.dtype. float32: exact, 4 bytes a weight. "
        "bfloat16: half the weight memory; the base is rounded to 8 mantissa bits (loss "
        "changes in the 3rd digit). int8: a quarter (Keras quantize('int8') before LoRA, "
        "the QLoRA recipe; matmuls also quantize their inputs), the loss moves by about 1%. "
        "Needs lora.enabled (full fine-tuning trains these weights).",
        choices=BASE_WEIGHTS,
    )
    remat: bool = option(
        False,
        "Recompute each decoder block's activations in the backward pass instead of "
        "keeping them (jax.checkpoint per block): activation memory drops from every "
        "block's to about one block's, for about one more forward pass per step (~30% "
        "slower). For long sequences, big batches and deep models.",
    )


SECTIONS = {
    "model": ModelSection, "data": DataSection, "lora": LoraSection,
    "train": TrainSection, "eval": EvalSection, "export": ExportSection,
    "distribution": DistributionSection, "memory": MemorySection,
}


@dataclass(frozen=True)
class Recipe:
    """A whole fine-tuning run. Load with ``load_recipe``; check with ``validate``.

    Recipes and their sections are frozen: change one with ``dataclasses.replace`` or
    ``replace_settings``, so a recipe handed to a run or a view never changes under it.
    """

    name: str = "run"
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    lora: LoraSection = field(default_factory=LoraSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    export: ExportSection = field(default_factory=ExportSection)
    distribution: DistributionSection = field(default_factory=DistributionSection)
    memory: MemorySection = field(default_factory=MemorySection)

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
