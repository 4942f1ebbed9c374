"""Training throughput: our trainer vs the KerasHub guide's ``fit`` baseline, Gemma 3 270M.

    python benchmarks/train_throughput.py [--epochs 1] [--recipe recipes/quickstart.yaml]
        [--no-ablation | --parts ours,factored,... | --quality [--variant "A=1 B=2"]]
        [SECTION.FIELD=VALUE ...]

Every trainer trains the recipe's LoRA (rank, alpha, target layers) on the same training
split of the quickstart data, sequence length 256, for the same number of epochs (so the
same real tokens), with the same peak learning rate. Reported: real (non-padding) tokens/s
after compilation, model FLOP utilisation (gemma_panel/training/flops.py counts the model
FLOPs from the backbone and the examples: the same useful work for every trainer) against
the float32 matmul peak the trainer measures (cached in GEMMA_PANEL_HOME), and validation
loss on the same held-out rows measured by the same code. The baseline is the KerasHub Gemma
LoRA guide: ``backbone.enable_lora(rank)`` (with the recipe's alpha set on each LoRA layer,
as ours), ``preprocessor.sequence_length``, Keras AdamW, ``fit`` on prompts/responses (loss
on the response only).

The ablation runs our trainer without each of its speed-ups, so the table says where the
speed comes from: packing alone (the LM head at every position, as the baseline computes
it), the head at loss positions alone (``data.pack=false``: one example per row), neither,
and LoRA through the rank (``x W + (alpha/r) (x A) B``) instead of Keras's merged kernel
``W + (alpha/r) A B``. Two rows run ours and the baseline at batch 1 whatever the command
line's ``train.batch_size`` (``batch1``, ``baseline_batch1``: the quickstart's setting, where
packing's fewer updates cost least), and ``previous`` runs our step at batch 1 as the speed
issue found it (its loss-position bound rounded to 128, not 16), for the side-by-side ratio;
each row's "vs fit" is against the baseline at its own batch size. ``--parts`` also runs rows left out by default: ``all`` and
``all_factored`` (every projection adapted, merged and factored), ``onednn``, ``bf16`` and
``mixed_bf16`` (XLA's oneDNN CPU path on, in float32, bfloat16 and mixed_bfloat16). Each
trainer runs in a process of its own; the 270M takes minutes per row.
``--quality`` measures time to quality instead (train_quality.py): the wall time ours at the
recipe's setting and the baseline at batch 1 need to reach the baseline's validation loss
after ``--epochs``, and a lower one; ``--variant`` adds runs of ours with other settings.
Try the script on a tiny model with ``model.source=PATH.gguf``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import gemma_panel  # noqa: F401  (sets KERAS_BACKEND=jax before Keras is imported)
from gemma_panel.training.events import NullSink


class Timings(NullSink):
    """A sink that keeps step times and real tokens (first step = compilation, dropped)."""

    def __init__(self):
        self.steps, self.val_loss = [], None

    def on_metrics(self, step, tokens, metrics):
        if "step_time_s" in metrics:
            self.steps.append((metrics["step_time_s"], metrics["tokens_per_s"]
                               * metrics["step_time_s"]))
        if "val_loss" in metrics:
            self.val_loss = metrics["val_loss"]


def head_at_every_position() -> None:
    """The ablation's switch: the trainer gathers every position for the LM head (the
    baseline's cost) instead of the loss positions only."""
    from gemma_panel.training import trainer

    trainer.max_loss_tokens = lambda sequences, batch_size, multiple=128: \
        batch_size * sequences.inputs.shape[1]


def factored_lora() -> None:
    """The ablation's switch: LoRA through the rank, ``x W + (alpha/r) (x A) B``, instead of
    the merged kernel ``W + (alpha/r) A B`` Keras forms every call (the trainer's default
    until this benchmark shows the factored path faster)."""
    from gemma_panel.training.keras_internals import lora_factored
    from gemma_panel.training.step import TrainFunctions

    TrainFunctions.lora_forward_pass = staticmethod(lora_factored)


def previous_step_path() -> None:
    """The ablation's switch: the step as the speed issue found it, its loss-position bound
    rounded up to 128 rather than 16 (at the quickstart's setting, the head at 256
    positions rather than 208; the rest of the step path is unchanged since)."""
    from gemma_panel.training import batches, trainer

    trainer.max_loss_tokens = lambda sequences, batch_size, multiple=128: \
        batches.max_loss_tokens(sequences, batch_size, 128)


SWITCHES = {"head": head_at_every_position, "factored": factored_lora,
            "previous": previous_step_path,
            "onednn": lambda: None}  # set in the subprocess's environment (in_subprocess)


