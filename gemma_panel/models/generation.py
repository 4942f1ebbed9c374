"""Token-by-token generation that yields text as it is produced (for terminals and the UI).

KerasHub's ``generate`` compiles the whole decoding loop, so nothing is seen until it ends.
Here the two pieces it is made of are compiled separately and the loop runs in Python:
``prefill`` fills the key/value cache from the prompt, ``step`` feeds one token and returns
the next logits. Shapes are bucketed to multiples of 64 so a new prompt length rarely
recompiles. Sampling happens on the host with NumPy (greedy, temperature, top-k, top-p,
seeded), one 262k-float vector per token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

_BUCKET = 64
# Gemma 1-3 and 3n end a turn with <end_of_turn>, Gemma 4 with <turn|>.
END_OF_TURN_MARKERS = ("<end_of_turn>", "<turn|>")


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is chosen.

    Args:
        max_new_tokens: stop after this many generated tokens.
        greedy: always take the most likely token (deterministic); the other fields are
            ignored when True.
        temperature: divides the logits; below 1 sharper, above 1 more random.
        top_k: sample among the k most likely tokens (0: no limit).
        top_p: sample among the most likely tokens whose probabilities sum to p (1: all).
        seed: random seed, so a sampled answer can be reproduced.
    """

    max_new_tokens: int = 64
    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def choose_token(logits: np.ndarray, options: SamplingOptions, rng: np.random.Generator) -> int:
    """Pick the next token id from one row of logits."""
    if options.greedy:
        return int(np.argmax(logits))
    logits = logits.astype(np.float64) / max(options.temperature, 1e-6)
    order = np.argsort(-logits)
    if options.top_k > 0:
        order = order[: options.top_k]
    probs = np.exp(logits[order] - logits[order[0]])
    probs /= probs.sum()
    if options.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), options.top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])


class StreamingGenerator:
    """Generate from a KerasHub Gemma causal LM one token at a time.

    Args:
        causal_lm: a ``GemmaCausalLM`` or ``Gemma3CausalLM`` (with its preprocessor).

    Example:
        >>> gen = StreamingGenerator(load_model())
        >>> for piece in gen.stream("The capital of France is"):
        ...     print(piece, end="", flush=True)
    """

    def __init__(self, causal_lm):
        import jax

        self.lm = causal_lm
        self.tokenizer = causal_lm.preprocessor.tokenizer
        self.stop_ids = {self.tokenizer.end_token_id}
        for marker in END_OF_TURN_MARKERS:  # whichever the vocabulary has
            token = self.tokenizer.token_to_id(marker)
            # KerasHub answers a piece it does not have with the unknown token's id.
            if token is not None and self.tokenizer.id_to_token(int(token)) == marker:
                self.stop_ids.add(int(token))
        self._prefill = jax.jit(self._prefill_fn)
        self._step = jax.jit(self._step_fn)

    def _state(self):
        return [v.value for v in self.lm.variables]

    def _scope(self, state):
        import keras

        return keras.StatelessScope(state_mapping=list(zip(self.lm.variables, state)))

    def _prefill_fn(self, state, token_ids, padding_mask):
        with self._scope(state):
            if hasattr(self.lm.backbone, "text_only_model"):  # Gemma 3's signature
                _, cache = self.lm._build_cache(token_ids, None, None, padding_mask, None)
            else:
                _, cache = self.lm._build_cache(token_ids)
        return cache

    def _step_fn(self, state, token, cache, index):
        with self._scope(state):
            logits, _, cache = self.lm.call_with_cache(
                token_ids=token, cache=cache, cache_update_index=index
            )
        return logits[0, -1], cache

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = [int(i) for i in np.asarray(self.tokenizer(prompt))]
        return [int(self.tokenizer.start_token_id)] + ids

    def stream_ids(self, prompt: str, options: SamplingOptions) -> Iterator[int]:
        """Yield generated token ids, stopping at end-of-turn / end-of-sequence."""
        ids = self.encode_prompt(prompt)
        n = len(ids)
        length = -(-(n + options.max_new_tokens) // _BUCKET) * _BUCKET
        token_ids = np.zeros((1, length), dtype="int32")
        token_ids[0, :n] = ids
        padding_mask = np.zeros((1, length), dtype="bool")
        padding_mask[0, :n] = True
        state = self._state()
        cache = self._prefill(state, token_ids, padding_mask)
        rng = np.random.default_rng(options.seed)
        token, index = ids[-1], n - 1
        for _ in range(options.max_new_tokens):
            logits, cache = self._step(state, np.array([[token]], dtype="int32"), cache, index)
            token = choose_token(np.asarray(logits, dtype=np.float32), options, rng)
            if token in self.stop_ids:
                return
            yield token
            index += 1

    def stream(self, prompt: str, options: SamplingOptions | None = None) -> Iterator[str]:
        """Yield pieces of text as they are generated; joined, they are the full answer."""
        options = options or SamplingOptions()
        generated: list[int] = []
        shown = ""
        for token in self.stream_ids(prompt, options):
            generated.append(token)
            text = self.detokenize(generated)
            # A character split over byte-fallback tokens decodes to U+FFFD until complete.
            if text.endswith("\ufffd"):
                continue
            yield text[len(shown):]
            shown = text
        text = self.detokenize(generated)
        if len(text) > len(shown):
            yield text[len(shown):]

    def detokenize(self, ids: list[int]) -> str:
        out = self.tokenizer.detokenize(np.asarray(ids, dtype="int32"))
        out = out.numpy() if hasattr(out, "numpy") else out
        return out.decode("utf-8", errors="replace") if isinstance(out, bytes) else str(out)

    def generate(self, prompt: str, options: SamplingOptions | None = None) -> str:
        return "".join(self.stream(prompt, options))


def chat_prompt(user_message: str) -> str:
    """Wrap one user message in Gemma's turn format, ready for the model's answer."""
    return f"<start_of_turn>user\n{user_message}<end_of_turn>\n<start_of_turn>model\n"
