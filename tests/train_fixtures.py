"""Random batches in the train step's layout and small students, for step-level tests."""

from __future__ import annotations

import jax
import numpy as np

from r2r_jax.config import LoraConfig, LossConfig, MeshConfig, ModelConfig, OptimConfig
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.train.step import init_train_state, make_optimizer, make_train_step
from r2r_jax.train.student import build_student


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, dtype="float32", param_dtype="float32", remat_policy="none")
    base.update(kw)
    return ModelConfig(**base)


def random_batch(seed: int, b: int = 8, g: int = 4, p: int = 10, t: int = 6, c: int = 1, pc: int = 14,
                 vocab: int = 128) -> dict[str, np.ndarray]:
    """Left-padded prompts of random length, right-padded targets, some padded candidates."""
    rng = np.random.default_rng(seed)

    def sequences(n_rows: int, plen: int):
        ids = np.zeros((n_rows, plen + t), np.int32)
        mask = np.zeros_like(ids)
        tmask = np.zeros((n_rows, t), np.int32)
        for r in range(n_rows):
            k = rng.integers(2, plen + 1)
            ids[r, plen - k: plen] = rng.integers(3, vocab, k)
            mask[r, plen - k: plen] = 1
            m = rng.integers(0, t + 1)
            ids[r, plen: plen + m] = rng.integers(3, vocab, m)
            mask[r, plen: plen + m] = 1
            tmask[r, :m] = 1
        return ids, mask, ids[:, plen:].copy(), tmask

    ids, mask, tid, tm = sequences(b * g, p)
    cids, cmask, ctid, ctm = sequences(b * c, pc)
    cand = np.ones((b, g), np.int32)
    cand[1, g - 1] = 0  # a padded candidate
    cand[2, 1:] = 0  # a single-candidate group
    rank = np.zeros((b, g), np.int32)
    for q in range(b):
        n = int(cand[q].sum())
        rank[q, :n] = rng.permutation(n) + 1
    return {
        "input_ids": ids.reshape(b, g, -1), "attention_mask": mask.reshape(b, g, -1),
        "target_ids": tid.reshape(b, g, t), "target_mask": tm.reshape(b, g, t),
        "candidate_mask": cand, "teacher_rank": rank,
        "cmp_input_ids": cids.reshape(b, c, -1), "cmp_attention_mask": cmask.reshape(b, c, -1),
        "cmp_target_ids": ctid.reshape(b, c, t), "cmp_target_mask": ctm.reshape(b, c, t),
    }


def setup_training(mesh_cfg: MeshConfig, model_cfg: ModelConfig | None = None, lora: LoraConfig | None = None,
                   micro_batches: int = 1, devices=None, steps: int = 10, loss: LossConfig | None = None):
    model_cfg = model_cfg or tiny_cfg()
    lora = lora or LoraConfig(rank=4, alpha=8.0)
    mesh = make_mesh(mesh_cfg, devices)
    student, trainable = build_student(model_cfg, lora, mesh, jax.random.key(0))
    optim = OptimConfig(learning_rate=1e-2, warmup_steps=2)
    optimizer = make_optimizer(optim, steps)
    from r2r_jax.train.step import learning_rate_schedule

    step = make_train_step(student.model, loss or LossConfig(), optimizer, learning_rate_schedule(optim, steps),
                           micro_batches, mesh)
    state = init_train_state(trainable, optimizer, student.trainable_shardings)
    return mesh, student, state, step


def run_steps(mesh, student, state, step, batches, seed: int = 0):
    """Jit the step with explicit shardings and run it over `batches`; returns (state, [metrics])."""
    from r2r_jax.parallel.batch import batch_sharding, global_batch
    from r2r_jax.train.step import jit_train_step, state_shardings

    first = batches[0]
    b_sh = {k: batch_sharding(v.ndim, mesh) for k, v in first.items()}
    jitted = jit_train_step(step, state_shardings(state), student.frozen_shardings, b_sh)
    history = []
    for batch in batches:
        state, metrics = jitted(state, student.frozen, global_batch(batch, mesh), jax.random.key(seed))
        history.append(jax.tree.map(float, jax.device_get(metrics)))
    return state, history


def restored_trainable(out, step: int) -> list[np.ndarray]:
    """The LoRA + head leaves of a run's checkpoint, read onto this process's first device whatever
    mesh or process count saved them."""
    import orbax.checkpoint as ocp
    from jax.sharding import SingleDeviceSharding

    options = ocp.CheckpointManagerOptions(read_only=True)
    with ocp.CheckpointManager(out / "checkpoints", options=options, item_names=("state",),
                               item_handlers={"state": ocp.StandardCheckpointHandler()}) as m:
        device = SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda md: jax.ShapeDtypeStruct(md.shape, md.dtype, sharding=device),
                              dict(m.item_metadata(step)["state"]))
        tree = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    return [np.asarray(x) for x in jax.tree.leaves(tree["trainable"])]


def saved_moved_checkpoint(root, model_cfg: ModelConfig, mesh):
    """A run folder `root/run` whose one checkpoint holds LoRA and head moved away from their init (so a restore
    that fell back to init shows), saved without training; the synthetic tokenizer in `root/tok`. Returns
    (run dir, the Prepared it came from, its trainable tree)."""
    from r2r_jax.checkpoint import Checkpointer
    from r2r_jax.config import TrainConfig
    from r2r_jax.testing.synthetic import synthetic_data_config, synthetic_tokenizer
    from r2r_jax.train.setup import prepare

    synthetic_tokenizer().save_pretrained(root / "tok")
    cfg = TrainConfig(model=model_cfg, lora=LoraConfig(rank=4, alpha=8.0), output_dir=str(root / "run"),
                      data=synthetic_data_config(tokenizer=str(root / "tok")))
    prepared = prepare(cfg, mesh)
    leaves, treedef = jax.tree.flatten(prepared.state.trainable)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    moved = jax.tree.unflatten(treedef, [x + 0.3 * jax.random.normal(k, x.shape, x.dtype)
                                         for x, k in zip(leaves, keys, strict=True)])
    ckpt = Checkpointer(root / "run" / "checkpoints", async_save=False)
    ckpt.save(prepared.state.replace(trainable=moved), {}, prepared.meta(), force=True)
    ckpt.close()
    return root / "run", prepared, moved
