"""Training speed on this machine's accelerator: tokens/s and MFU against the chip's bf16 peak.

    python benchmarks/accelerator.py                 # GPU or TPU: 270M and 1B shapes
    python benchmarks/accelerator.py --quick         # any CPU: tiny shapes, a smoke run
    python benchmarks/accelerator.py --models 1b --modes lora --batches 8,16 \
        --lengths 512 memory.remat=true              # any recipe field after the options

The same script on a GPU, a TPU or a CPU. Models are Gemma 3 shaped with random weights (the
speed of a step does not depend on the values): ``270m`` (Gemma 3 270M's shape: 18 layers,
hidden 640, 262k vocabulary) and ``1b`` (Gemma 3 1B's: 26 layers, hidden 1152). For each
model, mode (``lora``: the recipe's LoRA on frozen weights; ``full``: every weight trained),
batch size and sequence length, gemma_panel's own jitted train step (training/step.py) runs
one step to compile, then ``--steps`` timed steps on rows of real tokens only (every
position carries loss). Reported per row: tokens/s, step time, model FLOPs per step
(gemma_panel/training/flops.py: matmuls only, the LM head at loss positions) and MFU = achieved FLOP/s
over the chip's dense bf16 peak (a table of published peaks by device kind; for another
accelerator a bf16 matmul measured here, and on a CPU a float32 one; the output says which),
and the
device's peak memory where JAX reports it. Last, the whole table as JSON.

On a machine of several devices, one device runs the step (the distribution tests cover
sharding). Computation in bfloat16 (``model.dtype=mixed_bfloat16``: float32 weights and
optimizer) on an accelerator, float32 with --quick.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gemma_panel  # noqa: F401  (sets KERAS_BACKEND=jax before Keras is imported)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemma_panel.training.flops import Shape, training_flops

GEMMA3 = {"query_head_dim_normalize": True, "use_query_key_norm": True,
          "use_post_ffw_norm": True, "use_post_attention_norm": True,
          "use_sliding_window_attention": True, "image_size": 896, "layer_norm_epsilon": 1e-6}
_KEYS = ("vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads",
         "hidden_dim", "intermediate_dim", "head_dim", "sliding_window_size")
SHAPES = {name: dict(zip(_KEYS, sizes)) for name, sizes in {
    "270m": (262144, 18, 4, 1, 640, 2048, 256, 512),
    "1b": (262144, 26, 4, 1, 1152, 6912, 256, 512),
    "tiny": (512, 2, 2, 1, 64, 128, 32, 32),
    "small": (4096, 4, 4, 1, 256, 512, 64, 64),
}.items()}
# Dense bf16 peak FLOP/s per device, from the vendors' data sheets, by jax device_kind.
PEAK_BF16 = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12, "TPU7x": 2307e12,
    "NVIDIA H200": 989e12, "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A100-SXM4-40GB": 312e12, "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12, "NVIDIA A10G": 70e12, "NVIDIA B200": 2250e12,
}


def chip_peak(device) -> tuple[float, str]:
    """(peak bf16 FLOP/s, where it comes from) for ``device``; a CPU's is its float32 matmul
    measured here (XLA does not use a CPU's bf16 units, so bf16 is the slower there)."""
    kind = device.device_kind
    if device.platform == "cpu":
        return measured_peak(device, "float32"), "measured float32 matmul (CPU)"
    for name in sorted(PEAK_BF16, key=len, reverse=True):  # the most specific name first
        if kind.startswith(name):
            return PEAK_BF16[name], f"data sheet ({name})"
    return measured_peak(device, "bfloat16"), "measured bf16 matmul"


def measured_peak(device, dtype: str) -> float:
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jax.device_put(jnp.ones((n, n), dtype), device)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - began)
    return 2 * n**3 / best


def build(model: str, mode: str, recipe):
    """A random Gemma 3 of ``model``'s shape, LoRA'd (or fully trainable) as the recipe says."""
    import keras
    from keras_hub.models import Gemma3Backbone

    from gemma_panel.models.lora import enable_lora, quantize_int8

    keras.utils.set_random_seed(0)
    backbone = Gemma3Backbone(**GEMMA3, **SHAPES[model], dtype=recipe.model.dtype)
    if mode == "lora":
        if recipe.memory.base_weights == "int8":
            quantize_int8(backbone)
        lo = recipe.lora
        enable_lora(backbone, lo.rank, lo.alpha, lo.target_layers)
    else:
        backbone.trainable = True
    return backbone


class _LM:  # what TrainFunctions reads of a causal LM
    def __init__(self, backbone):
        self.backbone = backbone


