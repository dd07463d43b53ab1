"""The two layer layouts of one model: stacked (`model/layers/...` with a leading layer axis, what `nn.scan`
uses, what import and export stream) and unrolled (`model/layers_{i}/...`, what `scan_layers=false` uses).

Unrolled layers cost compile time but save work on CPUs: a scanned backward pass keeps each layer's
activations by copying them into stacked buffers. These functions move any variable tree (params, LoRA, or
their shardings' arrays) between the layouts, so an unrolled run can import an HF base and export again.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def is_unrolled(tree: dict) -> bool:
    return isinstance(tree.get("model"), dict) and "layers_0" in tree["model"]


def unstack_layers(tree: dict, num_layers: int, consume: bool = False) -> dict:
    """`{"model": {"layers": x[L, ...]}}` -> `{"model": {"layers_0": x[0], ...}}`; other entries unchanged.
    `consume=True` deletes each stacked array once it is sliced, so the layers are never held twice."""
    model = dict(tree["model"])
    stacked = model.pop("layers")
    leaves, treedef = jax.tree.flatten(stacked)
    per_layer: list[list[jax.Array]] = [[] for _ in range(num_layers)]
    for leaf in leaves:
        for i in range(num_layers):
            per_layer[i].append(leaf[i])
        if consume:  # every slice of this leaf must be computed before its buffer goes
            jax.block_until_ready([layer[-1] for layer in per_layer])
            leaf.delete()
    for i in range(num_layers):
        model[f"layers_{i}"] = jax.tree.unflatten(treedef, per_layer[i])
    return {**tree, "model": model}


def stack_layers(tree: dict) -> dict:
    """The inverse of `unstack_layers` (a no-op on a stacked tree)."""
    if not is_unrolled(tree):
        return tree
    model = dict(tree["model"])
    n = sum(1 for k in model if k.startswith("layers_"))
    layers = [model.pop(f"layers_{i}") for i in range(n)]
    model["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    return {**tree, "model": model}
