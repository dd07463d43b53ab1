"""Batch placement: which devices hold which rows, per-host batches to global arrays, results back to host.

One rule (`batch_sharding`: rows over the data-parallel mesh axes) decides how many devices split a batch
(`data_parallel_size`) for training, dev evaluation and reranking alike."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from r2r_jax.parallel.rules import logical_to_mesh_spec


def batch_sharding(ndim: int, mesh: Mesh) -> NamedSharding:
    """Leading axis over the data-parallel mesh axes, the rest replicated."""
    return NamedSharding(mesh, logical_to_mesh_spec(("batch",) + (None,) * (ndim - 1)))


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
    """Assemble global arrays from this process's rows (its contiguous share of the global batch)."""
    out = {}
    for name, value in local.items():
        sharding = batch_sharding(value.ndim, mesh)
        out[name] = jax.make_array_from_process_local_data(sharding, np.asarray(value))
    return out


def data_parallel_size(mesh: Mesh | None) -> int:
    """How many data-parallel devices split a batch's rows (1 without a mesh)."""
    if mesh is None:
        return 1
    return mesh.size // batch_sharding(2, mesh).shard_shape((mesh.size, 1))[0]


def place(x: np.ndarray, mesh: Mesh | None) -> np.ndarray | jax.Array:
    """A host array whose first axis is batch rows, split over the mesh's data axes. Every process holds the
    whole array and places its own devices' rows (no cross-host transfer)."""
    if mesh is None:
        return x
    sh = batch_sharding(x.ndim, mesh)
    return jax.make_array_from_callback(x.shape, sh, lambda i, a=x: a[i])


def to_host(x: jax.Array) -> np.ndarray:
    """A result as numpy on every process, also when the mesh spans several hosts."""
    if not x.is_fully_addressable:
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))
