"""How long a run takes: model FLOPs over the device's peak and a utilisation (MFU).

FLOPs are ``gemma_panel.training.flops.training_flops`` of the examples as they will be
trained (full fine-tuning about 6N per token; LoRA 2N forward + 2N for the activations'
gradients + the factors; the attention term and the LM head at the loss positions). The
peak is the device's published figure, or on a CPU a matmul timed on this machine and
cached in ``GEMMA_PANEL_HOME/plan/peak.json``. The MFU defaults are measured
(CPU: 24% of the matmul peak, README's throughput table) or assumed (accelerators: 30%);
``calibrate`` times real steps, loading, compiling and generation here and replaces
the whole model.
"""

from __future__ import annotations

import dataclasses
import math
import time as _time
from dataclasses import dataclass

import numpy as np

from gemma_panel.planning.memory import ModelSize
from gemma_panel.training.flops import Shape, training_flops

DEFAULT_MFU = {"cpu": 0.24, "gpu": 0.30, "tpu": 0.30}
# JAX's default matmul precision runs float32 on NVIDIA tensor cores as TF32: half the
# dense bfloat16 rate on Ampere and Hopper (A100: 156 vs 312 TFLOP/s).
TF32_SHARE = 0.5
FORWARD_SHARE = 1 / 3  # an evaluation pass is the forward third of a training pass
SAMPLED_EXAMPLES = 4000  # examples counted exactly; more are scaled
GENERATION_BATCH = 16  # rows decoded together (models/generation.py's _MAX_BATCH)


@dataclass(frozen=True)
class TimeEstimate:
    """Seconds of training (and of validation passes), with how they were worked out."""

    steps: int
    flops: float
    seconds: float
    method: str  # in words: the peak, the MFU, or the calibration

    def to_dict(self) -> dict:
        return {"steps": self.steps, "flops": self.flops, "seconds": self.seconds,
                "method": self.method}


def lora_shape(model: ModelSize, lora: bool, rank: int, targets) -> Shape:
    """The count's shape with the recipe's LoRA branches (none under full fine-tuning)."""
    if not lora:
        return model.shape
    per_layer = rank * sum(model.shape.lora_target_macs(t) for t in targets)
    return dataclasses.replace(model.shape, lora_per_token=per_layer * model.layers)


def epoch_flops(shape: Shape, stats, sequence_length: int, full: bool) -> float:
    """Model FLOPs of one pass over the training examples at this sequence length."""
    prompt, target = stats.prompt, stats.target
    if len(prompt) > SAMPLED_EXAMPLES:
        pick = np.random.default_rng(0).choice(len(prompt), SAMPLED_EXAMPLES, replace=False)
        prompt, target = prompt[pick], target[pick]
    kept = np.minimum(prompt + target, sequence_length)
    trained = np.minimum(np.clip(sequence_length - prompt, 0, None), target)
    examples = [(int(n), int(m)) for n, m in zip(kept, trained) if m > 0]
    return training_flops(shape, examples, full=full) * stats.examples / max(1, len(prompt))


