"""Where each Gemma weight lives on the mesh: layout maps and the step's shardings.

KerasHub ships a layout map for Gemma 1 only (``GemmaBackbone.get_layout_map``). Gemma 2,
Gemma 3 and Gemma 4 backbones name their weights the same way (Gemma 3 and 4 add query/key
norms), so one rule table, in KerasHub's convention, covers all four; the rows after the
blank line are Gemma 4's own (the per-layer embeddings of E2B/E4B, the mixture of experts of
26B-A4B):

    token_embedding/embeddings            (vocab, hidden)          (model, batch)
    attention/{query,key,value}/kernel    (heads, hidden, head)    (model, batch, None)
    attention/attention_output/kernel     (heads, head, hidden)    (model, None, batch)
    ffw_gating, ffw_gating_2 /kernel      (hidden, ffw)            (batch, model)
    ffw_linear/kernel                     (ffw, hidden)            (model, batch)

    per_layer_token_embedding/embeddings  (vocab, layers*width)    (model, batch)
    per_layer_model_projection/kernel     (hidden, layers*width)   (batch, model)
    per_layer_input_gate/kernel           (hidden, width)          (batch, model)
    per_layer_up_proj/kernel              (width, hidden)          (model, batch)
    moe_expert_bank/{gate,up}_proj        (experts, hidden, ffw)   (model, batch, None)
    moe_expert_bank/down_proj             (experts, ffw, hidden)   (model, None, batch)
    moe_router/proj/kernel                (hidden, experts)        (batch, None)

    .../lora_kernel_a                     kernel.shape[:-1] + (r,) kernel's axes[:-1], None
    .../lora_kernel_b                     (r, kernel.shape[-1])    None, kernel's last axis
    norms, scales, everything else                                 replicated

so that LoRA's ``A @ B`` is laid out like the kernel it adds to. A mesh axis is dropped from
a dimension it does not divide: Gemma 3 270M has one key/value head, which cannot be split
over ``model``; it is replicated there, as multi-query attention is under tensor
parallelism (every model shard needs the one head).

The experts are split over ``model`` by expert (expert parallelism: KerasHub's
``Gemma4MoEBlock`` runs every expert on every token and sums them weighted by the router, so
each model shard runs its own experts and XLA adds their outputs up); under fsdp each expert
is split over ``batch`` on its hidden dimension like the dense feed-forward. The router is
small and feeds a top-k over all experts, so it stays whole over ``model``. The experts get no
LoRA factors (they are plain weights, not ``EinsumDense`` layers).

Example:
    >>> shardings = step_shardings(plan, steps.trainable_vars, steps.frozen_vars,
    ...                            steps.optimizer)
    >>> trainable, opt_state, frozen = shardings.place(*steps.initial_state())
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_KERNEL_RULES = (
    (r"token_embedding/embeddings", ("model", "batch")),
    (r"decoder_block_\d+/attention/(query|key|value)/kernel", ("model", "batch", None)),
    (r"decoder_block_\d+/attention/attention_output/kernel", ("model", None, "batch")),
    (r"decoder_block_\d+/ffw_gating(_2)?/kernel", ("batch", "model")),
    (r"decoder_block_\d+/ffw_linear/kernel", ("model", "batch")),
    # Gemma 4: per-layer embeddings (E2B, E4B) and the mixture of experts (26B-A4B)
    (r"per_layer_token_embedding/embeddings", ("model", "batch")),
    (r"per_layer_model_projection/kernel", ("batch", "model")),
    (r"decoder_block_\d+/per_layer_input_gate/kernel", ("batch", "model")),
    (r"decoder_block_\d+/per_layer_up_proj/kernel", ("model", "batch")),
    (r"decoder_block_\d+/moe_expert_bank/(gate|up)_proj", ("model", "batch", None)),
    (r"decoder_block_\d+/moe_expert_bank/down_proj", ("model", None, "batch")),
    (r"decoder_block_\d+/moe_router/proj/kernel", ("batch", None)),
)


def preferred_axes(path: str) -> tuple | None:
    """The rule table's axes for a weight path (before fitting to a shape), or None."""
    stem, _, leaf = path.rpartition("/")
    if leaf in ("lora_kernel_a", "lora_kernel_b"):
        kernel = preferred_axes(f"{stem}/kernel")
        if kernel is None:
            return None
        return (*kernel[:-1], None) if leaf == "lora_kernel_a" else (None, kernel[-1])
    for pattern, axes in _KERNEL_RULES:
        if re.fullmatch(pattern, path):
            return axes
    return None


def fit_axes(axes: tuple | None, shape: tuple, axis_sizes: dict[str, int]) -> tuple:
    """The axes with each mesh axis dropped where it splits nothing (size 1) or does not
    divide the dimension."""
    if axes is None or len(axes) != len(shape):
        return (None,) * len(shape)
    return tuple(a if a is not None and axis_sizes[a] > 1 and dim % axis_sizes[a] == 0
                 else None for a, dim in zip(axes, shape))