def run_ours(recipe):
    import tempfile

    from gemma_panel.training import train

    sink = Timings()
    with tempfile.TemporaryDirectory() as run_dir:
        train(recipe, run_dir, sink)
    timed = sink.steps[1:]
    seconds = sum(s for s, _ in timed)
    tokens = sum(n for _, n in timed)
    return tokens / seconds, sink.val_loss, sum(n for _, n in sink.steps)


def run_baseline(recipe, curve=False):
    import jax
    import keras
    import numpy as np

    from gemma_panel.models import load_model
    from gemma_panel.models.lora import enable_lora
    from gemma_panel.training.batches import build_sequences, max_loss_tokens
    from gemma_panel.training.step import TrainFunctions
    from gemma_panel.training.trainer import prepare_data

    keras.utils.set_random_seed(recipe.train.seed)
    lm = load_model(recipe.model.source, progress=False)
    prepared = prepare_data(recipe, lm)  # the same split and tokens as our trainer's
    enable_lora(lm, recipe.lora.rank, recipe.lora.alpha,  # the same update scale as ours
                recipe.lora.target_layers)
    lm.preprocessor.sequence_length = recipe.data.sequence_length
    optimizer = keras.optimizers.AdamW(learning_rate=recipe.train.learning_rate,
                                       weight_decay=recipe.train.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "scale"])
    lm.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               optimizer=optimizer,
               weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()])
    prompts, responses = [], []
    for example in prepared.train:
        segments = prepared.template.segments(example)
        first = next(i for i, s in enumerate(segments) if s.trained)
        prompts.append("".join(s.text for s in segments[:first]))
        responses.append(segments[first].text + "<end_of_turn>")
    epochs = max(1, round(recipe.train.epochs))
    if recipe.train.epochs < 1:  # a fraction of an epoch: the first rows of the split
        keep = max(1, round(len(prompts) * recipe.train.epochs))
        prompts, responses = prompts[:keep], responses[:keep]
    real = [min(len(t.input_ids), recipe.data.sequence_length)
            for t in prepared.train_tokens[:len(prompts)]]
    batch = recipe.train.batch_size

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch_index, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch_index, logs=None):
            jax.block_until_ready(logs)  # the step's work, not its dispatch
            self.times.append(time.perf_counter() - self.start)

    clock = Clock()
    callbacks = [clock]
    if curve:  # evaluations every so many real tokens (train_quality.py)
        from train_quality import baseline_callback

        callbacks.append(baseline_callback(lm, recipe, prepared, clock))
    lm.fit({"prompts": prompts, "responses": responses}, epochs=epochs, batch_size=batch,
           callbacks=callbacks, verbose=0)
    if curve:
        return {"curve": callbacks[1].curve}
    tokens_per_batch = float(np.mean(real)) * batch
    rate = tokens_per_batch * (len(clock.times) - 1) / sum(clock.times[1:])
    # Validation loss with the same evaluator as ours, on the baseline's own LoRA weights.
    val = build_sequences(prepared.validation_tokens, recipe.data.sequence_length, True, 0)
    compiled = TrainFunctions(lm, recipe, 1, 128, max_loss_tokens(val, batch))
    trainable, _, frozen = compiled.initial_state()
    val_loss = compiled.evaluate(trainable, frozen, val, batch)["val_loss"]
    return rate, val_loss, int(sum(real) * epochs)


def run_flops(recipe):
    """Model FLOPs per real token of one epoch of the recipe's training split."""
    from gemma_panel.training.flops import Shape, training_flops
    from gemma_panel.training.trainer import load_tuned_model, prepare_data

    lm = load_tuned_model(recipe)
    prepared = prepare_data(recipe, lm)
    length = recipe.data.sequence_length
    examples = [(min(len(t.input_ids), length), int(sum(t.loss_mask[:length])))
                for t in prepared.train_tokens]
    flops = training_flops(Shape.of(lm.backbone), examples, full=not recipe.lora.enabled)
    real = sum(n for n, _ in examples)
    return flops / real, sum(m for _, m in examples) / real, real


EVERY_PROJECTION = ("lora.target_layers=[query,key,value,attention_output,ffw_gating,"
                    "ffw_gating_2,ffw_linear]")
