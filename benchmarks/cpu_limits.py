"""What bounds the CPU targets: the figures of docs/benchmarks.md's "How far the targets are" section.

    python -m benchmarks.cpu_limits [--json out.json]

Matmul rates per dtype through XLA and torch (2048³), the medium preset's projection shapes forward and
transposed-backward, two independent matmuls in one jit run concurrently vs serialized, `exp` and SwiGLU
over a medium MLP activation, first-fit-decreasing packing of the benchmark's synthetic lengths, and the
share of DL19 prompt tokens that each query's candidates have in common.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from .common import add_run_options, preset, start_timed_run
from .common import write_json as emit


def _seconds(fn: Callable[..., object], *args: object, reps: int = 5) -> float:
    """Mean seconds of `fn(*args)` after one warm-up call (JAX results waited for)."""
    import jax

    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / reps


def matmul_rates() -> dict:
    import jax
    import jax.numpy as jnp
    import torch

    n, out = 2048, {}
    for dtype in ("float32", "bfloat16"):
        a = jnp.ones((n, n), dtype)
        f = jax.jit(jnp.matmul)
        ta = torch.ones(n, n, dtype=getattr(torch, dtype))
        out[dtype] = {"jax": 2 * n**3 / _seconds(f, a, a) / 1e9,
                      "torch": 2 * n**3 / _seconds(torch.matmul, ta, ta) / 1e9}
    return out


def step_shapes() -> dict:
    """GFLOP/s of the medium preset's projections (2048 tokens), forward x·W and backward dy·Wᵀ."""
    import jax
    import jax.numpy as jnp
    import torch

    m, e, i = 2048, preset("medium").model.hidden_size, preset("medium").model.intermediate_size
    fwd, bwd = jax.jit(lambda x, w: x @ w), jax.jit(lambda dy, w: dy @ w.T)
    out = {}
    for k, n in ((e, e), (e, e // 4), (e, i), (i, e)):
        x, w, dy = jnp.ones((m, k)), jnp.ones((k, n)), jnp.ones((m, n))
        tx, tw, tdy = torch.ones(m, k), torch.ones(n, k), torch.ones(m, n)
        flops = 2 * m * k * n / 1e9
        out[f"{m}x{k}x{n}"] = {
            "jax_fwd": flops / _seconds(fwd, x, w), "jax_bwd": flops / _seconds(bwd, dy, w),
            "torch_fwd": flops / _seconds(torch.nn.functional.linear, tx, tw),
            "torch_bwd": flops / _seconds(torch.matmul, tdy, tw)}
    return out


def concurrency() -> dict:
    """Two independent 2048×1024×3584 matmuls in one jit: as XLA schedules them vs forced one after the other."""
    import jax
    import jax.numpy as jnp

    x, a, b = jnp.ones((2048, 1024)), jnp.ones((1024, 3584)), jnp.ones((1024, 3584))
    flops = 2 * 2 * 2048 * 1024 * 3584 / 1e9

    def serial(x, a, b):
        y = x @ a
        return y, x @ jax.lax.optimization_barrier((y, b))[1]

    both, one_then_other = jax.jit(lambda x, a, b: (x @ a, x @ b)), jax.jit(serial)
    return {"concurrent": flops / _seconds(both, x, a, b), "serialized": flops / _seconds(one_then_other, x, a, b)}


def elementwise() -> dict:
    """Milliseconds of exp and of silu(g)·u over a (2048, 3584) float32 activation."""
    import jax
    import jax.numpy as jnp
    import torch

    g = jax.random.normal(jax.random.key(0), (2048, 3584))
    tg = torch.randn(2048, 3584)
    exp, swiglu = jax.jit(jnp.exp), jax.jit(lambda g: jax.nn.silu(g) * g)
    return {"jax_exp_ms": 1e3 * _seconds(exp, g, reps=10), "torch_exp_ms": 1e3 * _seconds(torch.exp, tg, reps=10),
            "jax_swiglu_ms": 1e3 * _seconds(swiglu, g, reps=10),
            "torch_swiglu_ms": 1e3 * _seconds(lambda t: torch.nn.functional.silu(t) * t, tg, reps=10)}


def packing(batches: int = 2000, seed: int = 0) -> dict:
    """Positions after first-fit-decreasing packing of `synthetic_batch`'s lengths into rows, vs padded rows."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("small", "medium"):
        s = preset(name).shape
        n, padded = s.sequences, s.sequences * (s.prompt + s.target)
        for row in (256, 512):
            used = []
            for _ in range(batches):
                lengths = rng.integers(s.prompt // 2, s.prompt + 1, n) + rng.integers(s.target // 2, s.target + 1, n)
                rows: list[int] = []
                for length in sorted(lengths, reverse=True):
                    fit = next((r for r, filled in enumerate(rows) if filled + length <= row), None)
                    if fit is None:
                        rows.append(int(length))
                    else:
                        rows[fit] += int(length)
                used.append(len(rows) * row)
            out[f"{name}_rows_of_{row}"] = {"mean_positions": float(np.mean(used)), "padded_positions": padded,
                                            "saving": 1 - float(np.mean(used)) / padded}
    return out


def shared_prefix_share(max_len: int = 256) -> dict:
    """Share of all DL19 prompt tokens (default template, Llama-3.1 tokenizer) shared within each query."""
    from r2r_jax.data.candidates import read_candidates
    from r2r_jax.inference.prefix import query_groups

    from .common import DL19
    from .jax_stack import per_query
    from .rerank import load_prompts, query_sizes

    queries = len(read_candidates(DL19))
    ids, mask, _ = load_prompts(queries, max_len)
    shared = total = 0
    for group in query_groups(per_query(ids, mask, query_sizes(queries))):
        for _, _, j in group.owners:
            shared += len(group.prefixes[j])
        total += sum(len(group.prefixes[j]) for _, _, j in group.owners) + sum(len(t) for t in group.suffixes)
    return {"queries": queries, "prompt_tokens": int(total), "shared_fraction": shared / total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(ap)
    args = ap.parse_args(argv)
    _, info = start_timed_run(args, "jax", "jaxlib", "torch")
    out = {"benchmark": "cpu_limits", "machine": info, "matmul_gflops": matmul_rates(),
           "medium_shapes_gflops": step_shapes(), "two_matmuls_gflops": concurrency(),
           "elementwise": elementwise(), "packing": packing(), "dl19_shared_prefix": shared_prefix_share()}
    emit(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
