"""The LM head on real target tokens only (`loss.gen_capacity`): the same loss and gradients as the padded
step, on one device and per data shard on a mesh, and the padded path when a batch overflows the capacity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from train_fixtures import random_batch, setup_training

from r2r_jax.config import LossConfig, MeshConfig
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.parallel.rules import activation_sharding
from r2r_jax.train import step as train_step
from r2r_jax.train.target_compaction import capacity_per_shard, compact, compacted_token_ce_sum, fits
from r2r_jax.train.token_ce import token_ce_sum


def _targets(seed: int, n: int = 16, t: int = 12, e: int = 16, v: int = 40, fill: float = 0.5):
    rng = np.random.default_rng(seed)
    lengths = rng.binomial(t, fill, n)
    mask = np.arange(t)[None, :] < lengths[:, None]
    targets = np.where(mask, rng.integers(0, v, (n, t)), -100)
    return (jnp.asarray(rng.normal(size=(n, t, e)), jnp.float32), jnp.asarray(rng.normal(size=(e, v)), jnp.float32),
            jnp.asarray(targets, jnp.int32), jnp.asarray(mask))


def _loss_and_grad(fn, hidden, head, targets, mask):
    return jax.jit(jax.value_and_grad(lambda h: fn(h, head, targets, mask)[0]))(hidden)


def test_compaction_gathers_each_shards_real_tokens_in_order():
    hidden, _, targets, mask = _targets(0, n=4, t=5)
    h, y, filled = compact(hidden, targets, mask, shards=2, capacity=8)
    for s in range(2):
        real = np.asarray(mask[2 * s: 2 * s + 2]).reshape(-1)
        count = int(real.sum())
        assert count <= 8 and int(filled[s].sum()) == count and bool(filled[s, :count].all())
        np.testing.assert_array_equal(y[s, :count], np.asarray(targets[2 * s: 2 * s + 2]).reshape(-1)[real])
        np.testing.assert_array_equal(h[s, :count], np.asarray(hidden[2 * s: 2 * s + 2]).reshape(-1, 16)[real])


@pytest.mark.parametrize("fraction", [0.75, 0.1])  # fits every shard; overflows, so the padded path runs
def test_same_loss_and_hidden_gradient_as_the_padded_head(fraction):
    hidden, head, targets, mask = _targets(1)
    assert int(mask.sum()) > capacity_per_shard(16, 12, 0.1)  # the second case really overflows
    loss, grad = _loss_and_grad(lambda *a: token_ce_sum(*a, chunk=4), hidden, head, targets, mask)
    got_loss, got_grad = _loss_and_grad(lambda *a: compacted_token_ce_sum(*a, chunk=4, fraction=fraction),
                                        hidden, head, targets, mask)
    np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(got_grad, grad, atol=1e-6)
    assert float(jnp.abs(grad[~mask]).max()) == 0.0


def test_compaction_per_data_shard_on_a_mesh_is_exact_and_runs_fewer_head_positions():
    hidden, head, targets, mask = _targets(2)
    mesh = make_mesh(MeshConfig(data=4, fsdp=2))
    sharded = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    args = [jax.device_put(x, sharded) for x in (hidden, targets, mask)]

    def run(fn):
        with activation_sharding(mesh):
            f = jax.jit(jax.value_and_grad(lambda h, y, m: fn(h, head, y, m)[0]))
            return f(args[0], args[1], args[2]), f.lower(*args).as_text()

    (loss, grad), _ = run(lambda *a: token_ce_sum(*a, chunk=12))
    # 8 shards of 2 rows x 12 positions: 24 slots each, 0.6 of them rounded up to 8 -> 16, and every shard fits
    assert capacity_per_shard(2, 12, 0.6) == 16 and bool(fits(mask, 8, 16))
    (got_loss, got_grad), text = run(lambda *a: compacted_token_ce_sum(*a, chunk=12, fraction=0.6))
    np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(got_grad, grad, atol=1e-6)
    assert "tensor<8x16x16xf32>" in text  # the head's input: [shards, capacity, hidden]


def test_train_step_loss_and_gradients_equal_the_padded_step():
    _, student, state, _ = setup_training(MeshConfig(data=-1), devices=jax.devices()[:1])
    batch = {k: jnp.asarray(v) for k, v in random_batch(4, c=2, t=8).items()}

    def run(capacity: float):
        cfg = LossConfig(gen_capacity=capacity)

        def loss(trainable):
            return train_step.batch_loss(student.model, cfg, trainable, student.frozen, batch,
                                         train_step._denominators(batch, cfg), None)

        (total, terms), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(state.trainable)
        return float(total), float(terms["gen"]), grads

    padded, compacted = run(1.0), run(0.7)
    assert padded[1] > 0
    np.testing.assert_allclose(compacted[:2], padded[:2], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(compacted[2]), jax.tree.leaves(padded[2]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
