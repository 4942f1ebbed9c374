"""Hugging Face export: safetensors, config and tokenizer that ``transformers`` loads.

KerasHub's exporter (``CausalLM.export_to_transformers``) writes ``config.json``,
``model.safetensors``, ``generation_config.json``, ``tokenizer.model``,
``tokenizer_config.json`` and ``special_tokens_map.json``. It reads each layer's base kernel,
so the model must be merged first (an unmerged LoRA is silently dropped, DESIGN.md). Gaps it
leaves and this module fills: the chat template (so ``apply_chat_template`` works), the
end-of-turn token as a stop token in ``generation_config.json``, and the dtype name. For
Gemma 4 (``gemma4_text``) also what its config leaves out and transformers needs to compute
the same model and for it to load back through ``load_model`` (`gemma_panel.export.hf_gemma4`);
the turn markers are Gemma 4's ``<|turn>``/``<turn|>``.

Verified with ``AutoTokenizer`` (the probe tokenizes to our ids) and
``AutoModelForCausalLM`` (logits within 1e-3, identical greedy continuations, and, for a
LoRA run, logits measurably closer to the tuned model than to the base model written and
loaded the same way: ``verify.carries_lora``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gemma_panel.export.hf_gemma4 import completed_gemma4_config, write_tokenizer_files
from gemma_panel.export.verify import (
    PROBE_TEXT,
    LoraBase,
    Verification,
    check_carries_lora,
    compare_logits,
    keras_greedy,
    torch_greedy,
    torch_logits,
)

HF_TOLERANCE = 1e-3
GREEDY_TOKENS = 8
# Text whose tokens a rebuilt tokenizer gets wrong first: whitespace runs, newlines,
# accents, digits and a turn marker.
TOKENIZER_PROBE = "  Hello\n\nworld!  Café naïve 12345 <start_of_turn>user\nhi<end_of_turn>"


def turn_markers_of(model) -> tuple[tuple[str, str], int]:
    """The model's (start, end) turn markers and the end marker's id (Gemma 4's or 1-3's)."""
    from gemma_panel.data.report import DatasetError
    from gemma_panel.data.tokenizer import KerasHubTokenizer

    try:
        tokenizer = KerasHubTokenizer(model.preprocessor.tokenizer)
    except DatasetError:  # a vocabulary without turn tokens: no end-of-turn stop
        return ("<start_of_turn>", "<end_of_turn>"), None
    return tokenizer.turn_pieces, tokenizer.end_of_turn_id


def tokenizer_probe(model) -> str:
    """`TOKENIZER_PROBE` with the model's own turn markers."""
    (start, end), _ = turn_markers_of(model)
    return TOKENIZER_PROBE.replace("<start_of_turn>", start).replace("<end_of_turn>", end)


def write_hf_folder(model, folder: Path, chat_template: str | None) -> None:
    """KerasHub's transformers export of ``model`` (merged), with the gaps filled."""
    folder = Path(folder)
    model.export_to_transformers(str(folder))
    tokenizer = model.preprocessor.tokenizer
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    dtype = str(config.get("torch_dtype", "float32"))
    config["torch_dtype"] = "bfloat16" if "bfloat16" in dtype else "float32"
    if config.get("model_type") == "gemma4_text":
        config = completed_gemma4_config(config, model.backbone, tokenizer)
        write_tokenizer_files(folder, tokenizer)
    config_path.write_text(json.dumps(config, indent=2) + "\n")

    _, end_of_turn = turn_markers_of(model)
    generation_path = folder / "generation_config.json"
    generation = json.loads(generation_path.read_text()) if generation_path.is_file() else {}
    eos = [tokenizer.end_token_id] + ([end_of_turn] if end_of_turn is not None else [])
    generation.update(bos_token_id=tokenizer.start_token_id, eos_token_id=eos,
                      pad_token_id=tokenizer.pad_token_id)
    generation_path.write_text(json.dumps(generation, indent=2) + "\n")

    if chat_template:
        tc_path = folder / "tokenizer_config.json"
        tokenizer_config = json.loads(tc_path.read_text())
        tokenizer_config["chat_template"] = chat_template
        tc_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")


def keras_token_ids(lm, text: str) -> list[int]:
    ids = [int(i) for i in np.asarray(lm.preprocessor.tokenizer(text)).reshape(-1)]
    return [lm.preprocessor.tokenizer.start_token_id] + ids


def load_hf(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()


def hf_logits(model, folder: Path, ids) -> np.ndarray:
    """Logits in transformers of ``model`` written as a Hugging Face folder into ``folder``."""
    write_hf_folder(model, folder, None)
    return torch_logits(load_hf(folder), ids)


def export_hf(model, folder: Path, check: Verification, ids, reference, tuned_lm,
              base: LoraBase | None = None,
              chat_template: str | None = None) -> Path:
    """Write the Hugging Face folder and verify it in transformers.

    Args:
        model: the merged model to write.
        tuned_lm: the model whose greedy continuation must be reproduced (the tuned one).
        reference: logits of the tuned model on ``ids``.
        base: for LoRA runs, the base model (its logits, and a copy written and loaded the
            same way to measure transformers on it).
    """
    from transformers import AutoTokenizer

    write_hf_folder(model, folder, chat_template)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    for name, text in (("probe", PROBE_TEXT), ("whitespace_and_turns", tokenizer_probe(model))):
        ours = keras_token_ids(model, text)
        theirs = [int(i) for i in hf_tokenizer(text)["input_ids"]]
        check.check(f"autotokenizer_{name}", theirs == ours,
                    f"AutoTokenizer ids {'equal' if theirs == ours else 'differ from'} "
                    f"KerasHub's ({len(ours)} tokens)")
    hf_model = load_hf(folder)
    logits = torch_logits(hf_model, ids)
    compare_logits(check, "transformers_logits", logits, reference, HF_TOLERANCE)
    check_carries_lora(check, "transformers_carries_lora", folder, logits, reference, base,
                       lambda scratch: hf_logits(base.model, scratch, ids))
    ours = keras_greedy(tuned_lm, ids, GREEDY_TOKENS)
    theirs = torch_greedy(hf_model, ids, GREEDY_TOKENS)
    check.check("greedy_generation", ours == theirs,
                f"{GREEDY_TOKENS} greedy tokens {'identical' if ours == theirs else 'differ'}: "
                f"KerasHub {ours[ids.shape[1]:]}, transformers {theirs[ids.shape[1]:]}",
                keras=ours[ids.shape[1]:], transformers=theirs[ids.shape[1]:])
    if chat_template:
        rendered = hf_tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
        (start, _), _ = turn_markers_of(model)
        check.check("chat_template", rendered.endswith(f"{start}model\n"),
                    f"apply_chat_template renders the model's {start} turns")
    return Path(folder)
