"""The short README written into every export: what it is and how to load it."""

from __future__ import annotations

_LOADING = {
    "keras": """\
## Keras

```python
import keras, keras_hub  # keras_hub registers the Gemma classes
lm = keras.saving.load_model("model.keras")
print(lm.generate("<start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\n", max_length=64))
```
""",
    "preset": """\
## KerasHub

```python
import keras_hub
lm = keras_hub.models.CausalLM.from_preset("PATH/TO/THIS/FOLDER")
```
or `gemma-panel generate "Hi" --chat --model PATH/TO/THIS/FOLDER`.
""",
    "lora": """\
## Keras (base model + LoRA weights)

```python
from gemma_panel.models import load_model
from gemma_panel.export import load_lora_adapter
lm = load_lora_adapter(load_model("{base_model}"), "PATH/TO/THIS/FOLDER")
```
`adapter.lora.h5` is KerasHub's `save_lora_weights` file (factors and rank); `lora.json` adds
the alpha and target layers it does not store. `backbone.load_lora_weights` alone would use
alpha = rank.
""",
    "savedmodel": """\
## TensorFlow / TF Serving

```python
import tensorflow as tf
m = tf.saved_model.load("saved_model")
logits = m.serve({{"token_ids": tf.constant([[2, 818, 5279]]),
                  "padding_mask": tf.constant([[1, 1, 1]])}})
```
TF Serving: `tensorflow_model_server --model_base_path=$PWD/saved_model --model_name=gemma`
(put the folder under a version directory `1/`); the `serving_default` signature takes
`token_ids` and `padding_mask` (int32, batch x length) and returns logits. Tokenize with
`tokenizer.model` (SentencePiece), adding BOS (id 2).
""",
    "hf": """\
## transformers (PyTorch)

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")
model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER")
inputs = tok.apply_chat_template([{{"role": "user", "content": "Hi"}}], add_generation_prompt=True,
                                 return_tensors="pt", return_dict=True)
answer = model.generate(**inputs, max_new_tokens=64)[0][inputs["input_ids"].shape[1]:]
print(tok.decode(answer, skip_special_tokens=True))
```
llama.cpp: `python convert_hf_to_gguf.py PATH/TO/THIS/FOLDER` (or use a `gguf` export).
""",
    "peft": """\
## PEFT (adapter on the base model)

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained("BASE_MODEL_HF_FOLDER")
model = PeftModel.from_pretrained(base, "PATH/TO/THIS/FOLDER")
```
The base model in Hugging Face format is a `gemma-panel export ... --format hf` of the base,
or the imported copy in the model cache. Query/key/value adapters have rank heads x r
(`rank_pattern`): KerasHub's LoRA gives each head its own A (see docs/export.md).
""",
    "gguf": """\
## llama.cpp

```
llama-cli -m {gguf_file} -cnv
llama-server -m {gguf_file}
```

## Ollama

```
ollama create my-gemma -f Modelfile
ollama run my-gemma
```

## transformers

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER", gguf_file="{gguf_file}")
```
""",
    "litert": """\
## LiteRT (TensorFlow Lite), on a phone or an edge device

```python
import numpy as np
from ai_edge_litert.interpreter import Interpreter
run = Interpreter(model_path="{litert_file}").get_signature_runner("serving_default")
ids = np.zeros((1, {length}), "int32"); mask = np.zeros((1, {length}), "int32")
ids[0, :3] = [2, 818, 5279]; mask[0, :3] = 1     # right-pad a prompt to {length} tokens
logits = run(token_ids=ids, padding_mask=mask)["output_0"][0, :3]
```
The signature is fixed: `token_ids` and `padding_mask`, int32, shape (1, {length}); it returns
float32 logits (1, {length}, vocabulary). Tokenize with `tokenizer.model` (SentencePiece),
adding BOS (id 2). On Android and iOS load the same file with the LiteRT runtime.
""",
}


def readme_text(manifest: dict) -> str:
    fmt = manifest["format"]
    source = manifest.get("source") or {}
    quant = manifest.get("quantize")
    title = f"{fmt}{' ' + quant if quant else ''} export"
    origin = (f"run `{source.get('run_id')}`, step {source.get('step')}"
              if source.get("run_id") else "a model in memory")
    lines = [
        f"# {title}",
        "",
        (f"Made by gemma_panel from {origin} (base model `{source.get('model_source')}`); "
         f"LoRA {'merged into the weights' if manifest.get('merged') else 'kept separate'}."),
        ("`manifest.json` lists every file with its size and SHA-256 and the checks this "
         "export passed when it was loaded back."),
        "",
        _LOADING[fmt].format(base_model=source.get("model_source"),
                             gguf_file=manifest.get("gguf_file", "model.gguf"),
                             litert_file=manifest.get("litert_file", "model.tflite"),
                             length=manifest.get("sequence_length")),
    ]
    return "\n".join(lines)