ONEDNN = "--xla_cpu_use_onednn=true"  # XLA's oneDNN CPU path (AMX / AVX512-BF16)
BATCH_1 = "train.batch_size=1"  # the quickstart's; wins over the command line's (given last)
PARTS = {  # name: (row label, recipe overrides, SWITCHES to turn on)
    "ours": ("gemma_panel: all of them", [], ()),
    "packing": ("  packing alone", [], ("head",)),
    "head": ("  head at loss positions alone", ["data.pack=false"], ()),
    "neither": ("  neither", ["data.pack=false"], ("head",)),
    "factored": ("  LoRA through the rank (not the merged kernel)", [], ("factored",)),
    "batch1": ("gemma_panel at batch 1 (quickstart's)", [BATCH_1], ()),
    "previous": ("  the step path the speed issue found", [BATCH_1], ("previous",)),
    "all": ("every projection adapted, merged kernel", [EVERY_PROJECTION], ()),
    "all_factored": ("  every projection, through the rank", [EVERY_PROJECTION],
                     ("factored",)),
    "onednn": ("float32, XLA oneDNN on", [], ("onednn",)),
    "bf16": ("bfloat16, XLA oneDNN on", ["model.dtype=bfloat16"], ("onednn",)),
    "mixed_bf16": ("mixed_bfloat16, XLA oneDNN on", ["model.dtype=mixed_bfloat16"],
                   ("onednn",)),
}
OPTIONAL_PARTS = ("all", "all_factored", "onednn", "bf16", "mixed_bf16")  # --parts names them
BASELINES = {  # name: (row label, recipe overrides): the KerasHub guide's fit
    "baseline": ("KerasHub fit (guide), same LoRA", []),
    "baseline_batch1": ("KerasHub fit at batch 1", [BATCH_1]),
}
DEFAULT_PARTS = ("ours", "packing", "head", "neither", "factored", "baseline", "batch1",
                 "previous", "baseline_batch1")


def overrides_of(part: str) -> list[str]:
    return PARTS[part][1] if part in PARTS else BASELINES[part][1]


def versus(part: str) -> str:
    """The baseline row a row is compared with: the one at the same batch size."""
    batch = [o for o in overrides_of(part) if o.startswith("train.batch_size=")]
    return next(b for b, (_, extra) in BASELINES.items()
                if [o for o in extra if o.startswith("train.batch_size=")] == batch)


QUALITY = ("quality_baseline", "quality")  # --quality: time to a validation loss


def quality_part(part: str, recipe, args) -> dict:
    """One side of the time-to-quality comparison (train_quality.py), in this process."""
    import train_quality

    train_quality.EVAL_STEPS = args.eval_steps
    if part == "quality_baseline":
        return run_baseline(recipe, curve=True)
    from train_quality import ours_curve

    return ours_curve(recipe, args.stop_below, args.max_tokens)


def run_quality(args) -> None:
    """The baseline at batch 1 for --epochs, then ours at the recipe's own setting."""
    import train_quality

    from gemma_panel.config import load_recipe

    every = ["--eval-steps", str(args.eval_steps)]
    fit = in_subprocess("quality_baseline", args, [BATCH_1], every)
    print(f"fit: {json.dumps(fit)}", flush=True)  # each result as it comes: rows take minutes
    target = train_quality.LOWER * fit["curve"][-1][2]
    epochs = load_recipe(args.recipe, args.overrides).train.epochs  # its schedule, not --epochs
    ours = {}
    for variant in ["", *(args.variant or [])]:  # "": the recipe as it is
        ours[variant] = in_subprocess("quality", args, [f"train.epochs={epochs}",
                                                        *variant.split()], [
            *every, "--stop-below", str(target), "--max-tokens", str(2 * fit["curve"][-1][0])])
        print(f"ours {variant!r}: {json.dumps(ours[variant])}", flush=True)
    train_quality.report(fit, ours)


def run_part(part: str, recipe, args=None) -> None:
    """Run one trainer in this process and print its figures as JSON (one model per process:
    two KerasHub tokenizers in one process confuse tensorflow-text's resources)."""
    if part == "flops":
        per_token, loss_share, real = run_flops(recipe)
        print("RESULT " + json.dumps({"per_token": per_token, "loss_share": loss_share,
                                      "real": real}))
        return
    if part in QUALITY:
        print("RESULT " + json.dumps(quality_part(part, recipe, args)))
        return
    if part in BASELINES:
        rate, val, tokens = run_baseline(recipe)
    else:
        for switch in PARTS[part][2]:
            SWITCHES[switch]()
        rate, val, tokens = run_ours(recipe)
    print("RESULT " + json.dumps({"rate": rate, "val_loss": val, "tokens": tokens}))


