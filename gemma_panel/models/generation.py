"""Generation with a KV cache: streamed token by token (terminal, UI) or batched (evaluation).

KerasHub's ``generate`` compiles the whole decoding loop, so nothing is seen until it ends.
Here its two pieces are compiled separately: ``prefill`` fills the key/value cache from the
prompts, and a decode step feeds one token per row. Both choose the next token on the device
(arg-max, or temperature/top-k/top-p sampling with a seeded key), so only token ids come back
to the host, never a row of 262,144 logits.

- ``stream``: one prompt, one compiled step called from Python per token, text detokenized
  incrementally (a few tokens per call, not the whole answer again).
- ``generate_many``: all prompts in one left-padded batch; the decode loop is a
  ``lax.while_loop`` on the device that stops each row at its stop token and ends when every
  row has stopped. A row's padding is masked out of every attention; rotary embeddings
  depend only on the distance between two positions, so a row shifted right by its padding
  scores as it would alone.

The prompt is prefilled in chunks of one fixed width (``chunk`` tokens), and only the cache
length (prompt plus new tokens, to a power of two) and the batch size (1, 2, 4, then multiples
of 4) shape the compiled functions, so a prompt of a new length reuses them. The last chunk
chooses the first token from the hidden state at the prompt's last position alone: the
262,144-wide head is never computed for the other prompt positions.

On CPU the attention kernels are handed to the compiled pieces with their first two axes
swapped (``swapped_kernels``): the layout XLA's dots want, which it would otherwise copy
every weight into on every call.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator

import numpy as np

from gemma_panel.models.sampling import (  # noqa: F401  (SamplingOptions, choose_token: API)
    SamplingOptions,
    batch_bucket,
    bucket,
    choose_token,
    sample_on_device,
)

_CHUNK = 128
_MAX_BATCH = 16
_STOP_SLOTS = 8
# Attention projections whose 3-D kernel XLA's CPU compiler re-lays out, axes 0 and 1 swapped,
# before every call's dot: (heads, dim, head_dim) to (dim, heads, head_dim) and back.
_HEAD_MAJOR_EQUATIONS = ("btd,ndh->btnh", "bsd,kdh->bskh", "btnh,nhd->btd")
_SWAP = (1, 0, 2)
# Gemma 1-3 and 3n end a turn with <end_of_turn>, Gemma 4 with <turn|>.
END_OF_TURN_MARKERS = ("<end_of_turn>", "<turn|>")


class StreamingGenerator:
    """Generate from a KerasHub Gemma causal LM, streamed or in batches.

    Args:
        causal_lm: a ``GemmaCausalLM``, ``Gemma3CausalLM`` ... (with its preprocessor).

    Example:
        >>> gen = StreamingGenerator(load_model())
        >>> for piece in gen.stream("The capital of France is"):
        ...     print(piece, end="", flush=True)
        >>> gen.generate_many(["1 + 1 =", "The sky is"], SamplingOptions(max_new_tokens=8))
    """

    chunk = _CHUNK  # prompt tokens per prefill call (one compiled width for every prompt)

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
        # Models whose cached call takes a padding mask can be left-padded (batched).
        self.batches = "padding_mask" in inspect.signature(causal_lm.call_with_cache).parameters
        self._swapped = swapped_kernels(causal_lm) if jax.default_backend() == "cpu" else set()
        self._cache_shapes: dict[tuple[int, int], object] = {}
        # The cache is donated: each call updates it in place instead of copying it.
        self._fill = jax.jit(self._fill_fn, donate_argnames=("cache",))
        self._prefill = jax.jit(self._prefill_fn, static_argnames=("sampling",),
                                donate_argnames=("cache",))
        self._step = jax.jit(self._step_fn, static_argnames=("sampling",),
                             donate_argnames=("cache",))
        self._decode = jax.jit(self._decode_fn, static_argnames=("sampling", "steps"))

    # -- traced pieces ------------------------------------------------------------------

    def _state(self):
        """The variables' values, as the traced pieces take them: the kernels in
        ``_swapped`` stored with axes 0 and 1 swapped (see ``swapped_kernels``)."""
        import jax.numpy as jnp

        return [jnp.transpose(v.value, _SWAP) if i in self._swapped else v.value
                for i, v in enumerate(self.lm.variables)]

    def _scope(self, state):
        """Run the model on ``state``; a swapped kernel is swapped back in the trace, where
        XLA folds the two transposes into the layout its dot wants (no copy a call)."""
        import jax.numpy as jnp
        import keras

        values = [jnp.transpose(x, _SWAP) if i in self._swapped else x
                  for i, x in enumerate(state)]
        return keras.StatelessScope(state_mapping=list(zip(self.lm.variables, values)))

    def _call(self, token_ids, cache, index, offsets):
        """Final hidden states and updated cache for ``token_ids`` written at ``index``.

        ``call_with_cache``'s logits are left unused, so XLA drops them; ``_head`` turns
        the positions that are needed into logits."""
        import jax.numpy as jnp

        kwargs = {}
        if self.batches:
            length = jax_cache_length(cache)
            kwargs["padding_mask"] = jnp.arange(length)[None, :] >= offsets[:, None]
        _, hidden, cache = self.lm.call_with_cache(
            token_ids=token_ids, cache=cache, cache_update_index=index, **kwargs)
        return hidden, cache

    def _head(self, hidden):
        """Logits ``(batch, vocab)`` for hidden states ``(batch, dim)``, as ``call_with_cache``
        computes them (tied embedding, soft caps)."""
        import jax.numpy as jnp

        logits = tied_head(self.lm.backbone.token_embedding, hidden)
        cap = getattr(self.lm, "final_logit_cap", None)  # Gemma 4 caps after the head
        if cap is not None:
            logits = jnp.tanh(logits / cap) * cap
        return logits

    def _build_fn(self, state, token_ids):
        with self._scope(state):
            if hasattr(self.lm.backbone, "text_only_model"):  # Gemma 3's signature
                mask = token_ids >= 0
                return self.lm._build_cache(token_ids, None, None, mask, None)[1]
            return self.lm._build_cache(token_ids)[1]

    def _fill_fn(self, state, token_ids, offsets, cache, start):
        """Write one chunk of prompt tokens into the cache at ``start``."""
        with self._scope(state):
            return self._call(token_ids, cache, start, offsets)[1]

    def _prefill_fn(self, state, token_ids, offsets, cache, start, last, key, temperature,
                    top_p, sampling):
        """The prompt's last chunk: ``(first ids (batch,), cache, key)``, the head applied at
        chunk position ``last`` only."""
        import jax

        with self._scope(state):
            hidden, cache = self._call(token_ids, cache, start, offsets)
            logits = self._head(jax.lax.dynamic_index_in_dim(hidden, last, 1, keepdims=False))
        key, sub = jax.random.split(key)
        return sample_on_device(logits, sub, temperature, top_p, sampling), cache, key

    def _step_fn(self, state, token, cache, index, offsets, key, temperature, top_p, sampling):
        """One token per row: ``(next ids (batch,), cache, key)``; logits stay here."""
        import jax

        with self._scope(state):
            hidden, cache = self._call(token[:, None], cache, index, offsets)
            logits = self._head(hidden[:, -1])
        key, sub = jax.random.split(key)
        return sample_on_device(logits, sub, temperature, top_p, sampling), cache, key

    def _decode_fn(self, state, token, cache, index, offsets, key, temperature, top_p,
                   stop_ids, max_new, sampling, steps):
        """Up to ``max_new`` tokens per row in a device loop, ``token`` (the prefill's
        choice, at ``index``) the first; ``(batch, steps)`` ids, -1 from a row's stop token."""
        import jax
        import jax.numpy as jnp

        done = jnp.isin(token, stop_ids)
        out = jnp.full((token.shape[0], steps), -1, dtype="int32")
        out = out.at[:, 0].set(jnp.where(done, -1, token))

        def cond(carry):
            t, done = carry[0], carry[4]
            return (t < max_new) & ~jnp.all(done)

        def body(carry):
            t, token, cache, index, done, out, key = carry
            token, cache, key = self._step_fn(state, token, cache, index, offsets, key,
                                              temperature, top_p, sampling)
            done = done | jnp.isin(token, stop_ids)
            out = out.at[:, t].set(jnp.where(done, -1, token))
            return t + 1, token, cache, index + 1, done, out, key

        carry = (jnp.int32(1), token, cache, index, done, out, key)
        return jax.lax.while_loop(cond, body, carry)[5]

    # -- host side ----------------------------------------------------------------------

    def _empty_cache(self, batch: int, length: int):
        import jax
        import jax.numpy as jnp

        if (batch, length) not in self._cache_shapes:
            tokens = jax.ShapeDtypeStruct((batch, length), "int32")
            self._cache_shapes[batch, length] = jax.eval_shape(self._build_fn, self._state(),
                                                               tokens)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                            self._cache_shapes[batch, length])

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = [int(i) for i in np.asarray(self.tokenizer(prompt))]
        return [int(self.tokenizer.start_token_id)] + ids

    def _prefilled(self, rows: list[list[int]], options: SamplingOptions, state):
        """Prefill the rows chunk by chunk; returns (first tokens, cache, the index they are
        fed at, offsets, key).

        One row sits at the start of the cache (as alone); several are left-padded to a
        common end, so they all decode at the same index."""
        import jax

        n_max = max(len(r) for r in rows)
        chunks = -(-n_max // self.chunk)
        length = bucket(max(chunks * self.chunk, n_max + options.max_new_tokens))
        token_ids = np.zeros((len(rows), chunks * self.chunk), dtype="int32")
        offsets = np.zeros(len(rows), dtype="int32")
        for i, row in enumerate(rows):
            offsets[i] = 0 if len(rows) == 1 else n_max - len(row)
            token_ids[i, offsets[i]: offsets[i] + len(row)] = row
        cache = self._empty_cache(len(rows), length)
        for c in range(chunks - 1):
            start = c * self.chunk
            cache = self._fill(state, token_ids[:, start: start + self.chunk], offsets, cache,
                               np.int32(start))
        start = (chunks - 1) * self.chunk
        token, cache, key = self._prefill(
            state, token_ids[:, start:], offsets, cache, np.int32(start),
            np.int32(n_max - 1 - start), jax.random.PRNGKey(options.seed), options.temperature,
            options.top_p, sampling=options.static())
        return token, cache, np.int32(n_max), offsets, key

    def stream_ids(self, prompt: str, options: SamplingOptions) -> Iterator[int]:
        """Yield generated token ids, stopping at end-of-turn / end-of-sequence."""
        state = self._state()
        token, cache, index, offsets, key = self._prefilled(
            [self.encode_prompt(prompt)], options, state)
        def step(token, cache, index, key):
            return self._step(state, token, cache, index, offsets, key, options.temperature,
                              options.top_p, sampling=options.static())

        pending = token, cache, key
        for n in range(options.max_new_tokens):
            token, cache, key = pending
            if n + 1 < options.max_new_tokens:  # queued now, it runs while this token is shown
                pending = step(token, cache, index + n, key)
            chosen = int(token[0])
            if chosen in self.stop_ids:
                return
            yield chosen

    def generate_ids_many(self, prompts: list[str], options: SamplingOptions) -> list[list[int]]:
        """Generated ids per prompt, all rows decoded together on the device."""
        rows = [self.encode_prompt(p) for p in prompts]
        if not self.batches:  # no padding mask in this family's cached call: one at a time
            return [self._decode_rows([r], options)[0] for r in rows]
        out = []
        for start in range(0, len(rows), _MAX_BATCH):
            chunk = rows[start: start + _MAX_BATCH]
            padded = chunk + [chunk[0]] * (batch_bucket(len(chunk)) - len(chunk))
            out += self._decode_rows(padded, options)[: len(chunk)]
        return out

    def _decode_rows(self, rows: list[list[int]], options: SamplingOptions) -> list[list[int]]:
        state = self._state()
        token, cache, index, offsets, key = self._prefilled(rows, options, state)
        stops = sorted(self.stop_ids)[:_STOP_SLOTS]
        stop_ids = np.array(stops + [-1] * (_STOP_SLOTS - len(stops)), dtype="int32")
        ids = self._decode(state, token, cache, index, offsets, key, options.temperature,
                           options.top_p, stop_ids, np.int32(options.max_new_tokens),
                           sampling=options.static(), steps=bucket(options.max_new_tokens))
        ids = np.asarray(ids)
        return [[int(t) for t in row[: options.max_new_tokens] if t >= 0] for row in ids]

    def generate_many(self, prompts: list[str], options: SamplingOptions | None = None
                      ) -> list[str]:
        """The answer to each prompt; greedy answers equal ``generate``'s one by one."""
        options = options or SamplingOptions()
        return [self.detokenize(ids) for ids in self.generate_ids_many(list(prompts), options)]

    def stream(self, prompt: str, options: SamplingOptions | None = None) -> Iterator[str]:
        """Yield pieces of text as they are generated; joined, they are the full answer."""
        return self.texts(self.stream_ids(prompt, options or SamplingOptions()))

    def texts(self, ids: Iterable[int]) -> Iterator[str]:
        """Text pieces for a stream of ids, decoding only the tokens since the last piece.

        The window starts at the token before the last piece shown, so spaces and
        characters split over byte-fallback tokens come out as a whole decode gives them."""
        seen: list[int] = []
        prefix = read = 0
        for token in ids:
            seen.append(token)
            shown = self.detokenize(seen[prefix:read])
            text = self.detokenize(seen[prefix:])
            # A character split over byte-fallback tokens decodes to U+FFFD until complete.
            if len(text) > len(shown) and not text.endswith("\ufffd"):
                yield text[len(shown):]
                prefix, read = read, len(seen)
        shown, text = self.detokenize(seen[prefix:read]), self.detokenize(seen[prefix:])
        if len(text) > len(shown):
            yield text[len(shown):]

    def detokenize(self, ids: list[int]) -> str:
        if not ids:
            return ""
        out = self.tokenizer.detokenize(np.asarray(ids, dtype="int32"))
        out = out.numpy() if hasattr(out, "numpy") else out
        return out.decode("utf-8", errors="replace") if isinstance(out, bytes) else str(out)

    def generate(self, prompt: str, options: SamplingOptions | None = None) -> str:
        return "".join(self.stream(prompt, options))


def tied_head(embedding, hidden):
    """``embedding(hidden, reverse=True)``, contracting with the ``(vocab, dim)`` table as
    it is stored. Keras writes ``matmul(hidden, transpose(table))``; in a decode step XLA's
    CPU compiler materializes that transpose, a copy of the whole table (671 MB on Gemma 3
    270M) every token, which a device loop hoists but a step called per token cannot.
    Quantized, untied or re-typed heads keep Keras's own call."""
    import keras

    plain = (getattr(embedding, "tie_weights", False)
             and getattr(embedding, "quantization_mode", None) is None
             and getattr(embedding, "reverse_dtype", None) is None)
    if not plain:
        return embedding(hidden, reverse=True)
    logits = keras.ops.einsum("...d,vd->...v", hidden, embedding.embeddings)
    cap = getattr(embedding, "logit_soft_cap", None)
    if cap is not None:
        logits = keras.ops.tanh(logits / cap) * cap
    return logits


def swapped_kernels(causal_lm) -> set[int]:
    """Indices in ``causal_lm.variables`` of the attention kernels to keep axes-swapped.

    In a step called from Python, XLA's CPU compiler copies each query and output kernel
    ``(heads, a, b)`` into ``(a, heads, b)`` before its dot, every call (a device loop hoists
    the copies; a call cannot): 36 copies of 2.6 MB a token on Gemma 3 270M, 60 -> 33 ms a
    step (``python benchmarks/generation.py``). Handing them over already swapped makes the
    trace's transpose cancel it. Exact: a transpose moves values, it does not change them."""
    import keras

    from gemma_panel.models.lora import sublayers

    index = {id(v): i for i, v in enumerate(causal_lm.variables)}
    found = set()
    for layer in sublayers(causal_lm):
        kernel = getattr(layer, "_kernel", None)
        if (isinstance(layer, keras.layers.EinsumDense) and kernel is not None
                and layer.equation in _HEAD_MAJOR_EQUATIONS and len(kernel.shape) == 3
                and id(kernel) in index):
            found.add(index[id(kernel)])
    return found


def jax_cache_length(cache) -> int:
    """The cache's sequence length, whichever family's layout (axis -3 of a key tensor)."""
    import jax

    return jax.tree.leaves(cache)[0].shape[-3]


def chat_prompt(user_message: str) -> str:
    """Wrap one user message in Gemma's turn format, ready for the model's answer."""
    return f"<start_of_turn>user\n{user_message}<end_of_turn>\n<start_of_turn>model\n"
