"""Declarative sharding: logical axis names on every array, one table mapping them to mesh axes.

Changing the parallel strategy means editing `RULES`, never the model (MaxText's idea). It is the only
table: parameters (`tree_shardings`), batches (`parallel.batch`) and activations (`constrain` inside
`activation_sharding`) all read it, so they cannot be sharded by two different tables.
Mesh axes: ("data", "fsdp", "tensor").
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import ParamSpec, TypeVar

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
P = ParamSpec("P")
R = TypeVar("R")

LogicalRules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

RULES: LogicalRules = (
    ("batch", ("data", "fsdp")),  # activations: batch split over every data-parallel device
    ("group", None),
    ("seq", None),
    ("embed", "fsdp"),  # parameters: ZeRO-3 style over fsdp
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("layers", None),
    ("lora_rank", None),
    ("score", None),
    ("act_embed", None),  # activations' hidden dim: replicated (sequence-free FSDP)
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
)


def logical_to_mesh_spec(names: Sequence[str | None], shape: Sequence[int] | None = None,
                         mesh: Mesh | None = None) -> PartitionSpec:
    """Translate logical names to a PartitionSpec by `RULES`. A mesh axis is used at most once per array, and
    when `shape` and `mesh` are given a dimension that the mesh axes do not divide stays unsharded."""
    table = dict(RULES)
    used: set[str] = set()
    out: list = []
    for i, name in enumerate(names):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used)
        if mesh is not None:
            axes = tuple(a for a in axes if mesh.shape[a] > 1)
        if shape is not None and mesh is not None and axes:
            size = 1
            for a in axes:
                size *= mesh.shape[a]
            if shape[i] % size:
                axes = ()
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def tree_shardings(abstract_boxed, mesh: Mesh):
    """NamedShardings for a tree of (abstract) arrays boxed with `nn.LogicallyPartitioned`.
    Unboxed leaves are replicated."""

    def one(leaf):
        if isinstance(leaf, nn.LogicallyPartitioned):
            value = leaf.value
            return NamedSharding(mesh, logical_to_mesh_spec(leaf.names, value.shape, mesh))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(one, abstract_boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


_state = threading.local()


@contextlib.contextmanager
def activation_sharding(mesh: Mesh | None) -> Iterator[None]:
    """While tracing inside this context, `constrain` pins activations to `RULES`' shardings on `mesh`."""
    previous = getattr(_state, "value", None)
    _state.value = mesh
    try:
        yield
    finally:
        _state.value = previous


def current() -> Mesh | None:
    """The mesh of the enclosing `activation_sharding`, or None outside one."""
    return getattr(_state, "value", None)


def traced_under(fn: Callable[P, R], mesh: Mesh | None) -> Callable[P, R]:
    """`fn` whose body runs inside `activation_sharding(mesh)`: wrap a step function before `jax.jit`, so
    every trace of it (first call, new shapes, `.lower`) pins activations and lets splash attention split
    its Pallas call per shard. `mesh=None` returns `fn` itself (an enclosing context still applies)."""
    if mesh is None:
        return fn

    @functools.wraps(fn)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with activation_sharding(mesh):
            return fn(*args, **kwargs)

    return wrapped


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Sharding constraint by logical names; a no-op outside `activation_sharding` or on one device."""
    mesh = current()
    if mesh is None or mesh.size == 1:
        return x
    spec = logical_to_mesh_spec(names, x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def shards_of(names: Sequence[str | None], shape: Sequence[int]) -> int:
    """How many pieces `constrain(x, names)` cuts an array of `shape` into (1 outside `activation_sharding`)."""
    mesh = current()
    if mesh is None:
        return 1
    count = 1
    for entry in logical_to_mesh_spec(names, shape, mesh):
        for axis in (entry,) if isinstance(entry, str) else entry or ():
            count *= mesh.shape[axis]
    return count
