"""Generation speed, Gemma 3 270M: the previous per-token path vs today's, and llama.cpp.

    python benchmarks/generation.py [--new-tokens 64] [--eval-tokens 48] [--gguf F32.gguf]
        [--model gemma3-270m]

Reported, for batch 1 (``gemma-panel generate``: one prompt, streamed) and for the
evaluation's batch (9 prompts, as the trainer asks for its sample and task answers):
time to first token (TTFT: prompt in, first text piece out, shapes already compiled; for
new prompts of 16, 200 and 1,000 tokens too) and
decode tokens/s (tokens after the first, per second of decoding). "old" is the path before
this change (state passed every token, 262,144 logits to the host, NumPy arg-max, the whole
answer detokenized again per token, one prompt at a time); "new" is
``StreamingGenerator.stream`` / ``generate_many``, and "new, kernels as stored" the same
stream without ``swapped_kernels`` (XLA then copies every attention kernel every call). Stop tokens are switched off so every
path produces the same number of tokens; greedy ids must be equal (checked).

llama.cpp's ``llama-bench`` (when on PATH) runs on an F32 GGUF of the same model (``--gguf``,
or one written here from the loaded model) with as many threads as this process may use,
and the ratio ours / llama.cpp is printed. The machine's load average is printed with the
figures: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import gemma_panel  # noqa: F401  (sets KERAS_BACKEND=jax before Keras is imported)

EVAL_PROMPTS = [
    "Classify the sentiment of this review: The battery died after two days.",
    "Classify the sentiment of this review: Lovely screen, fast, and the price was fair.",
    "Question: What is the capital of France? Answer:",
    ("Summarize: The meeting moved to Thursday because the room was booked on Wednesday "
     "and two of the speakers could not travel before the end of the week."),
    "Translate to French: Good morning, how are you?",
    "Write a haiku about autumn leaves.",
    "List three prime numbers:",
    "The recipe needs flour, sugar, eggs and butter. First,",
    "Explain in one sentence why the sky is blue.",
]


class OldGenerator:
    """The per-token path as it was: every variable passed in, logits to the host, NumPy
    choice, the whole answer detokenized again for each new token, buckets of 64."""

    def __init__(self, gen):
        import jax

        self.gen = gen
        self._prefill = jax.jit(self._prefill_fn)
        self._step = jax.jit(self._step_fn)

    def _scope(self, state):
        import keras

        return keras.StatelessScope(state_mapping=list(zip(self.gen.lm.variables, state)))

    def _prefill_fn(self, state, token_ids, padding_mask):
        with self._scope(state):
            return self.gen.lm._build_cache(token_ids, None, None, padding_mask, None)[1]

    def _step_fn(self, state, token, cache, index):
        with self._scope(state):
            logits, _, cache = self.gen.lm.call_with_cache(
                token_ids=token, cache=cache, cache_update_index=index)
        return logits[0, -1], cache

    def stream_ids(self, prompt, options):
        from gemma_panel.models.generation import choose_token

        ids = self.gen.encode_prompt(prompt)
        n = len(ids)
        length = -(-(n + options.max_new_tokens) // 64) * 64
        token_ids = np.zeros((1, length), dtype="int32")
        token_ids[0, :n] = ids
        mask = np.zeros((1, length), dtype="bool")
        mask[0, :n] = True
        state = [v.value for v in self.gen.lm.variables]  # as stored, nothing swapped
        cache = self._prefill(state, token_ids, mask)
        rng = np.random.default_rng(options.seed)
        token, index = ids[-1], n - 1
        for _ in range(options.max_new_tokens):
            logits, cache = self._step(state, np.array([[token]], dtype="int32"), cache, index)
            token = choose_token(np.asarray(logits, dtype=np.float32), options, rng)
            if token in self.gen.stop_ids:
                return
            yield token
            index += 1

    def stream(self, prompt, options):
        generated, shown = [], ""
        for token in self.stream_ids(prompt, options):
            generated.append(token)
            text = self.gen.detokenize(generated)
            if text.endswith("\ufffd"):
                continue
            yield text[len(shown):]
            shown = text


def timed_stream(stream) -> tuple[float, float, int]:
    """(seconds to the first piece, seconds from it to the end, pieces)."""
    start = time.perf_counter()
    first, count = None, 0
    for _ in stream:
        count += 1
        first = first or time.perf_counter()
    end = time.perf_counter()
    return first - start, end - first, count


def first_piece_s(stream) -> float:
    """Seconds to a stream's first piece (the rest is not generated)."""
    start = time.perf_counter()
    next(iter(stream))
    return time.perf_counter() - start


def batch1(gen, old, plain, new_tokens: int) -> dict:
    from gemma_panel.models.generation import SamplingOptions

    options = SamplingOptions(max_new_tokens=new_tokens)
    # a prompt of the same length compiles the shapes, then a new prompt is timed
    prompt, warm = EVAL_PROMPTS[8], EVAL_PROMPTS[8].replace("sky", "sea")
    rows = {}
    for name, path in (("old", old), ("new, kernels as stored", plain), ("new", gen)):
        compile_start = time.perf_counter()
        list(path.stream(warm, options))
        compile_s = time.perf_counter() - compile_start
        ttft, decode, _ = timed_stream(path.stream(prompt, options))
        rows[name] = {"first_call_s": compile_s, "ttft_s": ttft,
                      "decode_tok_s": (new_tokens - 1) / decode}
    ids = [list(path.stream_ids(prompt, options)) for path in (old, plain, gen)]
    same = ids[0] == ids[1] == ids[2]
    return {"rows": rows, "greedy_ids_equal": same}


