"""Checkpointer: what rerank, export and parity checks restore (adapters and head) versus what a resume does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r2r_jax.checkpoint import Checkpointer, CheckpointError, check_same_base
from r2r_jax.train.step import TrainState


def _state(opt_state) -> TrainState:
    trainable = {"score": {"kernel": jnp.arange(6.0).reshape(6, 1)}, "lora": {"a": jnp.ones((2, 3)) * 0.5}}
    return TrainState(jnp.asarray(7, jnp.int32), trainable, opt_state)


def test_restore_trainable_reads_adapters_and_head_only(tmp_path):
    saved = _state({"mu": jnp.full((6, 1), 3.0), "nu": jnp.full((2, 3), 4.0)})
    ckpt = Checkpointer(tmp_path / "checkpoints", async_save=False)
    ckpt.save(saved, {"epoch": 1}, {"base_hash": "x"}, force=True)
    ckpt.close()
    zeros = jax.tree.map(jnp.zeros_like, saved.trainable)
    # an optimizer state of another structure: a full restore cannot map it, the trainable-only one never reads it
    other = _state({"count": jnp.zeros((), jnp.int32)}).replace(trainable=zeros)
    ckpt = Checkpointer(tmp_path / "checkpoints", async_save=False)
    with pytest.raises(CheckpointError, match="cannot restore the checkpoint of step 7"):
        ckpt.restore(other)
    trainable, step = ckpt.restore_trainable(zeros)
    ckpt.close()
    assert step == 7
    for got, want in zip(jax.tree.leaves(trainable), jax.tree.leaves(saved.trainable), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    with pytest.raises(CheckpointError, match="no checkpoint to restore"):
        Checkpointer(tmp_path / "empty", async_save=False).restore_trainable(zeros)


def test_check_same_base_names_both_bases():
    meta = {"base_hash": "sha256:aaa", "base_model": "/bases/a"}
    check_same_base(meta, "/bases/a-moved", "sha256:aaa", "run/checkpoints")  # moved, same content: fine
    with pytest.raises(CheckpointError, match=r"run/checkpoints: .*trained on base /bases/a \(sha256:aaa\), "
                                              r"not on /bases/b \(sha256:bbb\)"):
        check_same_base(meta, "/bases/b", "sha256:bbb", "run/checkpoints")