def measure(model: str, mode: str, batch: int, length: int, steps: int, overrides) -> dict:
    """Compile one step, then time ``steps`` steps; the row of the table."""
    import jax
    import numpy as np

    from gemma_panel.config import load_recipe
    from gemma_panel.training.step import TrainFunctions

    recipe = load_recipe(None, [f"train.batch_size={batch}", f"data.sequence_length={length}",
                                f"lora.enabled={mode == 'lora'}", "train.warmup_steps=0",
                                *overrides])
    backbone = build(model, mode, recipe)
    tokens = batch * length
    functions = TrainFunctions(_LM(backbone), recipe, steps + 1, tokens, tokens)
    trainable, opt_state, frozen = functions.initial_state()
    rng = np.random.default_rng(0)
    ids = rng.integers(1, backbone.vocabulary_size, (1, batch, length + 1)).astype("int32")
    ones = np.ones((1, batch, length), "int32")
    arrays = (ids[..., :-1], ids[..., 1:], ones, ones)
    key = jax.random.PRNGKey(0)
    began = time.perf_counter()
    trainable, opt_state, out = functions.train_step(trainable, opt_state, frozen, arrays, key)
    float(out["loss"])
    compile_s = time.perf_counter() - began
    times = []
    for i in range(steps):
        began = time.perf_counter()
        trainable, opt_state, out = functions.train_step(
            trainable, opt_state, frozen, arrays, jax.random.fold_in(key, i))
        float(out["loss"])
        times.append(time.perf_counter() - began)
    step_s = float(np.median(times))
    flops = training_flops(Shape.of(backbone), [(length, length)] * batch, full=mode == "full")
    stats = jax.devices()[0].memory_stats() or {}
    return {"model": model, "mode": mode, "batch": batch, "length": length,
            "tokens_per_s": tokens / step_s, "step_s": step_s, "compile_s": compile_s,
            "flops_per_step": flops, "achieved_tflops": flops / step_s / 1e12,
            "loss": float(out["loss"]),
            "peak_memory_gib": stats.get("peak_bytes_in_use", 0) / 2**30 or None}


def table(rows: list[dict], peak: float) -> str:
    head = (f"{'model':>6} {'mode':>5} {'batch':>5} {'len':>5} {'tokens/s':>10} "
            f"{'step s':>8} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        memory = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] else "-"
        lines.append(f"{r['model']:>6} {r['mode']:>5} {r['batch']:>5} {r['length']:>5} "
                     f"{r['tokens_per_s']:>10.0f} {r['step_s']:>8.3f} "
                     f"{r['achieved_tflops']:>8.2f} {r['mfu']:>6.1%} {memory:>8}")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, float32, 3 steps: a smoke run on any CPU")
    parser.add_argument("--models", help="comma-separated: 270m, 1b, small, tiny")
    parser.add_argument("--modes", default="lora,full", help="lora, full or both")
    parser.add_argument("--batches", help="batch sizes, e.g. 4,16")
    parser.add_argument("--lengths", help="sequence lengths, e.g. 256,1024")
    parser.add_argument("--steps", type=int, help="timed steps per row (after compiling)")
    parser.add_argument("--json", help="also write the JSON here")
    parser.add_argument("overrides", nargs="*", help="recipe fields, SECTION.FIELD=VALUE")
    args = parser.parse_args(argv)

    import jax

    quick = args.quick
    models = (args.models or ("tiny,small" if quick else "270m,1b")).split(",")
    batches = _ints(args.batches or ("2,4" if quick else "8,32"))
    lengths = _ints(args.lengths or ("64,128" if quick else "256,1024"))
    steps = args.steps or (3 if quick else 5)
    dtype = "float32" if quick or jax.default_backend() == "cpu" else "mixed_bfloat16"
    overrides = [f"model.dtype={dtype}", *args.overrides]
    device = jax.devices()[0]
    peak, peak_source = chip_peak(device)
    rows = []
    for model in models:
        for mode in args.modes.split(","):
            for batch in batches:
                for length in lengths:
                    row = measure(model, mode, batch, length, steps, overrides)
                    row["mfu"] = row["achieved_tflops"] * 1e12 / peak
                    rows.append(row)
                    print(f"  {model} {mode} batch {batch} length {length}: "
                          f"{row['tokens_per_s']:.0f} tokens/s", file=sys.stderr, flush=True)
    report = {"device": f"{jax.default_backend()} {device.device_kind}",
              "devices": jax.device_count(), "peak_tflops": peak / 1e12,
              "peak_source": peak_source, "dtype": dtype, "overrides": args.overrides,
              "rows": rows}
    print(f"{report['device']} ({report['devices']} devices; one used), peak "
          f"{peak / 1e12:.1f} TFLOP/s ({peak_source}), computing in {dtype}")
    print(table(rows, peak))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
