"""The JAX side: the project's own student, train step and scoring path, exactly as `r2r train` / `r2r rerank`
build them (build_student -> make_train_step -> jit_train_step with shardings; make_score_step +
score_prompts for length-batched scoring), on a one-device mesh."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from r2r_jax.config import MeshConfig, ModelConfig, OptimConfig
from r2r_jax.parallel.batch import batch_sharding, global_batch
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.train.step import (
    init_train_state,
    jit_train_step,
    learning_rate_schedule,
    make_optimizer,
    make_train_step,
    state_shardings,
)
from r2r_jax.train.student import Student, build_student

from .common import Preset


def one_device_mesh():
    return make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), jax.devices()[:1])


def student(p: Preset, base_params: dict | None = None, seed: int = 0) -> tuple[Student, dict]:
    """The student of preset `p` and its initial trainable tree: a random-init base, or `base_params` (e.g.
    imported from an HF folder)."""
    return build_student(p.model, p.lora, one_device_mesh(), jax.random.key(seed), base_params)


class JaxTrainStep:
    """The jitted R2R train step over a fixed batch; `__call__` runs one step and waits for it."""

    def __init__(self, p: Preset, st: Student, trainable: dict, batch: dict[str, np.ndarray], steps: int = 1000):
        optim = OptimConfig(learning_rate=1e-4, warmup_steps=0, schedule="constant")
        optimizer = make_optimizer(optim, steps)
        step = make_train_step(st.model, p.loss, optimizer, learning_rate_schedule(optim, steps))
        mesh = jax.tree.leaves(st.trainable_shardings)[0].mesh
        self.state = init_train_state(trainable, optimizer, st.trainable_shardings)
        b_sh = {k: batch_sharding(v.ndim, mesh) for k, v in batch.items()}
        self.fn = jit_train_step(step, state_shardings(self.state), st.frozen_shardings, b_sh)
        self.frozen = st.frozen
        self.batch = global_batch(batch, mesh)
        self.rng = jax.random.key(0)
        self.last_metrics: dict = {}

    def compile(self) -> float:
        """Seconds to lower and compile (the first call would otherwise include it)."""
        start = time.perf_counter()
        self.fn = self.fn.lower(self.state, self.frozen, self.batch, self.rng).compile()
        return time.perf_counter() - start

    def __call__(self) -> float:
        self.state, metrics = self.fn(self.state, self.frozen, self.batch, self.rng)
        jax.block_until_ready(self.state)
        self.last_metrics = metrics
        return float(metrics["loss"])

    def losses(self) -> dict[str, float]:
        return {k: float(self.last_metrics[f"loss_{k}"]) for k in ("pair", "list", "gen")}


def peak_matmul(n: int, reps: int) -> list[float]:
    """FLOP/s of an n×n float32 matmul through XLA, one figure per repetition."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        f(a, b).block_until_ready()
        rates.append(2.0 * n**3 / (time.perf_counter() - start))
    return rates


def per_query(ids: np.ndarray, mask: np.ndarray, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stacked prompt rows [N, P] cut back into each query's (ids, mask), `sizes` rows each, in order."""
    bounds = np.cumsum([0] + list(sizes))
    return [(ids[a:b], mask[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def scorer(model, variables, batch_size: int, pad_multiple: int = 16,
           query_sizes: list[int] | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """`scores(ids, mask)` through the rerank job's path. With `query_sizes` (the rows of each query, in
    order) each query's shared prompt prefix runs once (`inference.prefix`, the job's default); without, every
    prompt runs whole (make_score_step + length-batched score_prompts)."""
    from r2r_jax.inference.score_step import make_score_step
    from r2r_jax.inference.scoring import score_prompts

    if query_sizes:
        from r2r_jax.inference.prefix import make_prefix_steps, score_with_shared_prefixes

        steps = make_prefix_steps(model)

        def shared(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return np.concatenate(score_with_shared_prefixes(steps, variables, per_query(ids, mask, query_sizes),
                                                             batch_size, pad_multiple=pad_multiple))

        return shared
    fn = make_score_step(model)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return score_prompts(fn, variables, ids, mask, batch_size, pad_multiple=pad_multiple)

    return run


def model_config_f32(cfg: ModelConfig) -> ModelConfig:
    from dataclasses import replace

    return replace(cfg, dtype="float32", param_dtype="float32", remat_policy="none")
