"""The real train step lowered and compiled on abstract inputs: what `r2r compile` reports for hardware
this machine does not have, and what `model.remat_policy: auto` compiles to find the policy that fits.

Inputs are `jax.ShapeDtypeStruct`s with the shardings the trainer uses: no weight is ever allocated, so an
8B model compiles on a laptop (for a TPU topology) or before the weights load (on the accelerator at hand).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r2r_jax.data.features import BatchShapes, batch_spec
from r2r_jax.model.llama import LlamaForRanking, abstract_variables
from r2r_jax.parallel.batch import batch_sharding
from r2r_jax.parallel.rules import tree_shardings
from r2r_jax.train.step import TrainState, jit_train_step, learning_rate_schedule, make_optimizer, make_train_step
from r2r_jax.train.student import split_variables


def _with_shardings(abstract, shardings):
    import jax

    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def abstract_student(cfg, mesh):
    """(model, frozen, trainable) as sharded ShapeDtypeStructs, exactly as `build_student` would place them."""
    import flax.linen as nn

    model = LlamaForRanking(cfg.model, cfg.lora)
    boxed = abstract_variables(model)
    variables = _with_shardings(nn.meta.unbox(boxed), tree_shardings(boxed, mesh))
    frozen, trainable = split_variables(variables)
    return model, frozen, trainable


def abstract_state(cfg, trainable, mesh, optimizer):
    """TrainState of ShapeDtypeStructs: moments shard like their parameters, scalars are replicated."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(mesh, PartitionSpec())
    opt_abstract = jax.eval_shape(optimizer.init, trainable)
    opt_shardings = optax.tree_map_params(
        optimizer, lambda _, p: p.sharding, opt_abstract, trainable,
        transform_non_params=lambda _: replicated, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    opt_state = _with_shardings(opt_abstract, opt_shardings)
    step = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
    return TrainState(step, trainable, opt_state)


def batch_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """The train step's batch: exactly what `r2r train` feeds (`r2r_jax.data.features.batch_spec`)."""
    return {k: shape for k, (shape, _) in batch_spec(BatchShapes.from_config(cfg.data), cfg.batch_size).items()}


def abstract_batch(shapes: dict[str, tuple[int, ...]], mesh) -> dict:
    import jax
    import jax.numpy as jnp

    return {k: jax.ShapeDtypeStruct(s, jnp.int32, sharding=batch_sharding(len(s), mesh)) for k, s in shapes.items()}


# ---------------------------------------------------------------- lowering


def lower_train_step(cfg, mesh):
    """The real train step (`make_train_step` + `jit_train_step`), lowered on abstract sharded inputs."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    model, frozen, trainable = abstract_student(cfg, mesh)
    optimizer = make_optimizer(cfg.optim, cfg.steps)
    state = abstract_state(cfg, trainable, mesh, optimizer)
    batch = abstract_batch(batch_shapes(cfg), mesh)
    key = jax.eval_shape(lambda: jax.random.key(0))
    rng = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=NamedSharding(mesh, PartitionSpec()))
    step = make_train_step(model, cfg.loss, optimizer, learning_rate_schedule(cfg.optim, cfg.steps),
                           cfg.micro_batches, mesh, reason_rows=cfg.data.group_size)  # as `r2r train` traces it
    jitted = jit_train_step(step, jax.tree.map(lambda x: x.sharding, state), jax.tree.map(lambda x: x.sharding, frozen),
                            {k: v.sharding for k, v in batch.items()})
    return jitted.lower(state, frozen, batch, rng)


class DoesNotFit(Exception):
    """The compiler refused the program for lack of device memory."""

    def __init__(self, message: str, needed: int | None = None, available: int | None = None,
                 short: int | None = None):
        super().__init__(message)
        self.needed, self.available = needed, available
        self.short = short if short is not None else (needed - available if needed and available else None)


_SIZE = r"([0-9.]+)\s*([KMGT]?)i?B?"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# the TPU compiler's wordings: (needed, available) or the shortfall alone
_NEEDED_AVAILABLE = (
    re.compile(r"\(" + _SIZE + r"\) exceeds available HBM \(" + _SIZE + r"\)"),
    re.compile(r"Used " + _SIZE + r" of " + _SIZE + r" hbm"),
)
_SHORT = re.compile(r"Exceeded hbm capacity by " + _SIZE)


def _bytes(number: str, unit: str) -> int:
    return int(float(number) * _UNITS[unit])


def compile_lowered(lowered):
    """`lowered.compile()`, turning the TPU compiler's out-of-memory error into `DoesNotFit`."""
    try:
        return lowered.compile()
    except Exception as e:  # JaxRuntimeError
        text = str(e)
        if "RESOURCE_EXHAUSTED" not in text and "Ran out of memory" not in text:
            raise
        needed = available = None
        for pattern in _NEEDED_AVAILABLE:
            match = pattern.search(text)
            if match:
                needed, available = _bytes(*match.group(1, 2)), _bytes(*match.group(3, 4))
                break
        short = _SHORT.search(text)
        raise DoesNotFit(text.splitlines()[0][:400], needed, available,
                         _bytes(*short.group(1, 2)) if short else None) from None


@dataclass
class Memory:
    """Per-chip bytes from `compiled.memory_analysis()`."""

    arguments: int
    outputs: int
    aliased: int  # outputs that reuse donated argument buffers (the train state)
    temporaries: int
    code: int

    @property
    def total(self) -> int:
        return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


def memory_of(compiled) -> Memory:
    m = compiled.memory_analysis()
    return Memory(m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes, m.temp_size_in_bytes,
                  m.generated_code_size_in_bytes)
