"""Per-host batches to global arrays: each process holds only its slice of the global batch."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from r2r_jax.parallel.rules import DEFAULT_RULES, LogicalRules, logical_to_mesh_spec


def batch_sharding(ndim: int, mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> NamedSharding:
    """Leading axis over the data-parallel mesh axes, the rest replicated."""
    return NamedSharding(mesh, logical_to_mesh_spec(("batch",) + (None,) * (ndim - 1), rules))


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> dict:
    """Assemble global arrays from this process's rows (its contiguous share of the global batch)."""
    out = {}
    for name, value in local.items():
        sharding = batch_sharding(value.ndim, mesh, rules)
        out[name] = jax.make_array_from_process_local_data(sharding, np.asarray(value))
    return out
