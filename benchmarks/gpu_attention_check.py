"""On a lent GPU: does cuDNN flash attention (model.attention = "cudnn") mask exactly like the XLA reference?

    python benchmarks/gpu_attention_check.py [--heads 32 --kv-heads 8 --head-dim 128 --length 1024 --batch 4]

Both go through `r2r_jax.model.attention.dot_product_attention`, so the masks are the project's own: key valid
and not in the future. The batches mix left padding (scoring prompts), right padding (reason targets), both,
and a row without padding. Outputs and the gradients of q, k and v are compared at real query positions
(padding rows are only required to be finite), in bfloat16 against a float32 XLA reference. Prints one line
per check, the time of each implementation, and exits non-zero on any failure. Not run in CI: it needs CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from r2r_jax.model.attention import dot_product_attention


def padded_valid(batch: int, length: int, seed: int) -> np.ndarray:
    """(B, S) validity: row 0 left-padded, row 1 right-padded, row 2 both, row 3 full, the rest random."""
    rng = np.random.default_rng(seed)
    valid = np.ones((batch, length), bool)
    for b in range(batch):
        kind = b if b < 4 else int(rng.integers(0, 4))
        left = int(rng.integers(1, length // 2)) if kind in (0, 2) else 0
        right = int(rng.integers(1, length // 4)) if kind in (1, 2) else 0
        valid[b, :left] = False
        valid[b, length - right:] = False
    return valid


def _loss(impl: str, valid: jax.Array):
    def f(q, k, v):
        out = dot_product_attention(q, k, v, valid, 0, impl=impl).astype(jnp.float32)
        return jnp.sum(jnp.where(valid[:, :, None, None], out, 0.0) ** 2), out

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))


def _time(fn, *args, repeats: int = 10) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--atol", type=float, default=2e-2, help="bf16 tolerance, relative to the output scale")
    args = parser.parse_args(argv)
    if jax.default_backend() != "gpu":
        print(f"needs a CUDA GPU; the default backend is {jax.default_backend()}", file=sys.stderr)
        return 2
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    b, s, h, kv, d = args.batch, args.length, args.heads, args.kv_heads, args.head_dim
    keys = jax.random.split(jax.random.key(0), 3)
    q32 = jax.random.normal(keys[0], (b, s, h, d), jnp.float32)
    k32 = jax.random.normal(keys[1], (b, s, kv, d), jnp.float32)
    v32 = jax.random.normal(keys[2], (b, s, kv, d), jnp.float32)
    valid = jnp.asarray(padded_valid(b, s, 0))
    bf = [x.astype(jnp.bfloat16) for x in (q32, k32, v32)]
    reference = _loss("xla", valid)
    (_, ref_out), ref_grads = reference(*[x.astype(jnp.float32) for x in bf])
    cudnn = _loss("cudnn", valid)
    (_, out), grads = cudnn(*bf)
    real = np.asarray(valid)
    failures = 0

    def check(name: str, got, want, rows: np.ndarray | None) -> None:
        nonlocal failures
        got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
        finite = bool(np.isfinite(got).all())
        sel = (lambda x: x[rows]) if rows is not None else (lambda x: x)
        scale = max(float(np.abs(sel(want)).max()), 1e-6)
        err = float(np.abs(sel(got) - sel(want)).max()) / scale
        ok = finite and err <= args.atol
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name:<10} max error / scale {err:.2e}  finite {finite}")

    check("output", out, ref_out, real)
    check("grad q", grads[0], ref_grads[0], real)
    check("grad k", grads[1], ref_grads[1], real)
    check("grad v", grads[2], ref_grads[2], real)
    xla_bf16 = _loss("xla", valid)
    print(f"time fwd+bwd: cudnn {_time(cudnn, *bf) * 1e3:.2f} ms, xla {_time(xla_bf16, *bf) * 1e3:.2f} ms "
          f"(B={b}, S={s}, H={h}, K={kv}, D={d}, bf16)")
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