def in_subprocess(part: str, args, extra=(), options=()) -> dict:
    env = dict(os.environ)
    if part in PARTS and "onednn" in PARTS[part][2]:  # XLA reads its flags at start-up
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {ONEDNN}".strip()
    out = subprocess.run([sys.executable, __file__, "--part", part, "--recipe", args.recipe,
                          "--epochs", str(args.epochs), *options, *args.overrides, *extra],
                         capture_output=True, text=True, check=False, env=env)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the {part} run failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    from gemma_panel.config import load_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--no-ablation", action="store_true",
                        help="only ours and the baseline (the ablation adds four runs)")
    parser.add_argument("--parts", help="comma-separated rows to run, of "
                        f"{', '.join([*PARTS, *BASELINES])} (default: "
                        f"{', '.join(DEFAULT_PARTS)})")
    parser.add_argument("--quality", action="store_true",
                        help="time to a target validation loss: ours at the recipe's setting "
                        "vs KerasHub fit at batch 1 (train_quality.py)")
    parser.add_argument("--eval-steps", type=int, default=11, help="with --quality: "
                        "evaluate every N packed sequences' worth of tokens (11: 8 an epoch)")
    parser.add_argument("--variant", action="append", help="with --quality: also run ours "
                        "with these recipe overrides (space-separated; repeatable)")
    parser.add_argument("--part", choices=["flops", *BASELINES, *PARTS, *QUALITY],
                        help=argparse.SUPPRESS)
    parser.add_argument("--stop-below", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--max-tokens", type=int, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="recipe overrides for every trainer")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, [
        f"train.epochs={args.epochs}", "eval.every_steps=100000", "eval.num_samples=0",
        "eval.task_examples=0", "train.checkpoint_every=100000", "eval.max_examples=null",
        *args.overrides,
    ])
    if args.part:
        run_part(args.part, recipe, args)
        return
    if args.quality:
        run_quality(args)
        return
    parts = ["ours", "baseline"] if args.no_ablation else list(DEFAULT_PARTS)
    if args.parts:
        parts = args.parts.split(",")
        unknown = [p for p in parts if p not in PARTS and p not in BASELINES]
        if unknown:
            parser.error(f"unknown --parts {unknown}; choose from "
                         f"{', '.join([*PARTS, *BASELINES])}")
    from gemma_panel.training.flops import measured_peak

    peak = measured_peak("float32")[0] / 1e9  # the trainer's, cached in GEMMA_PANEL_HOME
    # bfloat16 inputs with float32 accumulation: what AMX / AVX512-BF16 would give the step
    print(f"matmul peak, bfloat16 in, float32 out: {measured_peak('bfloat16')[0] / 1e9:.0f} "
          "GFLOP/s")
    flops = {}  # per set of LoRA overrides: the useful work differs with the adapted layers
    results = {}
    for part in parts:
        extra = overrides_of(part)
        lora = tuple(o for o in extra if o.startswith("lora."))
        if lora not in flops:
            flops[lora] = in_subprocess("flops", args, lora)
        results[part] = {**in_subprocess(part, args, extra), **flops[lora]}
    report(results, peak, flops[()] if () in flops else next(iter(flops.values())))


def report(results: dict, peak: float, flops: dict) -> None:
    per_token = flops["per_token"]
    print(f"\nmatmul peak (float32, 2048^3): {peak:.0f} GFLOP/s; model FLOPs per real token: "
          f"{per_token / 1e9:.3f} GFLOP ({flops['real']} real tokens an epoch, "
          f"{flops['loss_share']:.0%} with loss)")
    print(f"{'trainer':<38}{'real tok/s':>11}{'MFU':>7}{'vs fit':>8}{'val loss':>10}"
          f"{'tokens':>8}")
    for part, r in results.items():
        label = PARTS[part][0] if part in PARTS else BASELINES[part][0]
        base = results.get(versus(part), {}).get("rate", float("nan"))
        print(f"{label:<38}{r['rate']:>11.1f}{r['rate'] * r['per_token'] / (peak * 1e9):>7.1%}"
              f"{r['rate'] / base:>7.2f}x{r['val_loss']:>10.4f}{int(r['tokens']):>8}")
    if "batch1" in results and "baseline_batch1" in results:
        ours1, fit1 = results["batch1"], results["baseline_batch1"]
        print(f"batch 1: {ours1['rate'] / fit1['rate']:.2f}x real tokens/s; validation loss "
              f"{ours1['val_loss']:.4f} vs {fit1['val_loss']:.4f}")
    if "batch1" in results and "previous" in results:
        now, before = results["batch1"]["rate"], results["previous"]["rate"]
        print(f"batch 1, today's step vs the one the speed issue found: {now:.1f} vs "
              f"{before:.1f} real tokens/s ({now / before:.2f}x; target >= 1.3x)")
    ours = results.get("ours")
    for on, off, what in (("factored", "ours", "query/value"),
                          ("all_factored", "all", "every projection")):
        if on in results and off in results:
            print(f"LoRA factored vs merged kernel, {what}: {results[on]['rate']:.1f} vs "
                  f"{results[off]['rate']:.1f} real tokens/s "
                  f"({results[on]['rate'] / results[off]['rate']:.2f}x)")
    if ours is None or "baseline" not in results:
        return
    base_rate = results["baseline"]["rate"]
    print(f"speed-up: {ours['rate'] / base_rate:.2f}x real tokens/s (target >= 2x); validation "
          f"loss {ours['val_loss']:.4f} vs {results['baseline']['val_loss']:.4f} "
          f"({'equal or lower' if ours['val_loss'] <= results['baseline']['val_loss'] + 1e-3 else 'HIGHER'})")


if __name__ == "__main__":
    main()
