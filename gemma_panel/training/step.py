"""The jitted train and eval steps: KerasHub's backbone via ``stateless_call``, optax, JAX.

Where the time goes on Gemma 3 270M: the LM head (640 x 262,144, tied to the embedding) is
more work than the 18 transformer blocks. So the head is computed only at positions that
carry loss (the answer tokens), gathered to a fixed count so shapes stay static, in chunks
under ``jax.checkpoint`` so the (tokens x 262k) logits are never all in memory and are
recomputed in the backward pass instead of stored.

The frozen weights go in as an argument that is neither differentiated nor returned; the
trainable weights and optimizer state are donated, so a step copies no 1 GB of weights.
Packing and LoRA (dropout; through the rank when selected) patch KerasHub while tracing:
``keras_internals.py``; so does per-block recomputation (``memory.remat``): ``remat.py``.
With ``memory.base_weights`` bfloat16 the frozen weights are rounded to bfloat16 once, in the
Keras variables themselves (the step, generation and export then share that one copy; no
float32 copy stays alive); with int8 they are Keras's int8 kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.ad_checkpoint import checkpoint_name

from gemma_panel.config import Recipe
from gemma_panel.models.lora import lora_layers
from gemma_panel.training.head import fused_head_terms
from gemma_panel.training.keras_internals import (
    lora_merged_kernel,
    segment_attention,
    store_value,
)
from gemma_panel.training.remat import remat_blocks

_HEAD_CHUNK = 128
# A bfloat16-stored embedding is widened to float32 this many rows at a time (at most; at
# least 8 chunks): on Gemma 3 270M 8192 x 640 x 4 bytes = 20 MiB, not the whole 640 MiB.
_VOCAB_CHUNK = 8192
_MIN_VOCAB_CHUNKS = 8
# Up to this many bytes of logits per micro-batch, the head is one matmul and its logits
# are kept for the backward pass; above it, chunks are recomputed (jax.checkpoint): one more
# head matmul, far less memory. `python benchmarks/head_loss.py` times both side by side.
REMAT_LOGITS_BYTES = 4 << 30
# For an embedding that is not trained the chunks form their gradient as they go (head.py):
# 1.12x the one matmul's time for 0.15x its memory, so they take over from 1 GiB of logits.
FUSED_LOGITS_BYTES = 1 << 30


def make_optimizer(recipe: Recipe, total_steps: int) -> tuple[optax.GradientTransformation,
                                                              optax.Schedule]:
    """AdamW with warm-up then cosine/linear/constant decay, and global-norm clipping."""
    t = recipe.train
    warmup = min(t.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    if t.schedule == "cosine":
        after = optax.cosine_decay_schedule(t.learning_rate, decay_steps, alpha=0.1)
    elif t.schedule == "linear":
        after = optax.linear_schedule(t.learning_rate, 0.0, decay_steps)
    else:
        after = optax.constant_schedule(t.learning_rate)
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, t.learning_rate, warmup), after], [warmup]
    ) if warmup else after
    parts = []
    if t.max_grad_norm > 0:
        parts.append(optax.clip_by_global_norm(t.max_grad_norm))
    parts.append(optax.adamw(schedule, weight_decay=t.weight_decay,
                             mask=lambda params: [p.ndim >= 2 for p in params]))
    return optax.chain(*parts), schedule


def head_loss(hidden, embeddings, targets, loss_mask, max_tokens: int, soft_cap=None,
              with_accuracy: bool = False, trains_embedding: bool = True):
    """Summed next-token loss (and hits) at loss positions only.

    Returns (loss_sum, n_tokens, n_correct); divide outside to average over a whole step.
    The (max_tokens x vocabulary) logits are computed in one matmul when they fit in
    ``REMAT_LOGITS_BYTES`` (measured fastest on CPU: one large matmul, plain autodiff),
    otherwise in chunks recomputed in the backward pass. For an embedding that is not
    trained (``trains_embedding`` False) the chunks take over from ``FUSED_LOGITS_BYTES``
    and each forms its gradient in the forward pass (``head.fused_head_terms``, nothing
    recomputed). An embedding stored narrower than
    the float32 hidden states (``memory.base_weights`` bfloat16) is widened a vocabulary
    chunk at a time (``narrow_head_terms``), never whole.
    """
    d = hidden.shape[-1]
    flat_mask = loss_mask.reshape(-1)
    count = flat_mask.sum()
    fused = not trains_embedding and embeddings.dtype == hidden.dtype
    limit = min(FUSED_LOGITS_BYTES, REMAT_LOGITS_BYTES) if fused else REMAT_LOGITS_BYTES
    keep_logits = max_tokens * embeddings.shape[0] * 4 <= limit
    if not keep_logits:  # whole chunks of positions
        max_tokens = -(-max_tokens // _HEAD_CHUNK) * _HEAD_CHUNK
    (index,) = jnp.nonzero(flat_mask, size=max_tokens, fill_value=0)
    valid = (jnp.arange(max_tokens) < count).astype(jnp.float32)
    h = hidden.reshape(-1, d)[index]
    t = targets.reshape(-1)[index]
    if embeddings.dtype == jnp.bfloat16 and hidden.dtype == jnp.float32:
        nll, hits = narrow_head_terms(h, embeddings, t, soft_cap, with_accuracy, keep_logits)
        return (nll * valid).sum(), valid.sum(), (hits * valid).sum()
    if fused and not keep_logits:
        nll, hits = fused_head_terms(h, t, embeddings, soft_cap, with_accuracy, _HEAD_CHUNK)
        return (nll * valid).sum(), valid.sum(), (hits * valid).sum()
    kernel = embeddings.T.astype(hidden.dtype)

    def terms(h_c, t_c):
        logits = jnp.matmul(h_c, kernel).astype(jnp.float32)
        if soft_cap:
            logits = jnp.tanh(logits / soft_cap) * soft_cap
        lse = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, t_c[:, None], axis=-1)[:, 0]
        hits = (jnp.argmax(logits, axis=-1) == t_c) if with_accuracy else jnp.zeros_like(t_c)
        return lse - picked, hits.astype(jnp.float32)

    if keep_logits:
        nll, hits = terms(h, t)
    else:
        chunk = jax.checkpoint(lambda args: terms(*args))
        nll, hits = jax.lax.map(chunk, (h.reshape(-1, _HEAD_CHUNK, d),
                                        t.reshape(-1, _HEAD_CHUNK)))
        nll, hits = nll.reshape(-1), hits.reshape(-1)
    return (nll * valid).sum(), valid.sum(), (hits * valid).sum()


def _widen(bits):
    """bfloat16 values given as their uint16 bits, as float32 (exact: the top 16 bits).

    Integer arithmetic on purpose: XLA's CPU compiler has no bfloat16 slicing and widens
    the whole operand of a bfloat16 ``dynamic_slice`` to float32 (then hoists it out of
    the loop), which is the copy this avoids.
    """
    return jax.lax.bitcast_convert_type(bits.astype(jnp.uint32) << 16, jnp.float32)


def vocab_chunk_rows(vocab: int) -> int:
    """Embedding rows widened at a time: at most ``_VOCAB_CHUNK``, at least 8 chunks."""
    return max(1, min(_VOCAB_CHUNK, -(-vocab // _MIN_VOCAB_CHUNKS)))


def narrow_head_terms(h, embeddings, t, soft_cap, with_accuracy: bool, keep_logits: bool):
    """Per-position (nll, hits) for float32 ``h`` and a bfloat16-stored embedding.

    XLA's CPU compiler widens a bfloat16 matmul's operands to float32, so a whole-matrix
    head would hold a float32 copy of the embedding (on Gemma 3 270M, 640 MiB) however it
    is written. Here the embedding is widened ``vocab_chunk_rows`` rows at a time (``_widen``) inside a
    loop; each chunk gives its logsumexp, the target's logit if the target is in it, and
    its best logit; the backward pass widens each chunk again (the gradient of ``h`` is
    accumulated chunk by chunk). The chunks' logits are kept for it when they fit
    ``REMAT_LOGITS_BYTES``, as in ``head_loss``, and recomputed otherwise. The arithmetic
    is float32 on the rounded weights, as the whole-matrix head did.
    """
    vocab = embeddings.shape[0]
    rows = vocab_chunk_rows(vocab)
    bits = jax.lax.bitcast_convert_type(embeddings, jnp.uint16)  # the same bytes, no copy
    policy = (jax.checkpoint_policies.save_only_these_names("head_logits") if keep_logits
              else jax.checkpoint_policies.nothing_saveable)

    def piece(start, size):
        block = _widen(jax.lax.dynamic_slice_in_dim(bits, start, size))
        logits = checkpoint_name(jnp.matmul(h, block.T).astype(jnp.float32), "head_logits")
        if soft_cap:
            logits = jnp.tanh(logits / soft_cap) * soft_cap
        local = t - start
        inside = (local >= 0) & (local < size)
        picked = jnp.take_along_axis(logits, jnp.clip(local, 0, size - 1)[:, None], -1)[:, 0]
        best = logits.max(-1) if with_accuracy else jnp.zeros_like(picked)
        where = start + jnp.argmax(logits, -1) if with_accuracy else jnp.zeros_like(t)
        return jax.nn.logsumexp(logits, -1), jnp.where(inside, picked, 0.0), best, where

    n = vocab // rows
    parts = jax.lax.map(jax.checkpoint(lambda i: piece(i * rows, rows), policy=policy),
                        jnp.arange(n))
    if vocab > n * rows:  # the last, shorter chunk
        tail = jax.checkpoint(lambda: piece(n * rows, vocab - n * rows), policy=policy)()
        parts = [jnp.concatenate([a, b[None]]) for a, b in zip(parts, tail)]
    lse, picked, best, where = parts
    nll = jax.nn.logsumexp(lse, axis=0) - picked.sum(0)
    if not with_accuracy:
        return nll, jnp.zeros_like(nll)
    top = jnp.take_along_axis(where, jnp.argmax(best, axis=0)[None], 0)[0]  # first maximum
    return nll, (top == t).astype(jnp.float32)


def segment_positions(segment_ids):
    """Each token's position within its own packed example: 0 where a segment starts.

    ``[[1, 1, 1, 2, 2, 0]] -> [[0, 1, 2, 0, 1, 0]]`` (padding restarts too; it is masked).
    """
    index = jnp.broadcast_to(jnp.arange(segment_ids.shape[-1]), segment_ids.shape)
    starts = jnp.concatenate([jnp.ones_like(segment_ids[..., :1], dtype=bool),
                              segment_ids[..., 1:] != segment_ids[..., :-1]], axis=-1)
    return index - jax.lax.cummax(jnp.where(starts, index, 0), axis=segment_ids.ndim - 1)


def backbone_inputs(backbone, token_ids, segment_ids) -> dict:
    """The backbone's inputs for packed rows: Gemma 4 also takes each token's position,
    which restarts in every packed example as if it were alone (Gemma 1-3 count positions
    themselves; their rotary attention depends only on distances within a segment)."""
    inputs = {"token_ids": token_ids, "padding_mask": segment_ids > 0}
    if "position_ids" in getattr(backbone, "input", {}):
        inputs["position_ids"] = segment_positions(segment_ids).astype("int32")
    return inputs


def store_frozen_in(variables, dtype: str | None) -> None:
    """Keep the floating ``variables`` in ``dtype`` (None: as they are), in place.

    The Keras variable holds the rounded array itself (``store_value``), so its float32
    buffer is freed once nothing else refers to it; Keras casts back to the variable's
    dtype as it computes. Integer weights (int8 kernels) and weights already in ``dtype``
    are left alone, so a second call changes nothing.
    """
    if dtype is None:
        return
    for variable in variables:
        value = jnp.asarray(variable.value)
        if jnp.issubdtype(value.dtype, jnp.floating) and value.dtype != jnp.dtype(dtype):
            store_value(variable, value.astype(dtype))


def _embedding_scale_index(backbone, frozen_vars) -> int | None:
    """Where the token embedding's int8 scales are among the frozen weights (None: not int8)."""
    scale = getattr(backbone.token_embedding, "embeddings_scale", None)
    if scale is None:
        return None
    return next(i for i, v in enumerate(frozen_vars) if v is scale)


