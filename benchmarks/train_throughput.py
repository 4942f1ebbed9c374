"""Training throughput: our trainer vs the KerasHub guide's ``fit`` baseline, Gemma 3 270M.

    python benchmarks/train_throughput.py [--epochs 1] [--recipe recipes/quickstart.yaml]

Both train rank-8 LoRA on the same training split of the quickstart data, sequence length
256, batch 4, for the same number of epochs (so the same real tokens), with the same peak
learning rate. Reported: real (non-padding) tokens/s after compilation, model FLOP
utilisation against the float32 matmul peak measured here, and validation loss on the same
held-out rows measured by the same code. The baseline is the KerasHub Gemma LoRA guide:
``backbone.enable_lora(rank)``, ``preprocessor.sequence_length``, Keras AdamW, ``fit`` on
prompts/responses (loss on the response only), batch 4.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import gemma_panel  # noqa: F401  (sets KERAS_BACKEND=jax before Keras is imported)


def matmul_peak_gflops() -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((2048, 2048), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


class Timings:
    """A sink that keeps step times and real tokens (first step = compilation, dropped)."""

    def __init__(self):
        self.steps, self.val_loss = [], None

    def on_start(self, info): pass
    def on_samples(self, step, samples): pass
    def on_checkpoint(self, step, path, best): pass
    def on_log(self, message): pass
    def on_end(self, status, message): pass

    def on_metrics(self, step, tokens, metrics):
        if "step_time_s" in metrics:
            self.steps.append((metrics["step_time_s"], metrics["tokens_per_s"]
                               * metrics["step_time_s"]))
        if "val_loss" in metrics:
            self.val_loss = metrics["val_loss"]


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


def run_baseline(recipe):
    import keras
    import numpy as np

    from gemma_panel.models import load_model
    from gemma_panel.training.batches import build_sequences, max_loss_tokens
    from gemma_panel.training.step import StepFunctions
    from gemma_panel.training.trainer import prepare_data

    keras.utils.set_random_seed(recipe.train.seed)
    lm = load_model(recipe.model.source, progress=False)
    prepared = prepare_data(recipe, lm)  # the same split and tokens as our trainer's
    lm.backbone.enable_lora(rank=recipe.lora.rank)
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
    real = [min(len(t.input_ids), recipe.data.sequence_length) for t in prepared.train_tokens]
    batch = recipe.train.batch_size

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch_index, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch_index, logs=None):
            self.times.append(time.perf_counter() - self.start)

    clock = Clock()
    epochs = max(1, round(recipe.train.epochs))
    lm.fit({"prompts": prompts, "responses": responses}, epochs=epochs, batch_size=batch,
           callbacks=[clock], verbose=0)
    tokens_per_batch = float(np.mean(real)) * batch
    rate = tokens_per_batch * (len(clock.times) - 1) / sum(clock.times[1:])
    # Validation loss with the same evaluator as ours, on the baseline's own LoRA weights.
    val = build_sequences(prepared.validation_tokens, recipe.data.sequence_length, True, 0)
    steps = StepFunctions(lm, recipe, 1, 128, max_loss_tokens(val, batch))
    trainable, _, frozen = steps.initial_state()
    val_loss = steps.evaluate(trainable, frozen, val, batch)["val_loss"]
    return rate, val_loss, int(sum(real) * epochs)


def run_part(part: str, recipe) -> None:
    """Run one trainer in this process and print its figures as JSON (one model per process:
    two KerasHub tokenizers in one process confuse tensorflow-text's resources)."""
    rate, val, tokens = (run_ours if part == "ours" else run_baseline)(recipe)
    print("RESULT " + json.dumps({"rate": rate, "val_loss": val, "tokens": tokens}))


def in_subprocess(part: str, args) -> tuple[float, float, int]:
    out = subprocess.run([sys.executable, __file__, "--part", part, "--recipe", args.recipe,
                          "--epochs", str(args.epochs), *args.overrides], capture_output=True, text=True,
                         check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the {part} run failed:\n{out.stderr[-3000:]}")
    data = json.loads(line[len("RESULT "):])
    return data["rate"], data["val_loss"], data["tokens"]


def main() -> None:
    from gemma_panel.config import load_recipe
    from gemma_panel.models.registry import MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--part", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="recipe overrides for both trainers")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, [
        f"train.epochs={args.epochs}", "eval.every_steps=100000", "eval.num_samples=0",
        "eval.task_examples=0", "train.checkpoint_every=100000", "eval.max_examples=null",
        *args.overrides,
    ])
    if args.part:
        run_part(args.part, recipe)
        return
    spec = MODELS["gemma3-270m"]
    peak = matmul_peak_gflops()
    ours_rate, ours_val, ours_tokens = in_subprocess("ours", args)
    base_rate, base_val, base_tokens = in_subprocess("baseline", args)
    # Useful FLOPs per real token, the same for both trainers (same data, same model): the
    # body's matmuls forward and their input gradients backward (4 x parameters; frozen
    # weights need no weight gradient), and the LM head at the share of tokens with loss.
    body = spec.params - spec.embedding_params
    loss_share = 0.74  # loss tokens / real tokens of the quickstart data (measured)
    flops_per_token = 4 * body + 4 * spec.embedding_params * loss_share
    rows = [("gemma_panel trainer", ours_rate, ours_val, ours_tokens),
            ("KerasHub fit (guide)", base_rate, base_val, base_tokens)]
    print(f"\nmatmul peak (float32, 2048^3): {peak:.0f} GFLOP/s; "
          f"model FLOPs per real token: {flops_per_token / 1e9:.2f} GFLOP")
    print(f"{'trainer':<24}{'real tok/s':>12}{'MFU':>8}{'val loss':>10}{'tokens':>9}")
    for name, rate, val, tokens in rows:
        mfu = rate * flops_per_token / (peak * 1e9)
        print(f"{name:<24}{rate:>12.1f}{mfu:>8.1%}{val:>10.4f}{tokens:>9}")
    print(f"speed-up: {ours_rate / base_rate:.2f}x real tokens/s (target >= 2x); validation "
          f"loss {ours_val:.4f} vs {base_val:.4f} "
          f"({'equal or lower' if ours_val <= base_val + 1e-3 else 'HIGHER'})")


if __name__ == "__main__":
    main()
