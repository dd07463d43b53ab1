"""Sequence packing (`r2r_jax.data.packing`): a query's scoring sequences several to a row, block-diagonal
attention, positions restarting per sequence — the same hidden states, losses and gradients as the padded
batch, on one device and on a data-parallel mesh."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_fixtures import random_batch, setup_training, tiny_cfg

from r2r_jax import cli
from r2r_jax.config import LoraConfig, LossConfig, MeshConfig
from r2r_jax.data.features import BatchShapes
from r2r_jax.data.packing import PackShapes, pack_batch, packed_batch_spec, rows_needed
from r2r_jax.data.records import write_records
from r2r_jax.model.llama import LlamaForRanking
from r2r_jax.parallel.batch import global_batch
from r2r_jax.parallel.rules import activation_sharding
from r2r_jax.testing.synthetic import make_synthetic_records, synthetic_tokenizer
from r2r_jax.train import step as train_step

P, T, G = 10, 6, 4
SHAPES = BatchShapes(group_size=G, prompt_len=P, target_len=T, comparisons=2, comparison_prompt_len=14)
PAD = 0


def _batch(seed: int = 4):
    return random_batch(seed, g=G, p=P, t=T, c=2)


def test_packed_rows_hold_each_sequence_once_and_indices_find_its_tokens():
    batch = _batch()
    pack = PackShapes(rows=max(rows_needed(batch, SHAPES, 24)), length=24)
    packed = pack_batch(batch, SHAPES, pack, PAD)
    spec = packed_batch_spec(SHAPES, pack, 8)
    assert {k: v.shape for k, v in packed.items()} == {k: s for k, (s, _) in spec.items()}
    ids, segs, pos = packed["packed_ids"], packed["packed_segments"], packed["packed_positions"]
    for b in range(8):
        flat_ids = ids[b].reshape(-1)
        for g in range(G):
            m = batch["attention_mask"][b, g].astype(bool)
            real = batch["input_ids"][b, g][m]
            last = packed["score_index"][b, g]
            plen = int(m[:P].sum())
            start = last - plen + 1
            np.testing.assert_array_equal(flat_ids[start:start + len(real)], real)  # prompt then reason, contiguous
            np.testing.assert_array_equal(pos[b].reshape(-1)[start:start + len(real)], np.arange(len(real)))
            assert len(set(segs[b].reshape(-1)[start:start + len(real)])) == 1
            tm = batch["target_mask"][b, g].astype(bool)
            np.testing.assert_array_equal(flat_ids[packed["target_index"][b, g][tm] + 1], batch["target_ids"][b, g][tm])
        real_tokens = int(batch["attention_mask"][b].sum())
        assert int((segs[b] > 0).sum()) == real_tokens  # nothing lost, nothing twice
    need = rows_needed(batch, SHAPES, 24)
    assert pack_batch(batch, SHAPES, PackShapes(max(need) - 1, 24), PAD) is None  # a query that does not fit


@pytest.mark.parametrize("scan_layers, attention", [(True, "xla"), (False, "loop")])
def test_packed_forward_equals_the_padded_rows_at_real_positions(scan_layers, attention):
    cfg = tiny_cfg(scan_layers=scan_layers, attention=attention)
    model = LlamaForRanking(cfg, LoraConfig(rank=4, alpha=8.0))
    batch = _batch(5)
    packed = pack_batch(batch, SHAPES, PackShapes(rows=4, length=32), PAD)
    ids = jnp.asarray(batch["input_ids"].reshape(-1, P + T))
    mask = jnp.asarray(batch["attention_mask"].reshape(-1, P + T))
    variables = model.init(jax.random.key(0), ids, mask, method=LlamaForRanking.init_all)
    apply = jax.jit(lambda v, *a, **k: model.apply(v, *a, **k)[0])
    padded = np.asarray(apply(variables, ids, mask)).reshape(8, G, P + T, -1)
    segs = jnp.asarray(packed["packed_segments"].reshape(-1, 32))
    hidden = apply(variables, jnp.asarray(packed["packed_ids"].reshape(-1, 32)), segs > 0,
                   jnp.asarray(packed["packed_positions"].reshape(-1, 32)), segment_ids=segs)
    hidden = np.asarray(hidden).reshape(8, 4 * 32, -1)
    for b in range(8):
        for g in range(G):
            m = batch["attention_mask"][b, g].astype(bool)
            start = packed["score_index"][b, g] - int(m[:P].sum()) + 1
            np.testing.assert_allclose(hidden[b, start:start + m.sum()], padded[b, g][m], atol=2e-5, rtol=1e-5)


def test_packed_step_has_the_padded_steps_losses_and_gradients():
    """On a 4 x 2 mesh: each data shard gathers its own queries' positions from its own packed rows."""
    mesh, student, state, _ = setup_training(MeshConfig(data=4, fsdp=2))
    batch = _batch(6)
    pack = PackShapes(rows=max(rows_needed(batch, SHAPES, 24)), length=24)
    assert pack.rows * pack.length < G * (P + T)  # fewer positions than the padded rows
    packed = pack_batch(batch, SHAPES, pack, PAD)

    def run(b: dict):
        cfg = LossConfig(gen_capacity=0.8)  # packing composes with the compacted LM head
        arrays = global_batch(b, mesh)  # rows split over the data-parallel devices

        def loss(trainable):
            return train_step.batch_loss(student.model, cfg, trainable, student.frozen, arrays,
                                         train_step._denominators(arrays, cfg), None)

        with activation_sharding(mesh):
            (total, terms), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(state.trainable)
        return {k: float(v) for k, v in terms.items()}, grads

    (want, want_grads), (got, got_grads) = run(batch), run(packed)
    assert want["gen"] > 0 and want["pair"] > 0
    for k in ("loss", "pair", "list", "gen", "gen_cmp", "tokens"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_r2r_train_runs_packed_steps(tmp_path):
    """`r2r train` with packing runs its steps packed (the exactness is the step's, tested above)."""
    d = tmp_path
    write_records(d / "teacher.jsonl", make_synthetic_records(16, seed=0))
    synthetic_tokenizer().save_pretrained(d / "tok")
    args = [f"--data.train_path={d / 'teacher.jsonl'}", f"--data.tokenizer={d / 'tok'}", "--data.max_prompt_len=40",
            "--data.max_target_len=24", "--data.max_comparison_prompt_len=80", "--model.vocab_size=128",
            "--model.num_hidden_layers=1", "--batch_size=8", "--steps=2", "--log_every=1", "--save_every=2",
            "--lora.rank=4", f"--output_dir={d / 'run'}",
            "--data.pack_length=128", "--data.pack_rows=3"]  # 384 positions a query instead of 8 x 64
    assert cli.main(["train", *args]) == 0
    metrics = [json.loads(line) for line in (d / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["packed"] for m in metrics] == [1.0, 1.0]
    assert all(np.isfinite(m["loss"]) and m["loss_gen"] > 0 for m in metrics)


def test_negatives_run_prompt_only_with_the_full_rows_losses_and_gradients():
    """`reason_rows`: a group's negatives (rows from `data.group_size` on, no reason target) run their P prompt
    positions only, on a 4 x 2 mesh; the losses and gradients are those of the full P + T rows."""
    mesh, student, state, _ = setup_training(MeshConfig(data=4, fsdp=2))
    batch = random_batch(7, b=8, g=5, p=10, t=6)
    teacher = 3  # rows 3 and 4 of each group are negatives: no target tokens, ranked last
    batch["input_ids"][:, teacher:, 10:] = 0
    batch["attention_mask"][:, teacher:, 10:] = 0
    batch["target_ids"][:, teacher:] = 0
    batch["target_mask"][:, teacher:] = 0
    arrays = global_batch(batch, mesh)
    cfg = LossConfig()

    def run(reason_rows):
        def loss(trainable):
            return train_step.batch_loss(student.model, cfg, trainable, student.frozen, arrays,
                                         train_step._denominators(arrays, cfg), None, reason_rows)

        with activation_sharding(mesh):
            lowered = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(state.trainable)
            (_, terms), grads = lowered.compile()(state.trainable)
        return {k: float(v) for k, v in terms.items()}, grads, lowered.as_text()

    (want, want_grads, full), (got, got_grads, split) = run(None), run(teacher)
    assert want["gen"] > 0 and want["pair"] > 0 and want["list"] > 0
    for k in ("loss", "pair", "list", "gen", "tokens"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
    assert "tensor<16x10x" in split and "tensor<16x10x" not in full  # the negatives' prompt-only rows ran
