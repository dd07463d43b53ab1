"""LoRA by hand: a dense layer whose frozen kernel lives in `params` and whose adapters live in `lora`.

    y = x·W + (alpha/r)·(x·Aᵀ)·Bᵀ,   A: (r, in) small random,  B: (out, r) zeros

A and B use PEFT's (lora_A.weight, lora_B.weight) layouts, so export is a rename. `W + BA` is never
formed in training; `merge_lora` folds the adapters into the kernels for export.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LORA_COLLECTION = "lora"


def _kaiming_uniform_rows(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """PEFT's default for A: kaiming_uniform(a=sqrt(5)) over `in`, i.e. U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1.0 / math.sqrt(shape[-1])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class LoraDense(nn.Module):
    """Bias-free dense layer (HF Linear) with an optional LoRA adapter."""

    features: int
    axes: tuple[str, str]  # logical names of (in, out)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    lora_rank: int = 0  # 0: no adapter
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    init_std: float = 0.02  # the frozen kernel's random init (HF initializer_range), for random-init bases

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), self.axes),
            (in_features, self.features),
            self.param_dtype,
        )
        x = x.astype(self.dtype)
        y = jnp.einsum("...i,io->...o", x, kernel.astype(self.dtype))
        if self.lora_rank <= 0:
            return y
        in_axis, out_axis = self.axes
        a = self.variable(
            LORA_COLLECTION, "lora_a",
            lambda: nn.with_logical_partitioning(_kaiming_uniform_rows, ("lora_rank", in_axis))(
                self.make_rng("params"), (self.lora_rank, in_features), jnp.float32),
        ).value
        b = self.variable(
            LORA_COLLECTION, "lora_b",
            lambda: nn.with_logical_partitioning(nn.initializers.zeros, (out_axis, "lora_rank"))(
                self.make_rng("params"), (self.features, self.lora_rank), jnp.float32),
        ).value
        if self.lora_dropout > 0 and self.has_rng("dropout"):
            x = nn.Dropout(self.lora_dropout)(x, deterministic=False)
        # Tokens flattened to one axis: the adapters' weight gradients then contract a single axis. With (batch,
        # seq) both contracted, XLA's dot canonicalisation transposes the whole activation gradient first, which
        # made the LoRA backward ~2x slower than the frozen projection itself on CPU.
        # The alpha/r scale is applied to the rank-r activations, not to the output: in the backward pass the
        # scale's transpose then touches (tokens, r) instead of a full (tokens, out) cotangent.
        x2 = x.reshape(-1, in_features)
        down = jnp.einsum("ni,ri->nr", x2, a.astype(self.dtype)) * (self.lora_alpha / self.lora_rank)
        up = jnp.einsum("nr,or->no", down, b.astype(self.dtype)).reshape(y.shape)
        return y + up


def lora_delta(lora_a: jax.Array, lora_b: jax.Array, scale: float) -> jax.Array:
    """The kernel-layout (in, out) update `scale·(B·A)ᵀ`; works on layer-stacked (L, ...) adapters too."""
    return scale * jnp.einsum("...ri,...or->...io", lora_a.astype(jnp.float32), lora_b.astype(jnp.float32))


def merge_lora(params: dict, lora: dict, scale: float) -> dict:
    """Fold adapters into kernels: returns new params where every adapted kernel is W + scale·(BA)ᵀ,
    computed in float32 and cast back to the kernel's dtype."""

    def walk(p: dict, lo: dict | None) -> dict:
        out = {}
        for name, value in p.items():
            sub = None if lo is None else lo.get(name)
            if isinstance(value, dict):
                out[name] = walk(value, sub)
            elif name == "kernel" and lo is not None and "lora_a" in lo:
                merged = value.astype(jnp.float32) + lora_delta(lo["lora_a"], lo["lora_b"], scale)
                out[name] = merged.astype(value.dtype)
            else:
                out[name] = value
        return out

    return walk(params, lora)