class TrainFunctions:
    """The compiled train and eval steps for one model and recipe (one instance per run).

    Args:
        causal_lm: a KerasHub Gemma causal LM, LoRA already enabled (or fully trainable).
        recipe: the run's recipe (optimizer, dropout).
        total_steps: optimizer steps of the whole run (for the schedule).
        max_train_tokens, max_eval_tokens: fixed loss-position counts (see batches.py).
    """

    # Keras's merged kernel W + (alpha/r) A B (with dropout: the unmerged sum). The factored
    # path x W + (alpha/r) (x A) B (keras_internals.lora_factored, equal and tested) becomes
    # the default once benchmarks/train_throughput.py --parts ours,factored,all,all_factored
    # shows it faster on idle cores: under load it measured 0.94x with every projection.
    lora_forward_pass = staticmethod(lora_merged_kernel)

    def __init__(self, causal_lm, recipe: Recipe, total_steps: int, max_train_tokens: int,
                 max_eval_tokens: int):
        self.backbone = backbone = causal_lm.backbone
        self.trainable_vars = list(backbone.trainable_variables)
        self.frozen_vars = list(backbone.non_trainable_variables)
        embedding = backbone.token_embedding.embeddings
        self._embedding_trainable = any(v is embedding for v in self.trainable_vars)
        pool = self.trainable_vars if self._embedding_trainable else self.frozen_vars
        self._embedding_index = next(i for i, v in enumerate(pool) if v is embedding)
        self._embedding_scale = _embedding_scale_index(backbone, self.frozen_vars)
        self.soft_cap = getattr(backbone, "final_logit_soft_cap", None)
        self.frozen_dtype = "bfloat16" if recipe.memory.base_weights == "bfloat16" else None
        store_frozen_in(self.frozen_vars, self.frozen_dtype)
        self.remat = recipe.memory.remat
        self.lora_layers = lora_layers(backbone)
        self.dropout = recipe.lora.dropout if recipe.lora.enabled else 0.0
        self.optimizer, self.schedule = make_optimizer(recipe, total_steps)
        self.max_train_tokens = max_train_tokens
        self.max_eval_tokens = max_eval_tokens
        self.train_step = jax.jit(self._train_step, donate_argnums=(0, 1))
        self.eval_step = jax.jit(self._eval_step)

    # -- state -------------------------------------------------------------------------
    def initial_state(self):
        # Copies: the train step donates these buffers, and the Keras variables keep theirs.
        trainable = [jnp.array(v.value, copy=True) for v in self.trainable_vars]
        # The frozen ones are the variables' own buffers (never donated), as they store them.
        frozen = [jnp.asarray(v.value) for v in self.frozen_vars]
        return trainable, self.optimizer.init(trainable), frozen

    def assign(self, trainable) -> None:
        """Write trained values back into the Keras variables (for generation, export)."""
        for variable, value in zip(self.trainable_vars, trainable):
            variable.assign(jnp.array(value, copy=True))  # the step will donate `value`

    # -- the model ---------------------------------------------------------------------
    def _loss_terms(self, trainable, frozen, batch, key, max_tokens, with_accuracy=False):
        inputs, targets, loss_mask, segment_ids = batch
        with segment_attention(self.backbone, segment_ids), \
                self.lora_forward_pass(self.lora_layers, self.dropout, key), \
                remat_blocks(self.backbone, self.remat):
            hidden, _ = self.backbone.stateless_call(
                trainable, frozen, backbone_inputs(self.backbone, inputs, segment_ids)
            )
        return self._head_terms(trainable, frozen, hidden, targets, loss_mask, max_tokens,
                                with_accuracy)

    def _train_step(self, trainable, opt_state, frozen, batch, key):
        """One optimizer step over (accumulation, batch, length) micro-batches."""

        def micro(carry, xs):
            grads_sum, loss_sum, count_sum = carry
            mb, index = xs[:4], xs[4]

            def loss_fn(params):
                loss, count, _ = self._loss_terms(
                    params, frozen, mb, jax.random.fold_in(key, index), self.max_train_tokens
                )
                return loss, count

            (loss, count), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
            grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
            return (grads_sum, loss_sum + loss, count_sum + count), None

        zeros = jax.tree.map(jnp.zeros_like, trainable)
        indices = jnp.arange(batch[0].shape[0])
        (grads, loss_sum, count), _ = jax.lax.scan(
            micro, (zeros, 0.0, 0.0), (*batch, indices)
        )
        grads = jax.tree.map(lambda g: g / jnp.maximum(count, 1.0), grads)
        updates, opt_state = self.optimizer.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        metrics = {"loss": loss_sum / jnp.maximum(count, 1.0),
                   "grad_norm": optax.global_norm(grads), "loss_tokens": count}
        return trainable, opt_state, metrics

    def _eval_step(self, trainable, frozen, batch):
        return self._loss_terms(trainable, frozen, batch, None, self.max_eval_tokens,
                                with_accuracy=True)

    def evaluate(self, trainable, frozen, sequences, batch_size: int) -> dict[str, float]:
        """Validation loss, perplexity and next-token accuracy at loss positions."""
        loss = count = correct = 0.0
        for start in range(0, len(sequences), batch_size):
            part = sequences.take(np.arange(start, min(start + batch_size, len(sequences))))
            arrays = [a for a in (part.inputs, part.targets, part.loss_mask, part.segment_ids)]
            if len(part) < batch_size:  # pad the last batch with empty rows: one shape only
                pad = batch_size - len(part)
                arrays = [np.concatenate([a, np.zeros((pad, a.shape[1]), a.dtype)])
                          for a in arrays]
            l_sum, n, hits = self.eval_step(trainable, frozen, tuple(arrays))
            loss, count, correct = loss + float(l_sum), count + float(n), correct + float(hits)
        mean = loss / max(count, 1.0)
        return {"val_loss": mean, "val_perplexity": float(np.exp(min(mean, 50.0))),
                "val_token_accuracy": correct / max(count, 1.0)}

    def _head_terms(self, trainable, frozen, hidden, targets, loss_mask, max_tokens,
                    with_accuracy=False):
        """`head_loss` of the backbone's ``hidden`` against the token embedding (tied LM
        head) as the step holds it: trainable or frozen, int8 rows with their scales."""
        pool = trainable if self._embedding_trainable else frozen
        embeddings = pool[self._embedding_index]
        if self._embedding_scale is not None:  # int8 rows and their scales (memory.base_weights)
            embeddings = embeddings.astype(jnp.float32) / frozen[self._embedding_scale][:, None]
        return head_loss(hidden, embeddings, targets, loss_mask, max_tokens,
                         self.soft_cap, with_accuracy, self._embedding_trainable)
