"""The LoRA adapter alone in PEFT's format (``adapter_config.json`` + safetensors).

How KerasHub's LoRA maps onto PEFT's, exactly:

* Feed-forward layers and ``attention_output``: Keras keeps ``A`` (kernel rows x r) and ``B``
  (r x kernel columns) with ``delta = (alpha/r) A B`` on a kernel that is the transpose of the
  Hugging Face weight, so PEFT's ``lora_A = Aᵀ`` (flattened over heads for the output
  projection) and ``lora_B = Bᵀ``, same rank and alpha.
* ``query`` / ``key`` / ``value``: the kernel is (heads, hidden, head_dim), and Keras's
  ``A`` is (heads, hidden, r) with one ``B`` (r, head_dim) shared by all heads, so each head
  has its own rank-r update. Over the flattened (heads*head_dim, hidden) weight that is a
  rank ``heads*r`` update: PEFT's ``lora_A`` stacks the heads' ``Aᵀ`` (heads*r, hidden) and
  ``lora_B`` is block-diagonal with ``Bᵀ`` on the diagonal. PEFT's scale ``alpha'/r'`` must stay
  ``alpha/r``, so ``r' = heads*r`` and ``alpha' = heads*alpha``, per module through
  ``rank_pattern`` / ``alpha_pattern``. Gemma 3 270M has one key/value head, so only the query
  grows (4r).

LoRA dropout has no effect on inference and is written as 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gemma_panel.export.manifest import ExportError
from gemma_panel.export.verify import (
    LoraBase,
    Verification,
    carries_lora,
    compare_logits,
    torch_logits,
)
from gemma_panel.models.lora import lora_layers

HF_MODULES = {
    "query": "self_attn.q_proj", "key": "self_attn.k_proj", "value": "self_attn.v_proj",
    "attention_output": "self_attn.o_proj", "ffw_gating": "mlp.gate_proj",
    "ffw_gating_2": "mlp.up_proj", "ffw_linear": "mlp.down_proj",
}
_PER_HEAD = {"query", "key", "value"}


def peft_factors(layer) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(lora_A, lora_B, rank, alpha) in PEFT's layout for one Keras LoRA layer."""
    a = np.asarray(layer.lora_kernel_a.value, dtype=np.float32)
    b = np.asarray(layer.lora_kernel_b.value, dtype=np.float32)
    rank, alpha = int(layer.lora_rank), float(layer.lora_alpha)
    if layer.name in _PER_HEAD:
        heads, hidden, _ = a.shape  # (heads, hidden, r); B is (r, head_dim)
        head_dim = b.shape[1]
        lora_a = np.transpose(a, (0, 2, 1)).reshape(heads * rank, hidden)
        lora_b = np.zeros((heads * head_dim, heads * rank), dtype=np.float32)
        for h in range(heads):
            lora_b[h * head_dim:(h + 1) * head_dim, h * rank:(h + 1) * rank] = b.T
        return lora_a, lora_b, heads * rank, heads * alpha
    lora_a = a.reshape(-1, rank).T  # (r, in): rows of the kernel are the HF input features
    return lora_a, b.T, rank, alpha


def _blocks(lm):
    backbone = lm.backbone
    return [backbone.get_layer(f"decoder_block_{i}") for i in range(backbone.num_layers)]


def write_peft_adapter(lm, folder: Path, base_model: str | None) -> dict:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors``; return the config."""
    from safetensors.numpy import save_file

    if type(lm.backbone).__name__ != "Gemma3Backbone":
        raise ExportError("PEFT adapters are written for Gemma 3 models only; export the "
                          "merged model ('hf') instead.")
    tensors, ranks, alphas = {}, {}, {}
    targets = set()
    # transformers loads a Gemma 3 with a vision tower as Gemma3ForConditionalGeneration,
    # whose decoder layers sit under model.language_model.
    has_vision = getattr(lm.backbone, "vision_encoder", None) is not None
    layers = "model.language_model.layers" if has_vision else "model.layers"
    for index, block in enumerate(_blocks(lm)):
        for layer in lora_layers(block):
            if layer.name not in HF_MODULES:
                raise ExportError(f"LoRA on layer '{layer.name}' has no PEFT equivalent.")
            module = HF_MODULES[layer.name]
            lora_a, lora_b, rank, alpha = peft_factors(layer)
            prefix = f"base_model.model.{layers}.{index}.{module}"
            tensors[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(lora_a)
            tensors[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(lora_b)
            short = module.split(".")[-1]
            targets.add(short)
            ranks[short], alphas[short] = rank, alpha
    if not tensors or len(tensors) // 2 != len(lora_layers(lm)):
        raise ExportError("Some LoRA layers sit outside the decoder blocks; PEFT cannot hold "
                          "them. Export the merged model ('hf') instead.")
    base_rank = min(ranks.values())
    base_alpha = next(alphas[m] for m in ranks if ranks[m] == base_rank)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": base_rank, "lora_alpha": base_alpha, "lora_dropout": 0.0, "bias": "none",
        "target_modules": sorted(targets), "fan_in_fan_out": False, "use_rslora": False,
        "use_dora": False, "inference_mode": True, "init_lora_weights": True,
        "rank_pattern": {m: r for m, r in ranks.items() if r != base_rank},
        "alpha_pattern": {m: a for m, a in alphas.items() if a != base_alpha},
        "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None,
    }
    folder = Path(folder)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def export_peft(lm, folder: Path, check: Verification, ids, reference, base_hf_folder: Path,
                base_model: str | None, base: LoraBase | None = None) -> Path:
    """Write the adapter, then load base (Hugging Face folder) + adapter with PEFT.

    ``base_hf_folder`` holds the base model in Hugging Face format (the caller writes it
    from the unmerged model, whose exporter leaves LoRA out: exactly the base weights).
    Base + adapter must be within 1e-3 of the tuned model and carry the LoRA measurably
    (``carries_lora`` against the same base model in transformers without the adapter).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    write_peft_adapter(lm, folder, base_model)
    base_hf = AutoModelForCausalLM.from_pretrained(str(base_hf_folder), dtype=torch.float32)
    base_logits = torch_logits(base_hf.eval(), ids)
    tuned = PeftModel.from_pretrained(base_hf, str(folder)).eval()
    logits = torch_logits(tuned, ids)
    compare_logits(check, "peft_logits", logits, reference, 1e-3)
    if base is not None:  # the consumer's base: the same transformers model, no adapter
        carries_lora(check, "peft_changes_base", logits, reference, base.logits, base_logits)
    return Path(folder)
