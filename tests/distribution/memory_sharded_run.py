"""The memory modes under fsdp on 8 host devices: 5 steps each, single device and fsdp.

Run in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``:
``python -m tests.distribution.memory_sharded_run``. The last stdout line is JSON: per
memory setting and strategy the 5 losses and the compiled step's argument bytes.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

SETTINGS = {"int8+remat": ["memory.base_weights=int8", "memory.remat=true"],
            "bfloat16+remat": ["memory.base_weights=bfloat16", "memory.remat=true"]}


def model(int8: bool):
    import keras
    import keras_hub

    from gemma_panel.models.lora import quantize_int8

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=512, image_size=16, num_layers=2, num_query_heads=4,
        num_key_value_heads=1, hidden_dim=64, intermediate_dim=128, head_dim=32,
        vision_encoder=None)
    if int8:  # as load_tuned_model does: quantize, then LoRA
        quantize_int8(backbone)
    backbone.enable_lora(4, target_layer_names=["query", "value", "ffw_linear"])
    return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)


def main() -> None:
    from gemma_panel.config import load_recipe
    from tests.distribution.sharded_run import BATCH, run

    out = {}
    for name, overrides in SETTINGS.items():
        recipe = load_recipe(None, [f"train.batch_size={BATCH}", "train.warmup_steps=0",
                                    *overrides])
        for strategy in ("single", "fsdp"):
            report, _ = run(strategy, model("int8" in name), recipe)
            out[f"{name}:{strategy}"] = {"losses": report["losses"],
                                         "argument_bytes": report["argument_bytes"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