def batch9(gen, old, new_tokens: int) -> dict:
    from gemma_panel.models.generation import SamplingOptions

    options = SamplingOptions(max_new_tokens=new_tokens)
    gen.generate_ids_many(EVAL_PROMPTS, options)  # compile both paths' shapes first
    for prompt in EVAL_PROMPTS:
        list(old.stream_ids(prompt, options))
    start = time.perf_counter()
    new_ids = gen.generate_ids_many(EVAL_PROMPTS, options)
    new_s = time.perf_counter() - start
    start = time.perf_counter()
    old_ids = [list(old.stream_ids(p, options)) for p in EVAL_PROMPTS]
    old_s = time.perf_counter() - start
    tokens = len(EVAL_PROMPTS) * new_tokens
    return {"old_s": old_s, "new_s": new_s, "old_tok_s": tokens / old_s,
            "new_tok_s": tokens / new_s, "greedy_ids_equal": new_ids == old_ids}


def prompt_of(gen, tokens: int, shift: int = 0) -> str:
    """A prompt of about ``tokens`` tokens (start token included)."""
    words = " ".join(f"w{i + shift}" for i in range(4 * tokens))
    return gen.detokenize(gen.encode_prompt(words)[1:tokens])


def new_prompt_ttft(gen, lengths=(16, 200, 1000), new_tokens: int = 64) -> list[dict]:
    """TTFT for a new prompt of each length, after one prompt 7 tokens shorter (same cache
    bucket, so a prompt of a new length is timed, not the bucket's first compile)."""
    from gemma_panel.models.generation import SamplingOptions

    options = SamplingOptions(max_new_tokens=new_tokens)
    rows = []
    for n in lengths:
        cold = first_piece_s(gen.stream(prompt_of(gen, n - 7), options))
        prompt = prompt_of(gen, n, shift=3)
        warm = first_piece_s(gen.stream(prompt, options))
        rows.append({"prompt_tokens": len(gen.encode_prompt(prompt)),
                     "first_in_bucket_s": cold, "ttft_s": warm})
    return rows


def llama_cpp(gen, gguf: str | None, new_tokens: int) -> dict | None:
    bench = shutil.which("llama-bench")
    if bench is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        if gguf is None:
            from gemma_panel.export.gguf import write_gguf_file

            gguf = str(Path(scratch) / "gemma3-270m-f32.gguf")
            write_gguf_file(gen.lm, Path(gguf), "f32", "gemma3-270m")
        threads = len(os.sched_getaffinity(0))
        out = subprocess.run([bench, "-m", gguf, "-p", "512", "-n", str(new_tokens),
                              "-t", str(threads), "-o", "json"],
                             capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    speed = {("prompt" if r["n_prompt"] else "decode"): r["avg_ts"] for r in rows}
    return {"decode_tok_s": speed.get("decode"), "prompt_tok_s": speed.get("prompt"),
            "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--eval-tokens", type=int, default=48)
    parser.add_argument("--gguf", help="an F32 GGUF of Gemma 3 270M for llama.cpp")
    parser.add_argument("--model", default="gemma3-270m", help="a Gemma 3 model source")
    args = parser.parse_args()

    from gemma_panel.models import load_model
    from gemma_panel.models.generation import StreamingGenerator

    gen = StreamingGenerator(load_model(args.model, progress=False))
    gen.stop_ids = set()  # every path produces exactly the tokens asked for
    old = OldGenerator(gen)
    plain = StreamingGenerator(gen.lm)  # the attention kernels as stored (swapped_kernels off)
    plain.stop_ids, plain._swapped = set(), set()
    print(f"load average before: {os.getloadavg()}")
    one = batch1(gen, old, plain, args.new_tokens)
    print(f"\nbatch 1, {args.new_tokens} new tokens   first call (compile)   TTFT   decode tok/s")
    for name, row in one["rows"].items():
        print(f"  {name:<30}{row['first_call_s']:>12.2f} s{row['ttft_s']:>9.3f} s"
              f"{row['decode_tok_s']:>11.1f}")
    print(f"  greedy ids equal: {one['greedy_ids_equal']}")
    nine = batch9(gen, old, args.eval_tokens)
    print(f"\nevaluation batch, 9 prompts x {args.eval_tokens} tokens      wall      tok/s")
    print(f"  old (one prompt at a time)           {nine['old_s']:>8.2f} s{nine['old_tok_s']:>9.1f}")
    print(f"  new (generate_many, one batch)       {nine['new_s']:>8.2f} s{nine['new_tok_s']:>9.1f}")
    print(f"  speed-up {nine['old_s'] / nine['new_s']:.2f}x; greedy ids equal: "
          f"{nine['greedy_ids_equal']}")
    print(f"\nTTFT, new prompts ({args.new_tokens} new tokens)   first of its cache bucket"
          "   a new length after it")
    for row in new_prompt_ttft(gen, new_tokens=args.new_tokens):
        print(f"  {row['prompt_tokens']:>5} tokens{row['first_in_bucket_s']:>24.2f} s"
              f"{row['ttft_s']:>20.3f} s")
    ours = one["rows"]["new"]["decode_tok_s"]
    ref = llama_cpp(gen, args.gguf, args.new_tokens)
    if ref is None:
        print("\nllama.cpp: llama-bench is not on PATH; no reference figure.")
    else:
        print(f"\nllama.cpp F32, {ref['threads']} threads: decode {ref['decode_tok_s']:.1f} tok/s, "
              f"prompt {ref['prompt_tok_s']:.1f} tok/s; ours / llama.cpp decode = "
              f"{ours / ref['decode_tok_s']:.2f} (target >= 0.8)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