@dataclass(frozen=True)
class Calibration:
    """What ``calibrate`` timed here: loading the model, compiling the step, one optimizer
    step, and one decoding step of the evaluation's batches (each evaluation generates the
    sample prompts' answers in one batch and the task rows' in another: every row of a
    batch gains a token per step), with the generation's compiling."""

    load_seconds: float
    compile_seconds: float
    step_seconds: float
    token_seconds: float  # one decoding step of the sample prompts' batch
    task_token_seconds: float | None = None  # of the task rows' batch (None: the same)
    generation_compile_seconds: float = 0.0  # both batches' first generation, less a run

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def estimate_time(recipe, model: ModelSize, stats, hardware, total_steps: int,
                  mfu: float | None = None, calibration: Calibration | None = None,
                  validation_examples: int = 0) -> TimeEstimate:
    """The run's time on ``hardware`` (a `Hardware`).

    Without a calibration: training and validation FLOPs over peak x MFU (loading,
    compiling and sample generation not counted). With one (``calibrate``): the whole
    run, each part at its measured rate: loading, compiling, steps, validation passes
    and every evaluation's generated answers.
    """
    d, t, lo = recipe.data, recipe.train, recipe.lora
    shape = lora_shape(model, lo.enabled, lo.rank, lo.target_layers)
    per_epoch = epoch_flops(shape, stats, d.sequence_length, full=not lo.enabled)
    rows = max(1, stats.sequences(d.sequence_length, d.pack, d.seed))
    epochs = total_steps * t.batch_size * t.gradient_accumulation / rows
    train_flops = per_epoch * epochs
    evaluations = math.ceil(total_steps / max(1, recipe.eval.every_steps))
    val_share = validation_examples / max(1, stats.examples)
    eval_flops = per_epoch * FORWARD_SHARE * val_share * evaluations
    flops = train_flops + eval_flops
    if calibration is not None:
        return _calibrated(recipe, calibration, total_steps, flops, train_flops, evaluations)
    mfu = mfu or DEFAULT_MFU.get(hardware.backend, 0.3)
    peak, source = hardware.peak_flops or measured_peak(), hardware.peak_source
    if hardware.backend == "gpu" and recipe.model.dtype == "float32":
        peak, source = peak * TF32_SHARE, f"{source}; float32 runs as TF32 at half of it"
    seconds = flops / (peak * mfu * hardware.count)
    return TimeEstimate(total_steps, flops, seconds,
                        f"{flops / 1e12:.1f} TFLOP over {hardware.count} x "
                        f"{peak / 1e9:,.0f} GFLOP/s ({source}) at {mfu:.0%} "
                        "MFU; loading, compiling and sample generation not counted")


def _calibrated(recipe, c: Calibration, steps: int, flops: float, train_flops: float,
                evaluations: int) -> TimeEstimate:
    training = c.step_seconds * steps * flops / max(train_flops, 1.0)
    generation, answers = _generation_seconds(recipe.eval, c, evaluations)
    fixed = c.load_seconds + 2 * c.compile_seconds + c.generation_compile_seconds
    return TimeEstimate(steps, flops, training + generation + fixed,
                        f"timed here: {c.step_seconds:.2f} s per step, "
                        f"{c.token_seconds * 1000:.0f} ms per generated token of a batch "
                        f"({answers} answers in batches of up to {GENERATION_BATCH}), "
                        f"{fixed:.0f} s loading and compiling")


