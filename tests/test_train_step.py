"""LoRA, sharding and the jitted combined-loss step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_fixtures import random_batch, run_steps, setup_training, tiny_cfg

from r2r_jax.config import LoraConfig, MeshConfig
from r2r_jax.model.llama import LlamaForRanking
from r2r_jax.model.lora import merge_lora
from r2r_jax.parallel.batch import batch_sharding


def _logits(model, variables, ids, mask):
    hidden, _ = model.apply(variables, ids, mask)
    return model.apply(variables, hidden, method=LlamaForRanking.lm_logits)


def _lora_setup():
    cfg = tiny_cfg()
    lora_cfg = LoraConfig(rank=4, alpha=8.0)
    model = LlamaForRanking(cfg, lora_cfg)
    ids = jnp.asarray(np.random.default_rng(0).integers(3, 128, (2, 9)), jnp.int32)
    mask = jnp.ones_like(ids).at[1, :3].set(0)
    import flax.linen as nn

    variables = nn.meta.unbox(model.init(jax.random.key(1), ids, mask, method=LlamaForRanking.init_all))
    return cfg, lora_cfg, model, variables, ids, mask


def test_lora_with_zero_b_equals_base_and_merge_agrees():
    cfg, lora_cfg, model, variables, ids, mask = _lora_setup()
    base = LlamaForRanking(cfg)
    base_logits = _logits(base, {"params": variables["params"]}, ids, mask)
    np.testing.assert_array_equal(np.asarray(_logits(model, variables, ids, mask)), np.asarray(base_logits))
    # random B: the adapted model differs from the base, and merging reproduces it
    key = jax.random.key(7)
    lora = jax.tree_util.tree_map_with_path(
        lambda path, x: jax.random.normal(jax.random.fold_in(key, hash(str(path)) % 2**31), x.shape) * 0.1
        if path[-1].key == "lora_b" else x, variables["lora"])
    adapted = _logits(model, {"params": variables["params"], "lora": lora}, ids, mask)
    assert float(jnp.max(jnp.abs(adapted - base_logits))) > 1e-2
    merged = merge_lora(variables["params"], lora, lora_cfg.alpha / lora_cfg.rank)
    np.testing.assert_allclose(np.asarray(_logits(base, {"params": merged}, ids, mask)), np.asarray(adapted),
                               atol=1e-5)


def test_only_lora_and_head_move_and_base_is_bitwise_unchanged():
    mesh, student, state, step = setup_training(MeshConfig(data=-1), devices=jax.devices()[:1])
    frozen_before = jax.tree.map(np.array, student.frozen)
    trainable_before = jax.tree.map(np.array, state.trainable)
    assert set(state.trainable) == {"lora", "score"}
    # the optimizer holds state for the trainable tree only: its size is a small multiple of LoRA + head
    n_trainable = sum(x.size for x in jax.tree.leaves(state.trainable))
    n_opt = sum(x.size for x in jax.tree.leaves(state.opt_state))
    n_frozen = sum(x.size for x in jax.tree.leaves(student.frozen))
    assert n_opt <= 2 * n_trainable + 8 and n_frozen > 2 * n_trainable
    state, history = run_steps(mesh, student, state, step, [random_batch(s) for s in range(3)])
    for a, b in zip(jax.tree.leaves(frozen_before), jax.tree.leaves(student.frozen), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - np.asarray(b)))), trainable_before, state.trainable)
    assert all(v > 0 for v in jax.tree.leaves(moved)), moved
    for m in history:
        assert np.isfinite(m["loss"]) and m["loss_gen"] > 0 and m["loss_pair"] > 0 and m["loss_list"] > 0
        expected = 0.4 * m["loss_pair"] + 0.4 * m["loss_list"] + 0.2 * m["loss_gen"]
        assert abs(m["loss"] - expected) < 1e-5


MESHES = [(1, 1, 1), (2, 4, 1), (1, 4, 2), (2, 2, 2)]  # (2, 4, 1) splits the batch over all 8 devices


@pytest.fixture(scope="module")
def mesh_results():
    batches = [random_batch(s) for s in range(2)]
    out = {}
    for shape in MESHES:
        n = shape[0] * shape[1] * shape[2]
        mesh, student, state, step = setup_training(MeshConfig(*shape), devices=jax.devices()[:n])
        state, history = run_steps(mesh, student, state, step, batches)
        out[shape] = (mesh, student, state, history)
    return out


@pytest.mark.parametrize("shape", MESHES[1:])
def test_same_loss_and_adapters_on_every_mesh(mesh_results, shape):
    _, _, ref_state, ref_hist = mesh_results[(1, 1, 1)]
    _, _, state, hist = mesh_results[shape]
    for a, b in zip(ref_hist, hist, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5
    for a, b in zip(jax.tree.leaves(ref_state.trainable), jax.tree.leaves(state.trainable), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_shardings_follow_the_rules(mesh_results):
    mesh, student, state, _ = mesh_results[(1, 4, 2)]
    q = student.frozen["model"]["layers"]["self_attn"]["q_proj"]["kernel"]  # (layers, embed, heads)
    assert tuple(q.sharding.spec) == (None, "fsdp", "tensor")
    down = student.frozen["model"]["layers"]["mlp"]["down_proj"]["kernel"]  # (layers, mlp, embed)
    assert tuple(down.sharding.spec) == (None, "tensor", "fsdp")
    emb = student.frozen["model"]["embed_tokens"]["embedding"]  # (vocab, embed)
    assert tuple(emb.sharding.spec) == ("tensor", "fsdp")
    lora_b = state.trainable["lora"]["model"]["layers"]["self_attn"]["q_proj"]["lora_b"]  # (layers, heads, r)
    assert tuple(lora_b.sharding.spec)[:2] == (None, "tensor")
    assert tuple(batch_sharding(3, mesh).spec)[0] == ("data", "fsdp")
    mesh2, student2, _, _ = mesh_results[(2, 2, 2)]
    assert tuple(student2.frozen["model"]["layers"]["mlp"]["gate_proj"]["kernel"].sharding.spec) == (
        None, "fsdp", "tensor")


def test_micro_batches_equal_one_big_batch():
    batch = random_batch(3, b=8)
    results = []
    for micro in (1, 4):
        mesh, student, state, step = setup_training(MeshConfig(data=-1), devices=jax.devices()[:2],
                                                    micro_batches=micro)
        state, history = run_steps(mesh, student, state, step, [batch])
        results.append((state, history))
    (s1, h1), (s4, h4) = results
    assert abs(h1[0]["loss"] - h4[0]["loss"]) < 1e-5
    for a, b in zip(jax.tree.leaves(s1.trainable), jax.tree.leaves(s4.trainable), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def _constraints(lowered_text: str) -> int:
    return lowered_text.count("sharding_constraint") + lowered_text.count("@Sharding")


def test_steps_trace_under_the_mesh_rules():
    """Given the mesh, the train, score and decode steps trace inside `activation_sharding`: the lowered
    programs pin activations (and splash would run per shard); without it they carry no constraints."""
    from r2r_jax.inference.score_step import make_score_step
    from r2r_jax.model.generate import make_generate
    from r2r_jax.parallel.batch import global_batch
    from r2r_jax.train.step import jit_train_step, make_train_step, state_shardings

    mesh, student, state, step = setup_training(MeshConfig(2, 4, 1), devices=jax.devices()[:8])
    batch = random_batch(0)
    b_sh = {k: batch_sharding(v.ndim, mesh) for k, v in batch.items()}
    args = (state, student.frozen, global_batch(batch, mesh), jax.random.key(0))
    plain = make_train_step(student.model, *_train_step_args(), mesh=None)
    with_mesh = jit_train_step(step, state_shardings(state), student.frozen_shardings, b_sh).lower(*args).as_text()
    without = jit_train_step(plain, state_shardings(state), student.frozen_shardings, b_sh).lower(*args).as_text()
    assert _constraints(with_mesh) > 0 and _constraints(without) == 0
    variables = student.variables(state.trainable)
    ids = global_batch({"ids": np.asarray(batch["input_ids"]).reshape(-1, batch["input_ids"].shape[-1])}, mesh)["ids"]
    mask = jnp.ones_like(ids)
    assert _constraints(make_score_step(student.model, mesh=mesh).lower(variables, ids, mask).as_text()) > 0
    assert _constraints(make_score_step(student.model).lower(variables, ids, mask).as_text()) == 0
    gen = make_generate(student.model, 2, [1], 0, mesh)
    assert _constraints(gen.lower(variables, ids, mask, jax.random.key(0)).as_text()) > 0


def _train_step_args():
    from r2r_jax.config import LossConfig, OptimConfig
    from r2r_jax.train.step import learning_rate_schedule, make_optimizer

    optim = OptimConfig(learning_rate=1e-2, warmup_steps=2)
    return LossConfig(), make_optimizer(optim, 10), learning_rate_schedule(optim, 10)


def test_head_learning_rate_multiplier_scales_only_the_score_head():
    """AdamW's first step moves every entry by about the learning rate; the head's by `head_lr_multiplier` x."""
    from r2r_jax.config import OptimConfig
    from r2r_jax.train.step import make_optimizer

    params = {"score": {"kernel": jnp.ones((4, 1))}, "lora": {"a": jnp.ones((3, 2))}}
    grads = jax.tree.map(lambda x: 0.01 * jnp.ones_like(x), params)
    steps = {}
    for mult in (1.0, 10.0):
        opt = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=0, schedule="constant",
                                         head_lr_multiplier=mult, max_grad_norm=1e9), 10)
        updates, _ = opt.update(grads, opt.init(params), params)
        steps[mult] = jax.tree.map(lambda u: float(jnp.abs(u).max()), updates)
    assert abs(steps[1.0]["score"]["kernel"] - 1e-3) < 1e-5 and abs(steps[1.0]["lora"]["a"] - 1e-3) < 1e-5
    assert abs(steps[10.0]["score"]["kernel"] - 1e-2) < 1e-4 and abs(steps[10.0]["lora"]["a"] - 1e-3) < 1e-5


def test_reasons_switch_and_comparison_weight_change_only_the_generation_terms():
    """The paper's ablations: `loss.reasons` drops direct or comparison reasons (or both) from the generation
    loss, never touching the ranking terms; `loss.gamma_comparison` gives comparison reasons a mean and a
    weight of their own instead of one token mean pooled with the ~5x more numerous direct-reason tokens."""
    from r2r_jax.config import LossConfig
    from r2r_jax.train import step as train_step

    _, student, state, _ = setup_training(MeshConfig(data=-1), devices=jax.devices()[:1])
    batch = {k: jnp.asarray(v) for k, v in random_batch(3, c=2).items()}
    n_direct, n_cmp = int(batch["target_mask"].sum()), int(batch["cmp_target_mask"].sum())
    assert n_direct > 0 and n_cmp > 0

    def run(**kw):
        cfg = LossConfig(**kw)
        total, terms = train_step.batch_loss(student.model, cfg, state.trainable, student.frozen, batch,
                                             train_step._denominators(batch, cfg), None)
        return float(total), {k: float(v) for k, v in terms.items()}

    (_, both), (_, direct), (_, cmp), (none_total, none) = (run(reasons=r) for r in ("both", "direct", "comparison",
                                                                                     "none"))
    split_total, split = run(gamma_comparison=0.3)
    assert (both["tokens"], direct["tokens"], cmp["tokens"], none["tokens"]) == (n_direct + n_cmp, n_direct, n_cmp, 0)
    for t in (direct, cmp, none, split):
        assert (t["pair"], t["list"]) == (both["pair"], both["list"])
    assert none["gen"] == 0.0 and np.isclose(none_total, 0.4 * both["pair"] + 0.4 * both["list"], rtol=1e-6)
    pooled = (direct["gen"] * n_direct + cmp["gen"] * n_cmp) / (n_direct + n_cmp)
    np.testing.assert_allclose(both["gen"], pooled, rtol=1e-5)
    np.testing.assert_allclose((split["gen"], split["gen_cmp"]), (direct["gen"], cmp["gen"]), rtol=1e-5)
    np.testing.assert_allclose(split_total, 0.4 * split["pair"] + 0.4 * split["list"] + 0.2 * split["gen"]
                               + 0.3 * split["gen_cmp"], rtol=1e-6)
    assert both["gen_cmp"] == 0.0  # pooled: no separate comparison term
