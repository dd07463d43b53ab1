"""`model.remat_policy: auto`: the least recomputation whose compiled train step fits the accelerator.

The policies, from least recomputation to least memory (`model/llama.py` names what each keeps):
none, projections, mlp_attention_out, mlp_key_value, mlp, full. For each, the real train step is compiled on abstract
inputs (`train/lowering.py`; no weight is allocated) and its per-chip memory (`memory_analysis`) compared
with the chip's memory less `HEADROOM`: the compiler's figure leaves out the allocator's fragmentation and
the runtime's own buffers. When a policy does not fit in one pass, more micro-batches (gradient
accumulation: the same FLOPs, activations held for fewer sequences at once) are tried before a policy
that recomputes more: recomputation costs FLOPs, micro-batches only smaller matrix products.
The first micro-batch count tried after a miss is the smallest one the miss's temporaries, scaled down,
predict to fit; every choice is confirmed by a compile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from r2r_jax.config import TrainConfig
from r2r_jax.train.lowering import DoesNotFit, compile_lowered, lower_train_step, memory_of

# least recomputation first for grouped-query attention of 2:1 or more (Llama 3's 4:1): there q + k + v are
# no larger than q + o, so mlp_attention_out recomputes no more than mlp_key_value, which keeps less
AUTO_ORDER = ("none", "projections", "mlp_attention_out", "mlp_key_value", "mlp", "full")
HEADROOM = 0.10  # share of the chip's memory left free


@dataclass(frozen=True)
class Attempt:
    policy: str
    micro_batches: int
    total: int | None  # per-chip bytes the compiler planned (temporaries alone when it refused)
    temporaries: int | None
    fits: bool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RematChoice:
    policy: str
    micro_batches: int
    budget: int  # per-chip bytes allowed: the chip's memory less HEADROOM
    attempts: tuple[Attempt, ...]
    compiled: object = None  # the chosen step's compiled program (None when nothing fit)

    def to_dict(self) -> dict:
        return {"policy": self.policy, "micro_batches": self.micro_batches, "budget": self.budget,
                "headroom": HEADROOM, "attempts": [a.to_dict() for a in self.attempts]}


def micro_batch_options(cfg: TrainConfig, data_shards: int) -> list[int]:
    """Micro-batch counts from the configured one up that split the batch evenly over the data shards."""
    return [m for m in range(cfg.micro_batches, cfg.batch_size + 1)
            if cfg.batch_size % m == 0 and (cfg.batch_size // m) % data_shards == 0]


def with_policy(cfg: TrainConfig, policy: str, micro_batches: int) -> TrainConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, remat_policy=policy),
                               micro_batches=micro_batches)


def _try(cfg: TrainConfig, mesh, budget: int, policy: str, micro_batches: int) -> tuple[Attempt, object]:
    try:
        compiled = compile_lowered(lower_train_step(with_policy(cfg, policy, micro_batches), mesh))
    except DoesNotFit as refused:
        return Attempt(policy, micro_batches, None, refused.needed, False), None
    memory = memory_of(compiled)
    return Attempt(policy, micro_batches, memory.total, memory.temporaries, memory.total <= budget), compiled


def _predicted_fit(miss: Attempt, options: list[int], budget: int) -> int | None:
    """The smallest micro-batch count after `miss` whose scaled temporaries bring the total under budget."""
    if miss.temporaries is None:
        return next((m for m in options if m > miss.micro_batches), None)
    fixed = (miss.total - miss.temporaries) if miss.total is not None else 0
    for m in options:
        if m > miss.micro_batches and fixed + miss.temporaries * miss.micro_batches / m <= budget:
            return m
    return None


def choose_remat(cfg: TrainConfig, mesh, memory_bytes: int,
                 report: Callable[[str], None] = lambda _: None) -> RematChoice:
    """The first policy of AUTO_ORDER (with the fewest micro-batches) whose compiled step fits; `full` with
    the most micro-batches when nothing does (the caller's own compile then reports the shortfall)."""
    budget = int(memory_bytes * (1 - HEADROOM))
    shards = mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1)
    options = micro_batch_options(cfg, shards) or [cfg.micro_batches]
    attempts: list[Attempt] = []
    for policy in AUTO_ORDER:
        m: int | None = options[0]
        while m is not None:
            attempt, compiled = _try(cfg, mesh, budget, policy, m)
            attempts.append(attempt)
            if attempt.total is not None:
                planned = f"{attempt.total / 2**30:.2f} GiB"
            elif attempt.temporaries is not None:
                planned = f"refused by the compiler ({attempt.temporaries / 2**30:.2f} GiB of temporaries)"
            else:
                planned = "refused by the compiler"
            report(f"remat {policy}, micro_batches {m}: {planned} per chip of a {budget / 2**30:.2f} GiB budget"
                   f" -> {'fits' if attempt.fits else 'over'}")
            if attempt.fits:
                return RematChoice(policy, m, budget, tuple(attempts), compiled)
            m = _predicted_fit(attempt, options, budget)
    return RematChoice("full", options[-1], budget, tuple(attempts))


def device_memory_limit() -> int | None:
    """Bytes one local accelerator may allocate, or None where the runtime does not say (CPU hosts)."""
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def resolve_auto(cfg: TrainConfig, mesh, model_cfg, report: Callable[[str], None]) -> TrainConfig:
    """`r2r train` with `remat_policy: auto`: the chosen policy and micro-batch count in place of `auto`
    (the run folder's config.yaml records them). `model_cfg` is the model's real shape (the base's)."""
    if cfg.model.remat_policy != "auto":
        return cfg
    limit = device_memory_limit()
    if limit is None:
        report("remat auto: the device reports no memory limit (a CPU host): remat none")
        return with_policy(cfg, "none", cfg.micro_batches)
    shaped = dataclasses.replace(cfg, model=dataclasses.replace(model_cfg, remat_policy="auto"))
    choice = choose_remat(shaped, mesh, limit, report)
    report(f"remat auto: chose {choice.policy}, micro_batches {choice.micro_batches}")
    return with_policy(cfg, choice.policy, choice.micro_batches)