def _generation_seconds(e, c: Calibration, evaluations: int) -> tuple[float, int]:
    """(seconds, answers) of every evaluation's generation: the sample prompts' batch for
    the base model once and at each evaluation, the task rows' batch at each evaluation,
    each ``max_new_tokens`` decoding steps at most (it stops once every row has ended)."""
    batches = -(-e.num_samples // GENERATION_BATCH) * (evaluations + 1)
    task_batches = -(-e.task_examples // GENERATION_BATCH) * evaluations
    task_token = c.token_seconds if c.task_token_seconds is None else c.task_token_seconds
    seconds = e.max_new_tokens * (batches * c.token_seconds + task_batches * task_token)
    return seconds, e.num_samples * (evaluations + 1) + e.task_examples * evaluations


def measured_peak() -> float:
    """This machine's float32 matmul FLOP/s with JAX: the trainer's MFU peak, measured once
    per machine and cached (``gemma_panel.training.flops.measured_peak``)."""
    from gemma_panel.training.flops import measured_peak as trainer_peak

    return trainer_peak("float32")[0]


def calibrate(recipe, steps: int = 3, tokens: int = 16) -> Calibration:
    """Time the recipe's parts on this machine: load the model and prepare the data as a
    run does, compile and run a few optimizer steps, generate a few tokens of the
    evaluation's two batches (its sample prompts, its task rows). Image data is timed as
    an image run trains and answers it (training/vision.py, training/vision_samples.py)."""
    from gemma_panel.data.images import trains_images
    from gemma_panel.models.generation import StreamingGenerator
    from gemma_panel.training.trainer import load_tuned_model, prepare_data

    start = _time.perf_counter()
    lm = load_tuned_model(recipe)
    prepared = prepare_data(recipe, lm)
    load = _time.perf_counter() - start
    images = trains_images(prepared.report)
    times = _timed_steps(*(_image_steps if images else _text_steps)(recipe, prepared, lm,
                                                                     steps), steps)
    step_seconds = float(np.median(times[1:]))
    samples, task_rows = _evaluation_items(recipe, prepared, lm if images else None)
    generator, time_batch = StreamingGenerator(lm), (_time_images if images else _time_batch)
    timed = [time_batch(generator, rows[:GENERATION_BATCH], tokens)
             for rows in (samples or [{"prompt": "Hello"}], task_rows) if rows]
    token_seconds, sample_compile = timed[0]
    task_token_seconds, task_compile = timed[1] if task_rows else (None, 0.0)
    return Calibration(load, max(0.0, times[0] - step_seconds), step_seconds, token_seconds,
                       task_token_seconds, sample_compile + task_compile)


def _text_steps(recipe, prepared, lm, steps: int):
    """(train functions, the batch of a step) as a text run builds them."""
    from gemma_panel.training.batches import batch_at, build_sequences, max_loss_tokens
    from gemma_panel.training.step import TrainFunctions

    t = recipe.train
    seq = build_sequences(prepared.train_tokens, recipe.data.sequence_length,
                          recipe.data.pack, recipe.data.seed)
    fns = TrainFunctions(lm, recipe, steps + 1, max_loss_tokens(seq, t.batch_size), 128)

    def batch(step):
        b = batch_at(seq, step, t.batch_size, t.gradient_accumulation, recipe.data.seed)
        return b.inputs, b.targets, b.loss_mask, b.segment_ids

    return fns, batch


def _image_steps(recipe, prepared, lm, steps: int):
    """(train functions, the batch of a step) as an image run builds them: one example a
    row, the pixels read and converted per batch."""
    from gemma_panel.training.batches import batch_at, max_loss_tokens
    from gemma_panel.training.vision import VisionTrainFunctions, image_sequences

    t = recipe.train
    rows, _ = image_sequences(recipe, prepared, lm)
    fns = VisionTrainFunctions(lm, recipe, steps + 1, max_loss_tokens(rows, t.batch_size))

    def batch(step):
        return batch_at(rows, step, t.batch_size, t.gradient_accumulation,
                        recipe.data.seed).arrays()

    return fns, batch


def _timed_steps(fns, batch, steps: int) -> list[float]:
    """Seconds of each of ``steps + 1`` optimizer steps (the first compiles)."""
    import jax

    trainable, opt_state, frozen = fns.initial_state()
    key, times = jax.random.PRNGKey(0), []
    for step in range(steps + 1):
        arrays = batch(step)
        begin = _time.perf_counter()
        trainable, opt_state, metrics = fns.train_step(trainable, opt_state, frozen, arrays,
                                                       key)
        jax.block_until_ready(metrics["loss"])
        times.append(_time.perf_counter() - begin)
    return times


def _evaluation_items(recipe, prepared, image_lm=None) -> tuple[list[dict], list[dict]]:
    """The evaluation's samples and task rows; an image run's marked for ``image_lm``."""
    if image_lm is not None:
        from gemma_panel.training.vision_samples import image_sample_items

        return image_sample_items(prepared, recipe, image_lm)
    from gemma_panel.training.samples import sample_items

    return sample_items(prepared, recipe)


def _time_images(generator, items: list[dict], tokens: int) -> tuple[float, float]:
    """``_time_batch`` for an image run's items, answered by KerasHub's generate function
    with their images (``vision_samples.image_answers``), counted as ``tokens`` steps."""
    from gemma_panel.training.vision_samples import image_answers

    begin = _time.perf_counter()
    image_answers(generator.lm, items, tokens, generator.stop_ids)  # compiles
    first = _time.perf_counter() - begin
    begin = _time.perf_counter()
    image_answers(generator.lm, items, tokens, generator.stop_ids)
    seconds = _time.perf_counter() - begin
    return seconds / tokens, max(0.0, first - seconds)


def _time_batch(generator, items: list[dict], tokens: int) -> tuple[float, float]:
    """(seconds per decoding step, compiling seconds) of generating the items' answers
    together, as an evaluation does (``training.samples.answers``)."""
    from gemma_panel.models.generation import SamplingOptions

    prompts = [item["prompt"] for item in items]
    options = SamplingOptions(max_new_tokens=tokens)
    begin = _time.perf_counter()
    generator.generate_ids_many(prompts, options)  # compiles
    first = _time.perf_counter() - begin
    begin = _time.perf_counter()
    ids = generator.generate_ids_many(prompts, options)
    seconds = _time.perf_counter() - begin
    longest = max(len(row) for row in ids)
    decoded = longest + (longest < tokens)  # the step that produced every row's stop
    return seconds / max(1, decoded), max(0.0, first - seconds)
