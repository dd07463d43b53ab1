"""Ahead-of-time compilation of the train and scoring steps for hardware this machine does not have.

TPU targets come from `jax.experimental.topologies` (libtpu's compiler, compile-only devices, every host
of a multi-host slice in one process); GPU targets are stood in for by fake CPU devices, so their figures
are estimates. Inputs are `jax.ShapeDtypeStruct`s with the shardings the trainer uses: no weight is ever
allocated, an 8B model compiles on a laptop.

XLA's cost analysis counts the body of a while loop once, whatever its trip count, so the FLOPs and bytes
of the scanned layers (and of the chunked loss and the micro-batch loop) cannot be read off the real
program. `measured_costs` compiles the same step unrolled with one and two layers, one loss chunk, one
micro-batch and one data shard's queries on one chip, and extrapolates linearly in the number of layers
(the layers are identical).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from r2r_jax.compile.chips import CHIPS, Chip, parse_topology
from r2r_jax.inference.score_step import make_score_step
from r2r_jax.parallel.rules import MESH_AXES
from r2r_jax.train.lowering import abstract_batch, abstract_student, lower_train_step
from r2r_jax.train.student import join_variables


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

    kind, dims = parse_topology(topology)
    if kind == "h100":
        count = dims[0]
        devices = jax.devices("cpu")
        if len(devices) < count:
            raise ValueError(f"{topology} needs {count} fake CPU devices, have {len(devices)}: set "
                             f"XLA_FLAGS=--xla_force_host_platform_device_count={count} before JAX starts")
        return Target(topology, CHIPS[kind], devices[:count], estimate=True)
    from jax.experimental import topologies

    chips = 1
    for d in dims:
        chips *= d
    prepare_environment(kind, chips)
    kwargs = {}
    if kind in ("v5e", "v6e") and chips == 8 and len(dims) == 2:
        kwargs["chips_per_host_bounds"] = [dims[0], dims[1], 1]  # v5litepod-8 / v6e-8: one host, 8 chips
    desc = topologies.get_topology_desc(topology_name=topology, platform="tpu", **kwargs)
    return Target(topology, CHIPS[kind], list(desc.devices), estimate=False)


# ---------------------------------------------------------------- lowering


def lower_score_step(cfg, mesh, sequences: int, length: int, last_only: bool = True):
    """The scoring step (`make_score_step`: prompt-only forward, score at the last position)."""
    model, frozen, trainable = abstract_student(cfg, mesh)
    batch = abstract_batch({"input_ids": (sequences, length), "attention_mask": (sequences, length)}, mesh)
    return make_score_step(model, last_only, mesh).lower(join_variables(frozen, trainable), batch["input_ids"],
                                                         batch["attention_mask"])


# ---------------------------------------------------------------- reading the figures


@dataclass(frozen=True)
class Costs:
    """What XLA's cost analysis reports for one compiled program (per chip for a sharded one)."""

    flops: float
    bytes_accessed: float

    def __add__(self, other: Costs) -> Costs:
        return Costs(self.flops + other.flops, self.bytes_accessed + other.bytes_accessed)

    def __sub__(self, other: Costs) -> Costs:
        return Costs(self.flops - other.flops, self.bytes_accessed - other.bytes_accessed)

    def __mul__(self, k: float) -> Costs:
        return Costs(self.flops * k, self.bytes_accessed * k)


def cost_of(compiled) -> Costs:
    """FLOPs and bytes accessed from XLA's cost analysis (loop bodies counted once; Pallas kernels not at all)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0]
    return Costs(float(analysis.get("flops", 0.0)), float(analysis.get("bytes accessed", 0.0)))


def _counting_variant(cfg, layers: int, queries: int):
    model = dataclasses.replace(cfg.model, num_hidden_layers=layers, scan_layers=False)
    loss = dataclasses.replace(cfg.loss, gen_chunk=max(cfg.data.max_target_len, 1))
    return dataclasses.replace(cfg, model=model, loss=loss, micro_batches=1, batch_size=queries)


@dataclass(frozen=True)
class MeasuredCosts:
    flops: float  # global, one step
    bytes_per_chip: float  # HBM traffic of one chip's share of the step


def measured_costs(cfg, mesh_shape: dict[str, int], device, step: str = "train", sequences: int = 0,
                   length: int = 0) -> MeasuredCosts:
    """Global FLOPs and per-chip bytes accessed of one step by XLA's cost analysis, loops accounted for.

    The step is compiled unrolled with one and two layers, one loss chunk and one micro-batch, on one chip
    holding one data shard's queries (or prompts), and extrapolated linearly in the number of layers (the
    layers are identical). One chip, because partitioning adds only communication, while the TPU compiler's
    collective matmuls put sharded dots inside loops that cost analysis counts once. FLOPs scale to the
    whole batch by the data-parallel degree. Bytes are that one chip's traffic with whole (gathered)
    weights, split over the `tensor` axis: a lower bound on a chip's HBM traffic, as the step-time bound
    built on it must be. Remat recomputation is in both figures (the real step's policy is compiled)."""
    from jax.sharding import Mesh

    mesh = Mesh(np.asarray([device]).reshape(1, 1, 1), MESH_AXES)
    shards = max(mesh_shape.get("data", 1) * mesh_shape.get("fsdp", 1), 1)
    per_shard = max(-(-(cfg.batch_size if step == "train" else sequences) // shards), 1)
    counts = []
    for layers in (1, 2):
        if step == "train":
            lowered = lower_train_step(_counting_variant(cfg, layers, per_shard), mesh)
        else:
            lowered = lower_score_step(_counting_variant(cfg, layers, cfg.batch_size), mesh, per_shard, length)
        counts.append(cost_of(lowered.compile()))
    one, two = counts
    shard = one + (two - one) * (cfg.model.num_hidden_layers - 1)
    total = cfg.batch_size if step == "train" else sequences
    return MeasuredCosts(shard.flops * total / per_shard, shard.bytes_accessed / max(mesh_shape.get("tensor", 1), 1))
