"""Ahead-of-time compilation of the train and scoring steps for hardware this machine does not have.

TPU targets come from `jax.experimental.topologies` (libtpu's compiler, compile-only devices, every host
of a multi-host slice in one process); GPU targets are stood in for by fake CPU devices, so their figures
are estimates. Inputs are `jax.ShapeDtypeStruct`s with the shardings the trainer uses: no weight is ever
allocated, an 8B model compiles on a laptop.

XLA's cost analysis counts the body of a while loop once, whatever its trip count, so the FLOPs of the
scanned layers (and of the chunked loss and the micro-batch loop) cannot be read off the real program.
`measured_flops` compiles the same step unrolled with one and two layers, one loss chunk, one micro-batch
and one query on one chip, extrapolates linearly in the number of layers (the layers are identical) and
scales linearly to the whole batch.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

import numpy as np

from r2r_jax.data.features import BatchShapes, batch_spec
from r2r_jax.inference.score_step import make_score_step
from r2r_jax.model.llama import LlamaForRanking, abstract_variables
from r2r_jax.parallel.batch import batch_sharding
from r2r_jax.parallel.rules import MESH_AXES, tree_shardings
from r2r_jax.train.step import TrainState, jit_train_step, learning_rate_schedule, make_optimizer, make_train_step
from r2r_jax.train.student import join_variables, split_variables

GiB = 1024**3


@dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes: int
    peak_flops: float  # dense bf16 FLOP/s


CHIPS = {
    "v5p": Chip("TPU v5p", 95 * GiB, 459e12),
    "v5e": Chip("TPU v5e", 16 * GiB, 197e12),
    "v6e": Chip("TPU v6e", 32 * GiB, 918e12),
    "h100": Chip("NVIDIA H100", 80 * GiB, 989e12),
}


@dataclass
class Target:
    topology: str
    chip: Chip
    devices: list
    estimate: bool  # fake CPU devices stand in for the real ones

    @property
    def hosts(self) -> int:
        return len({d.process_index for d in self.devices})


def prepare_environment(kind: str, chips: int) -> None:
    """Settings libtpu reads when it loads, for compile-only use on a machine without TPUs: several
    processes may load it at once, and it should not look for a Cloud TPU VM's metadata."""
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    names = {"v5p": f"v5p-{2 * chips}", "v5e": f"v5litepod-{chips}", "v6e": f"v6e-{chips}"}
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", names[kind])


def resolve_target(topology: str) -> Target:
    """`v5p:2x2x1`, `v5e:4x4`, `v6e:2x4`, ... (TPU, via libtpu) or `h100:8` (fake CPU devices)."""
    import jax

    kind, _, shape = topology.partition(":")
    kind = kind.lower()
    if kind not in CHIPS:
        raise ValueError(f"unknown chip {kind!r} in topology {topology!r}; known: {sorted(CHIPS)}")
    if kind == "h100":
        count = int(shape or 8)
        devices = jax.devices("cpu")
        if len(devices) < count:
            raise ValueError(f"{topology} needs {count} fake CPU devices, have {len(devices)}: set "
                             f"XLA_FLAGS=--xla_force_host_platform_device_count={count} before JAX starts")
        return Target(topology, CHIPS[kind], devices[:count], estimate=True)
    from jax.experimental import topologies

    dims = [int(x) for x in shape.split("x")] if shape else []
    chips = 1
    for d in dims:
        chips *= d
    prepare_environment(kind, chips)
    kwargs = {}
    if kind in ("v5e", "v6e") and chips == 8 and len(dims) == 2:
        kwargs["chips_per_host_bounds"] = [dims[0], dims[1], 1]  # v5litepod-8 / v6e-8: one host, 8 chips
    desc = topologies.get_topology_desc(topology_name=topology, platform="tpu", **kwargs)
    return Target(topology, CHIPS[kind], list(desc.devices), estimate=False)


# ---------------------------------------------------------------- abstract inputs


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
                           cfg.micro_batches, mesh)  # traced under the mesh's rules, as `r2r train` does
    jitted = jit_train_step(step, jax.tree.map(lambda x: x.sharding, state), jax.tree.map(lambda x: x.sharding, frozen),
                            {k: v.sharding for k, v in batch.items()})
    return jitted.lower(state, frozen, batch, rng)


def lower_score_step(cfg, mesh, sequences: int, length: int, last_only: bool = True):
    """The scoring step (`make_score_step`: prompt-only forward, score at the last position)."""
    model, frozen, trainable = abstract_student(cfg, mesh)
    batch = abstract_batch({"input_ids": (sequences, length), "attention_mask": (sequences, length)}, mesh)
    return make_score_step(model, last_only, mesh).lower(join_variables(frozen, trainable), batch["input_ids"],
                                                         batch["attention_mask"])


# ---------------------------------------------------------------- compiling and reading the figures


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


def cost_flops(compiled) -> float:
    """Per-chip FLOPs from XLA's cost analysis (loop bodies counted once; Pallas kernels not at all)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def _counting_variant(cfg, layers: int, queries: int):
    model = dataclasses.replace(cfg.model, num_hidden_layers=layers, scan_layers=False)
    loss = dataclasses.replace(cfg.loss, gen_chunk=max(cfg.data.max_target_len, 1))
    return dataclasses.replace(cfg, model=model, loss=loss, micro_batches=1, batch_size=queries)


def measured_flops(cfg, device, step: str = "train", sequences: int = 0, length: int = 0) -> float:
    """Global FLOPs of one step by XLA's cost analysis, loops accounted for (see the module docstring).

    The counting compiles run on one chip of the target with one query (or prompt), and the count is scaled
    to the whole batch: every FLOP of the step is per sequence except the adapters' optimizer update (~10 per
    trainable parameter, a few GFLOP against the step's PFLOP). One chip, because partitioning adds only
    communication, while the TPU compiler's collective matmuls put sharded dots inside loops that cost
    analysis counts once; one query, because small programs compile in a fraction of the time."""
    from jax.sharding import Mesh

    mesh = Mesh(np.asarray([device]).reshape(1, 1, 1), MESH_AXES)
    counts = []
    for layers in (1, 2):
        if step == "train":
            lowered = lower_train_step(_counting_variant(cfg, layers, 1), mesh)
        else:
            # the counting variants unroll their layers; a scanned model's final layer computes every position
            lowered = lower_score_step(_counting_variant(cfg, layers, cfg.batch_size), mesh, 1, length,
                                       last_only=not cfg.model.scan_layers)
        counts.append(cost_flops(lowered.compile()))
    one, two = counts
    per_query = one + (cfg.model.num_hidden_layers - 1) * (two - one)
    return per_query * (cfg.batch_size if step == "train" else sequences)
