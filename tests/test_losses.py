"""The R2R losses against rax and numpy references, with masks, ties, single-candidate groups and chunking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax

from r2r_jax.config import LossConfig
from r2r_jax.testing.references import token_ce_reference
from r2r_jax.train import losses as L
from r2r_jax.train import token_ce as T

B, G = 6, 7

# jitted once per shape: eager dispatch compiles every primitive separately and makes the tests slow
ranknet_loss = jax.jit(L.ranknet_loss)
listwise_loss = jax.jit(L.listwise_loss, static_argnums=(3, 4))


def _batch(seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(B, G)).astype(np.float32) * 2
    if ties:
        ranks = rng.integers(1, 4, size=(B, G))
    else:
        ranks = np.stack([rng.permutation(G) + 1 for _ in range(B)])
    mask = rng.random((B, G)) < 0.75
    mask[0] = True  # a full group
    mask[1] = False
    mask[1, 3] = True  # a single-candidate group
    mask[2] = False  # an empty group
    return jnp.asarray(scores), jnp.asarray(ranks, jnp.int32), jnp.asarray(mask)


def _np_ranknet(s, r, m):
    total, n = 0.0, 0
    for b in range(s.shape[0]):
        for i in range(s.shape[1]):
            for j in range(s.shape[1]):
                if m[b, i] and m[b, j] and r[b, i] < r[b, j]:
                    total += np.log1p(np.exp(-(s[b, i] - s[b, j])))
                    n += 1
    return total / max(n, 1), n


@pytest.mark.parametrize("ties", [False, True])
def test_ranknet_matches_rax_and_numpy(ties):
    s, r, m = _batch(0, ties)
    ours = ranknet_loss(s, r, m)
    ref = rax.pairwise_logistic_loss(s, -r.astype(jnp.float32), where=m)
    want, n = _np_ranknet(np.asarray(s), np.asarray(r), np.asarray(m))
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    np.testing.assert_allclose(ours, want, rtol=1e-5)
    assert int(L.ranknet_sum(s, r, m)[1]) == n


def test_ranknet_ties_and_no_pairs_give_zero_without_nan():
    s = jnp.array([[1.0, -2.0, 0.5], [3.0, 0.0, 0.0]])
    r = jnp.array([[2, 2, 2], [1, 2, 3]])
    m = jnp.array([[True, True, True], [True, False, False]])  # all tied; one candidate
    value, grad = jax.jit(jax.value_and_grad(L.ranknet_loss))(s, r, m)
    assert float(value) == 0.0 and int(L.ranknet_sum(s, r, m)[1]) == 0
    assert np.all(np.asarray(grad) == 0.0)
    # a tie inside an otherwise ranked group adds no pair: 3 candidates, ranks 1,1,2 -> pairs (0,2), (1,2)
    r2 = jnp.array([[1, 1, 2]])
    m2 = jnp.ones((1, 3), bool)
    s2 = jnp.array([[0.3, -0.1, 0.2]])
    want = (np.log1p(np.exp(-(0.3 - 0.2))) + np.log1p(np.exp(-(-0.1 - 0.2)))) / 2
    np.testing.assert_allclose(ranknet_loss(s2, r2, m2), want, rtol=1e-6)


def _np_listnet(s, r, m, tau):
    per, groups = [], 0
    for b in range(s.shape[0]):
        idx = np.flatnonzero(m[b])
        if len(idx) < 2:
            continue
        gain = len(idx) - r[b, idx].astype(np.float64)
        p = np.exp(gain / tau) / np.exp(gain / tau).sum()
        q = np.exp(s[b, idx]) / np.exp(s[b, idx]).sum()
        per.append(np.sum(p * np.log(p / q)))
        groups += 1
    return np.sum(per) / max(groups, 1)


@pytest.mark.parametrize("ties,tau", [(False, 1.0), (True, 0.5), (False, 3.0)])
def test_listnet_kl_matches_rax_softmax_and_numpy(ties, tau):
    s, r, m = _batch(1, ties)
    ours = listwise_loss(s, r, m, "listnet", tau)
    np.testing.assert_allclose(ours, _np_listnet(*map(np.asarray, (s, r, m)), tau), rtol=1e-5)
    # rax's softmax loss is the cross-entropy H(p, q) = KL(p || q) + H(p), per group
    p = L.teacher_distribution(r, m, tau)
    ce = rax.softmax_loss(s, p, where=m, reduce_fn=None)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
    ranked = jnp.sum(m, -1) >= 2
    want = jnp.sum(jnp.where(ranked, ce - entropy, 0.0)) / jnp.sum(ranked)
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-6)


def test_listmle_matches_rax():
    s, r, m = _batch(2)
    ours = listwise_loss(s, r, m, "listmle")
    per_group = rax.listmle_loss(s, -r.astype(jnp.float32), where=m, reduce_fn=None)
    ranked = jnp.sum(m, -1) >= 2
    np.testing.assert_allclose(ours, jnp.sum(jnp.where(ranked, per_group, 0.0)) / jnp.sum(ranked), rtol=1e-5)


def test_listmle_ties_keep_candidate_order():
    s = np.array([[0.2, 1.5, -0.7, 0.1]], np.float32)
    r = jnp.array([[2, 1, 2, 3]])  # candidates 0 and 2 tie: order 1, 0, 2, 3
    order = s[0, [1, 0, 2, 3]]
    want = sum(np.log(np.exp(order[k:]).sum()) - order[k] for k in range(4))
    np.testing.assert_allclose(listwise_loss(jnp.asarray(s), r, jnp.ones((1, 4), bool), "listmle"), want,
                               rtol=1e-6)


@pytest.mark.parametrize("kind", ["listnet", "listmle"])
def test_listwise_single_and_empty_groups_are_zero_and_finite(kind):
    s = jnp.array([[4.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    r = jnp.array([[1, 2, 3], [1, 2, 3]])
    m = jnp.array([[True, False, False], [False, False, False]])
    value, grad = jax.jit(jax.value_and_grad(L.listwise_loss), static_argnums=3)(s, r, m, kind)
    assert float(value) == 0.0
    assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad) == 0.0)
    # adding a real group: the single-candidate group neither changes the mean nor its denominator
    s2, r2 = jnp.concatenate([s, s[:1] * 0 + jnp.array([[0.1, 0.9, -0.3]])]), jnp.concatenate([r, r[:1]])
    m2 = jnp.concatenate([m, jnp.ones((1, 3), bool)])
    only = listwise_loss(s2[2:], r2[2:], m2[2:], kind)
    np.testing.assert_allclose(listwise_loss(s2, r2, m2, kind), only, rtol=1e-6)


def _np_token_ce(h, w, y, m):
    logits = np.einsum("nte,ev->ntv", h.astype(np.float64), w.astype(np.float64))
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    ce = lse - np.take_along_axis(logits, np.where(m, y, 0)[..., None], -1)[..., 0]
    return np.sum(ce * m), int(m.sum())


def _gen_inputs(n=3, t=13, e=16, v=97, seed=3):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, t, e)).astype(np.float32)
    w = rng.normal(size=(e, v)).astype(np.float32) / 4
    y = rng.integers(0, v, size=(n, t))
    m = rng.random((n, t)) < 0.7
    y = np.where(m, y, -100)  # padding targets as Hugging Face writes them
    return h, w, y, m


@pytest.mark.parametrize("chunk", [1, 4, 5, 13, 64])
def test_chunked_token_ce_equals_unchunked_and_numpy(chunk):
    h, w, y, m = _gen_inputs()
    total, count = T.token_ce_sum(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), jnp.asarray(m), chunk)
    ref_total, ref_count = token_ce_reference(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), jnp.asarray(m))
    np_total, np_count = _np_token_ce(h, w, y, m)
    assert int(count) == int(ref_count) == np_count
    np.testing.assert_allclose(total, ref_total, rtol=1e-5)
    np.testing.assert_allclose(total, np_total, rtol=1e-5)


def test_chunked_token_ce_gradients_match_and_tied_head():
    h, w, y, m = map(jnp.asarray, _gen_inputs())

    def chunked(h, w):
        s, c = T.token_ce_sum(h, w, y, m, chunk=4)
        return s / c

    def full(h, w):
        s, c = token_ce_reference(h, w, y, m)
        return s / c

    g_chunk = jax.jit(jax.grad(chunked, argnums=(0, 1)))(h, w)
    g_full = jax.jit(jax.grad(full, argnums=(0, 1)))(h, w)
    for a, b in zip(g_chunk, g_full, strict=True):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # a tied embedding [V, E] gives the same loss and gradients as its transpose used as the head
    tied = T.token_ce_sum(h, w.T, y, m, chunk=5, head_is_embedding=True)[0]
    np.testing.assert_allclose(tied, token_ce_reference(h, w, y, m)[0], rtol=1e-5)
    g_tied = jax.grad(lambda h, e: T.token_ce_sum(h, e, y, m, chunk=5, head_is_embedding=True)[0], (0, 1))(h, w.T)
    g_ref = jax.grad(lambda h, w: token_ce_reference(h, w, y, m)[0], (0, 1))(h, w)
    np.testing.assert_allclose(g_tied[0], g_ref[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_tied[1], g_ref[1].T, rtol=1e-4, atol=1e-5)


def test_frozen_head_gets_zero_gradient_and_the_same_hidden_gradient():
    h, w, y, m = map(jnp.asarray, _gen_inputs())
    frozen = jax.grad(lambda h, w: T.token_ce_sum(h, w, y, m, chunk=4, head_grad=False)[0], (0, 1))(h, w)
    trained = jax.grad(lambda h, w: T.token_ce_sum(h, w, y, m, chunk=4)[0], (0, 1))(h, w)
    np.testing.assert_array_equal(frozen[1], 0.0)
    assert float(jnp.abs(trained[1]).max()) > 0
    np.testing.assert_allclose(frozen[0], trained[0], rtol=1e-6)
    # without differentiation the value is the plain chunked sum
    value = jax.jit(lambda h: T.token_ce_sum(h, w, y, m, chunk=4, head_grad=False)[0])(h)
    np.testing.assert_allclose(value, token_ce_reference(h, w, y, m)[0], rtol=1e-5)


def test_chunked_token_ce_never_holds_all_logits():
    n, e, v, chunk = 2, 32, 4096, 16

    def temp_bytes(fn, t):
        h = jnp.zeros((n, t, e), jnp.float32)
        w = jnp.zeros((e, v), jnp.float32)
        y = jnp.zeros((n, t), jnp.int32)
        m = jnp.ones((n, t), bool)
        grad = jax.jit(jax.grad(lambda h: fn(h, w, y, m)[0]))
        return grad.lower(h).compile().memory_analysis().temp_size_in_bytes

    def chunked(h, w, y, m):
        return T.token_ce_sum(h, w, y, m, chunk=chunk, head_grad=False)

    def all_logits(t):
        return n * t * v * 4

    assert temp_bytes(token_ce_reference, 1024) >= all_logits(1024)  # the reference materialises them
    short, long = temp_bytes(chunked, 256), temp_bytes(chunked, 1024)
    assert long < all_logits(1024) / 8, (long, all_logits(1024))
    # 768 more target positions add T-sized buffers (hidden, its gradient, targets), never T×V logits
    assert long - short < 8 * n * 768 * e * 4, (short, long)


def test_r2r_loss_combines_terms_and_accumulates_exactly():
    s, r, m = _batch(4)
    h, w, y, tm = _gen_inputs(n=B)
    cfg = LossConfig(alpha=0.4, beta=0.4, gamma=0.2, gen_chunk=4)

    def loss(s, r, m, h, y, tm, den):
        gen = T.token_ce_sum(h, jnp.asarray(w), y, tm, cfg.gen_chunk)
        return L.r2r_loss(cfg, s, r, m, gen, den)[0]

    ce_sum, ce_count = _np_token_ce(h, w, y, tm)
    want = 0.4 * ranknet_loss(s, r, m) + 0.4 * listwise_loss(s, r, m) + 0.2 * ce_sum / ce_count
    # micro-batches of 2 queries with the whole batch's denominators sum to the full loss and gradient
    h, y, tm = map(jnp.asarray, (h, y, tm))
    den = L.loss_denominators(r, m, (tm,))
    grad_fn = jax.jit(jax.value_and_grad(loss))
    full_value, full_grad = grad_fn(s, r, m, h, y, tm, den)
    np.testing.assert_allclose(full_value, want, rtol=1e-5)
    parts = [grad_fn(s[i:i + 2], r[i:i + 2], m[i:i + 2], h[i:i + 2], y[i:i + 2], tm[i:i + 2], den)
             for i in range(0, B, 2)]
    np.testing.assert_allclose(sum(p[0] for p in parts), full_value, rtol=1e-5)
    np.testing.assert_allclose(jnp.concatenate([p[1] for p in parts]), full_grad, rtol=1e-5, atol=1e-7)


def test_r2r_loss_zero_weights_and_listmle_option():
    s, r, m = _batch(5)
    only_list = LossConfig(alpha=0.0, beta=1.0, gamma=0.0, listwise="listmle")
    total, terms = jax.jit(lambda *a: L.r2r_loss(only_list, *a))(s, r, m)
    np.testing.assert_allclose(total, listwise_loss(s, r, m, "listmle"), rtol=1e-6)
    np.testing.assert_allclose(terms["pair"], ranknet_loss(s, r, m), rtol=1e-6)
    assert set(terms) >= {"loss", "pair", "list", "gen", "pairs", "groups", "tokens"}
    assert float(terms["gen"]) == 0.0 and float(terms["pair"]) > 0.0  # reported though unweighted
    grad = jax.jit(jax.grad(lambda s: L.r2r_loss(LossConfig(), s, r, m)[0]))(s)
    assert np.all(np.isfinite(np.asarray(grad)))
    assert np.all(np.asarray(grad)[~np.asarray(m)] == 0.0)  # padding gets no gradient
