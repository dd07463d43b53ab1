"""The jitted R2R train step: combined loss, gradients for LoRA + score head only, AdamW, accumulation.

Batch layout (from `r2r_jax.data.features`): per query a group of G sequences
`[left-padded scoring prompt (P) | direct reason target (T)]`; the score is read at index P-1 and the
reason tokens are predicted from positions P-1 .. P+T-2, so one forward pass yields both. A group's negatives
(the rows after its G teacher passages) have no reason and run as their P prompt positions only. Comparison
sequences `[prompt (Pc) | comparison target (T)]` add generation loss only. A packed batch
(`r2r_jax.data.packing`) holds the scoring sequences several to a row; the score and reason positions are
then gathered by index from the packed rows' hidden states, and the losses are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from r2r_jax.config import LossConfig, OptimConfig
from r2r_jax.data.packing import is_packed
from r2r_jax.model.llama import LlamaForRanking, lm_head_param
from r2r_jax.parallel.rules import constrain, traced_under
from r2r_jax.train.losses import LossDenominators, loss_denominators, no_tokens, r2r_loss
from r2r_jax.train.student import join_variables
from r2r_jax.train.target_compaction import compacted_token_ce_sum


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    trainable: Any
    opt_state: Any


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Warm-up then decay over `cfg.schedule_steps`, or over the run's `total_steps` when that is 0."""
    total_steps = cfg.schedule_steps or total_steps
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if cfg.schedule == "constant":
        decay = optax.constant_schedule(cfg.learning_rate)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(cfg.learning_rate, 0.0, max(total_steps - warmup, 1))
    else:
        decay = optax.cosine_decay_schedule(cfg.learning_rate, max(total_steps - warmup, 1))
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, warmup), decay], [warmup])


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Clipped AdamW over the trainable tree ({"score", "lora"}); the score head's updates scaled by
    `head_lr_multiplier` (left out at 1, so the optimizer state of such runs is unchanged)."""
    parts = [
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.adamw(learning_rate_schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay),
    ]
    if cfg.head_lr_multiplier != 1.0:
        parts.append(optax.masked(optax.scale(cfg.head_lr_multiplier), _score_head_mask))
    return optax.chain(*parts)


def _score_head_mask(trainable: Any) -> Any:
    return {name: jax.tree.map(lambda _, is_head=(name == "score"): is_head, part) for name, part in trainable.items()}


def _reason_ce(model, variables, hidden, target_ids, target_mask, loss_cfg: LossConfig):
    """(CE sum, CE count) of reason tokens from the hidden states `[N, T, E]` that predict them."""
    head, head_is_embedding = lm_head_param(variables["params"], model.cfg)
    return compacted_token_ce_sum(hidden, head, target_ids, target_mask, loss_cfg.gen_chunk, loss_cfg.gen_capacity,
                                  head_is_embedding=head_is_embedding, head_grad=False)  # the LM head is frozen


def _flat_rows(x: jax.Array) -> jax.Array:
    """(B, G, ...) -> (B·G, ...), still split over the data-parallel axes."""
    return constrain(x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), ("batch",) + (None,) * (x.ndim - 2))


def _sequence_ce(model, variables, ids, mask, target_ids, target_mask, loss_cfg: LossConfig, rngs):
    """(hidden at the last prompt token, CE sum, CE count) for sequences `[prompt | target]`."""
    t = target_ids.shape[-1]
    p = ids.shape[1] - t
    hidden, _ = model.apply(variables, ids, mask, rngs=rngs)
    ce = _reason_ce(model, variables, hidden[:, p - 1: p - 1 + t], target_ids, target_mask, loss_cfg)
    return hidden[:, p - 1], ce


def _packed_sequence_ce(model, variables, batch: dict, loss_cfg: LossConfig, rngs):
    """`_sequence_ce` of a packed batch's scoring sequences: hidden `[B, G, E]` at their last prompt tokens and
    the reason CE, read from the packed rows at `score_index` / `target_index`."""
    b, r, length = batch["packed_ids"].shape
    g, t = batch["target_ids"].shape[1:]
    segments = _flat_rows(batch["packed_segments"])  # (B, R, L) -> (B·R, L)
    hidden, _ = model.apply(variables, _flat_rows(batch["packed_ids"]), segments > 0,
                            _flat_rows(batch["packed_positions"]), segment_ids=segments, rngs=rngs)
    hidden = constrain(hidden.reshape(b, r * length, hidden.shape[-1]), ("batch", None, None))

    def gather(index):  # per query: its own rows' positions, so the gather stays on the query's shard
        return jnp.take_along_axis(hidden, index.reshape(b, -1)[..., None], axis=1)

    reason_hidden = gather(batch["target_index"]).reshape(b * g, t, hidden.shape[-1])
    ce = _reason_ce(model, variables, reason_hidden, batch["target_ids"].reshape(b * g, t),
                    batch["target_mask"].reshape(b * g, t), loss_cfg)
    return gather(batch["score_index"]).reshape(b * g, hidden.shape[-1]), ce


def _padded_sequence_ce(model, variables, batch: dict, loss_cfg: LossConfig, rngs, reason_rows: int | None):
    """`_sequence_ce` of a padded batch's scoring sequences: hidden `[B·G, E]` at their last prompt tokens and the
    reason CE. Rows from `reason_rows` on (a group's negatives, which have no reason target) run as their prompts
    only, P positions instead of P + T: the last prompt token never attends to the target part, so their scores
    are the same (LoRA dropout masks differ, as with packing), and a group of 5 teacher passages and 10 negatives
    runs 16% fewer positions."""
    b, g = batch["candidate_mask"].shape
    names = ("input_ids", "attention_mask", "target_ids", "target_mask")
    if reason_rows is None or reason_rows >= g:
        return _sequence_ce(model, variables, *(_flat_rows(batch[k]) for k in names), loss_cfg, rngs)
    p = batch["input_ids"].shape[-1] - batch["target_ids"].shape[-1]
    last, ce = _sequence_ce(model, variables, *(_flat_rows(batch[k][:, :reason_rows]) for k in names),
                            loss_cfg, rngs)
    hidden, _ = model.apply(variables, *(_flat_rows(batch[k][:, reason_rows:, :p]) for k in names[:2]), rngs=rngs)
    per_query = (last.reshape(b, reason_rows, -1), hidden[:, -1].reshape(b, g - reason_rows, -1))
    return _flat_rows(jnp.concatenate(per_query, axis=1)), ce


def batch_loss(model: LlamaForRanking, loss_cfg: LossConfig, trainable, frozen, batch: dict,
               denominators: LossDenominators | None, rng: jax.Array | None, reason_rows: int | None = None):
    """Combined loss of one (micro-)batch; returns (L, terms). `reason_rows`: only each group's first rows carry
    reason targets (the teacher's passages, `data.group_size`); the negatives after them run prompt-only."""
    variables = join_variables(frozen, trainable)
    rngs = {"dropout": rng} if rng is not None else None
    b, g = batch["candidate_mask"].shape

    if is_packed(batch):
        last, direct = _packed_sequence_ce(model, variables, batch, loss_cfg, rngs)
    else:
        last, direct = _padded_sequence_ce(model, variables, batch, loss_cfg, rngs, reason_rows)
    if not loss_cfg.learns_direct():  # the CE is unused, so XLA drops the LM head from the step
        direct = no_tokens()
    scores = model.apply(variables, last, method=LlamaForRanking.scores).reshape(b, g)
    comparison = no_tokens()
    if _has_comparisons(batch, loss_cfg):
        _, comparison = _sequence_ce(model, variables, *(_flat_rows(batch[f"cmp_{k}"]) for k in (
            "input_ids", "attention_mask", "target_ids", "target_mask")), loss_cfg, rngs)
    if loss_cfg.gamma_comparison is None:  # one token mean over both kinds
        gen, gen_cmp = (direct[0] + comparison[0], direct[1] + comparison[1]), None
    else:
        gen, gen_cmp = direct, comparison
    return r2r_loss(loss_cfg, scores, batch["teacher_rank"], batch["candidate_mask"].astype(bool),
                    gen, denominators, gen_cmp)


def _has_comparisons(batch: dict, loss_cfg: LossConfig) -> bool:
    return loss_cfg.learns_comparisons() and "cmp_input_ids" in batch and batch["cmp_input_ids"].shape[1] > 0


def _denominators(batch: dict, loss_cfg: LossConfig) -> LossDenominators:
    """The whole batch's counts, for exactly the reason tokens `batch_loss` learns from."""
    direct = (batch["target_mask"],) if loss_cfg.learns_direct() else ()
    comparison = (batch["cmp_target_mask"],) if _has_comparisons(batch, loss_cfg) else ()
    if loss_cfg.gamma_comparison is None:
        direct, comparison = direct + comparison, ()
    return loss_denominators(batch["teacher_rank"], batch["candidate_mask"].astype(bool), direct, comparison)


def make_train_step(model: LlamaForRanking, loss_cfg: LossConfig, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, micro_batches: int = 1, mesh: Mesh | None = None,
                    reason_rows: int | None = None) -> Callable:
    """`step(state, frozen, batch, rng) -> (state, metrics)`, unjitted; `jit_train_step` adds shardings.
    With `mesh`, it traces under `activation_sharding(mesh)` (activation constraints, sharded splash).
    `reason_rows` as in `batch_loss` (`r2r train` passes `data.group_size`)."""

    def step(state: TrainState, frozen, batch: dict, rng: jax.Array):
        denominators = _denominators(batch, loss_cfg)
        grad_fn = jax.value_and_grad(
            lambda tr, mb, key: batch_loss(model, loss_cfg, tr, frozen, mb, denominators, key, reason_rows),
            has_aux=True)
        use_dropout = model.lora is not None and model.lora.dropout > 0
        rng = jax.random.fold_in(rng, state.step)
        if micro_batches == 1:
            (_, terms), grads = grad_fn(state.trainable, batch, rng if use_dropout else None)
        else:
            split = jax.tree.map(
                lambda x: x.reshape((micro_batches, x.shape[0] // micro_batches) + x.shape[1:]), batch)

            def accumulate(carry, xs):
                mb, i = xs
                (_, terms), g = grad_fn(state.trainable, mb, jax.random.fold_in(rng, i) if use_dropout else None)
                return jax.tree.map(jnp.add, carry, (g, terms)), None

            zeros = jax.tree.map(jnp.zeros_like, state.trainable)
            _, zero_terms = jax.eval_shape(
                lambda: grad_fn(state.trainable, jax.tree.map(lambda x: x[0], split), None))[0]
            init = (zeros, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero_terms))
            (grads, terms), _ = jax.lax.scan(accumulate, init, (split, jnp.arange(micro_batches)))
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        metrics = {
            "loss": terms["loss"], "loss_pair": terms["pair"], "loss_list": terms["list"], "loss_gen": terms["gen"],
            "loss_gen_cmp": terms["gen_cmp"],
            "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(state.step),
            "target_tokens": terms["tokens"],
        }
        return TrainState(state.step + 1, trainable, opt_state), metrics

    return traced_under(step, mesh)


def jit_train_step(step_fn: Callable, state_shardings, frozen_shardings, batch_shardings) -> Callable:
    """One `jax.jit` with explicit in/out shardings; the state's buffers are donated."""
    return jax.jit(step_fn, in_shardings=(state_shardings, frozen_shardings, batch_shardings, None),
                   out_shardings=(state_shardings, None), donate_argnums=(0,))


def init_train_state(trainable, optimizer: optax.GradientTransformation, trainable_shardings) -> TrainState:
    """Optimizer state only for the trainable tree (LoRA + head): the frozen base has none. Moments
    inherit their parameters' shardings; scalars (step, counts) are replicated over the same mesh."""
    mesh = jax.tree.leaves(trainable_shardings)[0].mesh
    replicated = NamedSharding(mesh, PartitionSpec())

    def on_mesh(x):
        if isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh:
            return x
        return jax.device_put(x, replicated)

    opt_state = jax.tree.map(on_mesh, jax.jit(optimizer.init)(trainable))
    return TrainState(jax.device_put(jnp.zeros((), jnp.int32), replicated), trainable, opt_state)


def state_shardings(state: TrainState):
    return jax.tree.map(lambda x: x.sharding, state)
