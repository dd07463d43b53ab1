"""Remat policies change what the backward pass recomputes, never the numbers it produces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r2r_jax.config import LoraConfig, ModelConfig
from r2r_jax.model.llama import REMAT_POLICIES, LlamaForRanking


@pytest.mark.parametrize("scan_layers,policies", [(True, tuple(REMAT_POLICIES)), (False, ("mlp_attention_out",))])
def test_every_policy_gives_the_same_loss_and_adapter_gradients(scan_layers, policies):
    base = dict(dtype="float32", param_dtype="float32", num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, scan_layers=scan_layers)
    lora = LoraConfig(rank=4, alpha=8.0)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(3, 1000, (2, 9)), jnp.int32)
    mask = jnp.asarray(np.r_[[[0, 0] + [1] * 7], [[1] * 9]], jnp.int32)
    reference = LlamaForRanking(ModelConfig(**base, remat_policy="none"), lora)
    variables = dict(reference.init(jax.random.key(0), ids, mask, method=LlamaForRanking.init_all))
    # adapters start at B = 0; give them weight so every adapted product matters
    variables["lora"] = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape) * 0.05,
                                     variables["lora"])

    def loss_and_grads(policy):
        model = LlamaForRanking(ModelConfig(**base, remat_policy=policy), lora)

        def loss(adapters):
            hidden, _ = model.apply({**variables, "lora": adapters}, ids, mask)
            logits = model.apply(variables, hidden, method=LlamaForRanking.lm_logits)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 7]) + jnp.mean(hidden**2)

        return jax.jit(jax.value_and_grad(loss))(variables["lora"])

    want_loss, want_grads = loss_and_grads("none")
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(want_grads))
    for policy in policies:
        got_loss, got_grads = loss_and_grads(policy)
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got_grads, want_grads)


def test_auto_is_resolved_before_the_model_is_built():
    from r2r_jax.config import TrainConfig
    from r2r_jax.config_io import ConfigError
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.train.remat_choice import resolve_auto

    cfg = TrainConfig(model=ModelConfig(num_hidden_layers=2, remat_policy="auto"), micro_batches=2, batch_size=4)
    ids = jnp.ones((1, 4), jnp.int32)
    with pytest.raises(ConfigError, match="remat_policy=auto"):
        LlamaForRanking(cfg.model).init(jax.random.key(0), ids, ids)
    # a CPU host reports no memory limit: nothing to fit, so nothing is recomputed
    lines = []
    resolved = resolve_auto(cfg, make_mesh(cfg.mesh, jax.devices()[:1]), cfg.model, lines.append)
    assert (resolved.model.remat_policy, resolved.micro_batches) == ("none", 2)
    assert "no memory limit" in lines[0]


def test_auto_search_takes_the_least_recomputation_that_fits(monkeypatch):
    """The search over (policy, micro-batches) against planned memory: a policy that misses is retried with
    the micro-batch count its scaled temporaries predict to fit, before a policy that recomputes more."""
    from r2r_jax.config import TrainConfig
    from r2r_jax.train import remat_choice
    from r2r_jax.train.remat_choice import AUTO_ORDER, HEADROOM, Attempt, choose_remat

    fixed = 10
    temporaries = {"none": 400, "projections": 160, "mlp_attention_out": 120, "mlp_key_value": 105,
                   "mlp": 100, "full": 30}
    compiled = []

    def planned(cfg, mesh, budget, policy, micro_batches):  # what the compiler would plan, per chip
        compiled.append((policy, micro_batches))
        temps = temporaries[policy] // micro_batches
        return Attempt(policy, micro_batches, fixed + temps, temps, fixed + temps <= budget), object()

    monkeypatch.setattr(remat_choice, "_try", planned)
    mesh = type("Mesh", (), {"shape": {"data": 1, "fsdp": 2, "tensor": 1}})()
    cfg = TrainConfig(batch_size=8)  # 8 queries over 2 shards: 1, 2 or 4 micro-batches

    def choose(budget):
        compiled.clear()
        return choose_remat(cfg, mesh, int(budget / (1 - HEADROOM)) + 1)

    assert (choose(1000).policy, compiled) == ("none", [("none", 1)])
    # none needs 4 micro-batches (10 + 100); projections fits at 2 (10 + 80): fewer recomputed FLOPs win
    choice = choose(110)
    assert (choice.policy, choice.micro_batches) == ("none", 4) and compiled == [("none", 1), ("none", 4)]
    choice = choose(95)
    assert (choice.policy, choice.micro_batches) == ("projections", 2)
    assert compiled == [("none", 1), ("projections", 1), ("projections", 2)]  # none at 4 (110) cannot fit
    # nothing fits: every policy once, and the least memory comes back uncompiled
    choice = choose(5)
    assert [p for p, _ in compiled] == list(AUTO_ORDER) and choice.compiled is None
    assert (choice.policy, choice.micro_batches) == ("full", 4)