def weight_axes(path: str, shape: tuple, plan) -> tuple:
    """The mesh axes of one weight under a plan: all None unless the plan shards weights.

    A ruled weight (kernel, embedding, LoRA factor) that ends up without ``batch`` (a LoRA
    factor whose kernel had ``batch`` on the dimension the rank replaced, a head count the
    axis does not divide) takes it on its largest free dimension that ``batch`` divides, so
    that under fsdp every such weight and its optimizer moments are split N ways.
    """
    shape = tuple(shape)
    if not plan.shard_weights:
        return (None,) * len(shape)
    preferred = preferred_axes(path)
    axes = list(fit_axes(preferred, shape, plan.axis_sizes))
    size = plan.axis_sizes["batch"]
    if preferred is None or size == 1 or "batch" in axes:
        return tuple(axes)
    free = [i for i, (a, dim) in enumerate(zip(axes, shape)) if a is None and dim % size == 0]
    if free:
        axes[max(free, key=lambda i: shape[i])] = "batch"
    return tuple(axes)


def gemma_layout_map(plan, variables):
    """A ``keras.distribution.LayoutMap`` with every variable's fitted layout, by path.

    Works for Gemma 1, 2, 3 and 4 (text) backbones, LoRA enabled or not; pass the backbone's
    ``weights``.
    """
    import keras

    layout_map = keras.distribution.LayoutMap(plan.keras_mesh())
    for variable in variables:
        layout_map[variable.path] = weight_axes(variable.path, variable.shape, plan)
    return layout_map


@dataclass
class StepShardings:
    """NamedShardings for the arguments and results of the train step.

    ``train_step(trainable, opt_state, frozen, batch, key) -> (trainable, opt_state,
    metrics)``; the batch is (accumulation, batch, length) arrays split over ``batch``.
    """

    mesh: object
    trainable: list
    frozen: list
    opt_state: object
    batch: object
    eval_batch: object
    replicated: object

    def place(self, trainable, opt_state, frozen):
        """The step's state as arrays laid out on the mesh (from host or one device)."""
        return (_put(trainable, self.trainable), _put(opt_state, self.opt_state),
                _put(frozen, self.frozen))

    def place_trained(self, trainable, opt_state):
        """The trained part of the state (e.g. read from a checkpoint) laid out on the mesh."""
        return _put(trainable, self.trainable), _put(opt_state, self.opt_state)

    def place_batch(self, arrays):
        """A train batch (a tuple of (accumulation, batch, length) arrays) on the mesh."""
        return tuple(_put(a, self.batch) for a in arrays)

    def train_jit_kwargs(self) -> dict:
        """``jax.jit`` keywords that pin the train step's in and out layouts."""
        return {"in_shardings": (self.trainable, self.opt_state, self.frozen, self.batch,
                                 self.replicated),
                "out_shardings": (self.trainable, self.opt_state, self.replicated)}

    def eval_jit_kwargs(self) -> dict:
        return {"in_shardings": (self.trainable, self.frozen, self.eval_batch),
                "out_shardings": self.replicated}


def _put(tree, shardings):
    """Place a pytree (or one array) with a matching tree of shardings (or one sharding).

    ``make_array_from_callback`` builds each device's shard from the full host value, which
    every process of a multi-host job holds; ``jax.device_put`` cannot address other hosts.
    """
    import jax

    def one(value, sharding):
        host = np.asarray(value)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda v: one(v, shardings), tree)
    return jax.tree.map(one, tree, shardings)


def step_shardings(plan, trainable_vars, frozen_vars, optimizer) -> StepShardings:
    """Shardings for the flat variable lists the jitted ``stateless_call`` step receives.

    The optimizer's moments follow their parameter's layout (``optax.tree_map_params``);
    its counters and other non-parameter leaves are replicated.
    """
    import jax
    import optax
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = plan.jax_mesh()

    def named(variable):
        return NamedSharding(mesh, PartitionSpec(*weight_axes(variable.path, variable.shape,
                                                              plan)))

    replicated = NamedSharding(mesh, PartitionSpec())
    trainable = [named(v) for v in trainable_vars]
    shapes = [jax.ShapeDtypeStruct(tuple(v.shape), v.dtype) for v in trainable_vars]
    abstract = jax.eval_shape(optimizer.init, shapes)
    opt_state = optax.tree_map_params(optimizer, lambda _, s: s, abstract, trainable,
                                      transform_non_params=lambda _: replicated)
    return StepShardings(
        mesh=mesh, trainable=trainable, frozen=[named(v) for v in frozen_vars],
        opt_state=opt_state,
        batch=NamedSharding(mesh, PartitionSpec(None, "batch", None)),
        eval_batch=NamedSharding(mesh, PartitionSpec("batch", None)),
        replicated=replicated)
