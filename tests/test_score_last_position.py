"""Scoring computes the final layer at the last position only; the scores and FLOP counts stay right."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r2r_jax.compile.flops import score_step_flops
from r2r_jax.config import LoraConfig, ModelConfig
from r2r_jax.inference.score_step import make_score_step
from r2r_jax.model.llama import LlamaForRanking


def _batch(cfg: ModelConfig, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = jnp.asarray(rng.integers(3, cfg.vocab_size, (3, 11)), jnp.int32)
    mask = np.ones((3, 11), np.int32)
    mask[0, :4] = 0  # left padding, as scoring prompts are
    mask[1, :1] = 0
    return ids, jnp.asarray(mask)


# each layer layout with and without remat, each attention, and GQA from none (4 K/V heads of 4) to full (1)
@pytest.mark.parametrize("scan_layers,kv_heads,attention,remat", [
    (True, 4, "xla", "none"), (False, 2, "loop", "none"), (True, 1, "xla", "full"), (False, 1, "xla", "full")])
def test_last_only_equals_the_last_column_of_the_full_forward(scan_layers, kv_heads, attention, remat):
    cfg = ModelConfig(dtype="float32", param_dtype="float32", num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=kv_heads, scan_layers=scan_layers, attention=attention, remat_policy=remat)
    model = LlamaForRanking(cfg, LoraConfig(rank=4, alpha=8.0))
    ids, mask = _batch(cfg)
    variables = model.init(jax.random.key(0), ids, mask, method=LlamaForRanking.init_all)
    # adapters start at B = 0; give them weight so the final layer's adapted q/o/MLP matter
    variables = dict(variables)
    variables["lora"] = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape) * 0.05,
                                     variables["lora"])
    full, _ = model.apply(variables, ids, mask)
    last, _ = model.apply(variables, ids, mask, last_only=True)
    assert last.shape == (3, 1, cfg.hidden_size)
    np.testing.assert_allclose(last, full[:, -1:], rtol=1e-5, atol=1e-5)
    want = model.apply(variables, full[:, -1], method=LlamaForRanking.scores)
    np.testing.assert_allclose(make_score_step(model)(variables, ids, mask), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(make_score_step(model, last_only=False)(variables, ids, mask), want,
                               rtol=1e-5, atol=1e-6)


def _xla_flops(fn, *args) -> float:
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    return float(analysis["flops"])


def test_analytic_scoring_flops_follow_the_compiler_and_the_saving():
    """XLA's own count of the scoring forward agrees with the analytic one, unrolled (final layer at one
    position) and without `last_only`; the saving is close to one layer's projections."""
    cfg = ModelConfig(dtype="float32", param_dtype="float32", num_hidden_layers=4, hidden_size=128,
                      intermediate_size=448, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                      vocab_size=256, scan_layers=False)
    lora = LoraConfig(rank=8, alpha=16.0)
    model = LlamaForRanking(cfg, lora)
    n, t = 4, 64
    ids, mask = jnp.ones((n, t), jnp.int32), jnp.ones((n, t), jnp.int32)
    variables = model.init(jax.random.key(0), ids, mask, method=LlamaForRanking.init_all)
    fast = _xla_flops(make_score_step(model), variables, ids, mask)
    slow = _xla_flops(make_score_step(model, last_only=False), variables, ids, mask)
    analytic_fast = score_step_flops(cfg, lora, n, t).total
    analytic_slow = score_step_flops(cfg, lora, n, t, last_only=False).total
    assert fast == pytest.approx(analytic_fast, rel=0.05)
    assert slow == pytest.approx(analytic_slow, rel=0.05)
    assert 1 - fast / slow == pytest.approx((1 - 1 / t) / cfg.num_hidden_layers, rel=0.25)
