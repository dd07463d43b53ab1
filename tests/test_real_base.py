"""The student on real pretrained weights (SmolLM2-135M-Instruct through `r2r base`): the zero-shot score head,
learning on a fixed batch, decoding English, and a DL19 rerank that writes a valid run."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r2r_jax.config import DataConfig, LoraConfig, LossConfig, MeshConfig, OptimConfig, TrainConfig
from r2r_jax.data.features import BatchShapes, build_batch, tokenize_records
from r2r_jax.data.importers import import_file
from r2r_jax.data.templates import encode_texts, load_tokenizer, special_ids
from r2r_jax.model.generate import make_generate
from r2r_jax.model.llama import LlamaForRanking
from r2r_jax.parallel.batch import batch_sharding, global_batch
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.train.setup import prepare
from r2r_jax.train.step import jit_train_step, make_train_step, state_shardings

TEMPLATE = "Query: {query}\nPassage: {passage}\nDoes the passage answer the query? Answer yes or no.\nAnswer:"


def _config(base, tmp_path, **kw) -> TrainConfig:
    data = DataConfig(tokenizer=str(base), group_size=3, random_negatives=1, max_prompt_len=48, max_target_len=12,
                      comparisons_per_query=0, prompt_template=TEMPLATE)
    cfg = TrainConfig(base_model=str(base), data=data, lora=LoraConfig(rank=4, alpha=8.0),
                      loss=LossConfig(), optim=OptimConfig(learning_rate=1e-3, warmup_steps=0, schedule="constant"),
                      mesh=MeshConfig(data=1, fsdp=1, tensor=1), batch_size=2, steps=20,
                      output_dir=str(tmp_path / "run"), score_init_tokens=[" yes", " no"])
    for key, value in kw.items():
        setattr(cfg, key, value)
    cfg.model.remat_policy = "none"
    return cfg


@pytest.fixture(scope="module")
def release_records(shared_data):
    records, _ = import_file(shared_data / "teacher" / "r2r_gpt4_msmarco_500.jsonl", "r2r")
    return records[:4]


@pytest.fixture(scope="module")
def prepared(smollm2_base, tmp_path_factory):
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), jax.devices()[:1])
    cfg = _config(smollm2_base, tmp_path_factory.mktemp("real"))
    return prepare(cfg, mesh), mesh


def test_score_head_starts_as_the_bases_yes_no_judgement(prepared, smollm2_base):
    prep, _ = prepared
    tok = load_tokenizer(smollm2_base)
    yes, no = (encode_texts(tok, [t], add_special_tokens=False)[0][0] for t in (" yes", " no"))
    ids = jnp.asarray([encode_texts(tok, ["Query: capital of France\nPassage: Paris is the capital of France."
                                          "\nDoes the passage answer the query? Answer yes or no.\nAnswer:"])[0]])
    variables = prep.student.variables(prep.state.trainable)
    model = prep.student.model
    hidden, _ = model.apply(variables, ids, jnp.ones_like(ids))
    logits = model.apply(variables, hidden[:, -1], method=LlamaForRanking.lm_logits)
    score = model.apply(variables, hidden[:, -1], method=LlamaForRanking.scores)
    np.testing.assert_allclose(float(score[0]), float(logits[0, yes] - logits[0, no]), rtol=1e-4, atol=1e-4)


def test_training_steps_lower_the_pairwise_loss_on_a_fixed_batch(prepared, release_records, smollm2_base):
    prep, mesh = prepared
    cfg = prep.cfg
    tok = load_tokenizer(smollm2_base)
    shapes = BatchShapes.from_config(cfg.data)
    batch = build_batch(tokenize_records(release_records, tok, cfg.data), [(0, 0), (1, 0)], shapes,
                        special_ids(tok).pad, seed=0)
    step = make_train_step(prep.student.model, cfg.loss, prep.optimizer, prep.schedule, 1, mesh)
    batch_sh = {k: batch_sharding(v.ndim, mesh) for k, v in batch.items()}
    jitted = jit_train_step(step, state_shardings(prep.state), prep.student.frozen_shardings, batch_sh)
    state, losses = jax.tree.map(jnp.copy, prep.state), []  # the step donates its state; keep the fixture's
    for _ in range(5):
        state, metrics = jitted(state, prep.student.frozen, global_batch(batch, mesh), jax.random.key(0))
        losses.append({k: float(v) for k, v in metrics.items()})
    assert all(np.isfinite(m["loss"]) for m in losses)
    assert losses[-1]["loss_pair"] < 0.7 * losses[0]["loss_pair"], [m["loss_pair"] for m in losses]
    assert losses[-1]["loss_gen"] < losses[0]["loss_gen"]


def test_decoding_the_real_base_writes_english(prepared, smollm2_base):
    prep, _ = prepared
    tok = load_tokenizer(smollm2_base)
    prompt = encode_texts(tok, ["The capital of France is"])[0]
    ids = jnp.asarray([prompt])
    ids_stop = [special_ids(tok).eot, tok.eos_token_id]
    gen = make_generate(prep.student.model, 8, ids_stop, special_ids(tok).pad)
    tokens, lengths = gen(prep.student.variables(prep.state.trainable), ids, jnp.ones_like(ids), jax.random.key(0))
    new = [int(t) for t in np.asarray(tokens)[0, : int(lengths[0])]]
    assert new and all(0 <= t < len(tok) for t in new)
    text = tok.decode(new, skip_special_tokens=True)
    assert "Paris" in text, text
    words = text.split()
    assert words and all(w.strip(".,;:!?'\"").isalpha() for w in words if w.strip(".,;:!?'\"")), text


def test_rerank_of_dl19_queries_with_the_real_base_writes_a_valid_run(smollm2_base, shared_data, tmp_path):
    """`r2r train` (one step) then `r2r rerank` on two DL19 queries, as a user runs them (one CPU device)."""
    from r2r_jax.data.candidates import QueryCandidates, read_candidates, write_candidates
    from r2r_jax.data.records import write_records
    from r2r_jax.retrieval.trec import read_run

    records, _ = import_file(shared_data / "teacher" / "r2r_gpt4_msmarco_500.jsonl", "r2r")
    write_records(tmp_path / "teacher.jsonl", records[:4])
    dl19 = read_candidates(shared_data / "dl19" / "bm25_top100.json")[:2]
    cands = tmp_path / "dl19.jsonl"
    write_candidates(cands, [QueryCandidates(q.qid, q.query, q.candidates[:8]) for q in dl19])
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"data": {"prompt_template": TEMPLATE}}))  # JSON is YAML
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    run_dir, out = tmp_path / "run", tmp_path / "run.trec"
    for argv in (
        ["train", "--config", str(config), "--base_model", str(smollm2_base), "--data.tokenizer", str(smollm2_base),
         "--data.train_path", str(tmp_path / "teacher.jsonl"), "--data.group_size=3", "--data.max_prompt_len=48",
         "--data.max_target_len=12",
         "--data.comparisons_per_query=0", "--lora.rank=4", "--mesh.data=1", "--batch_size=2", "--steps=1",
         "--save_every=1", "--model.remat_policy=none", "--output_dir", str(run_dir)],
        ["rerank", "--checkpoint", str(run_dir), "--candidates", str(cands), "--output", str(out),
         "--explain-top", "1", "--max-new-tokens", "12"],
    ):
        proc = subprocess.run([sys.executable, "-m", "r2r_jax.cli", *argv], env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = read_run(out)
    assert set(run) == {q.qid for q in dl19}
    for q in dl19:
        assert sorted(d for d, _ in run[q.qid]) == sorted(c.docid for c in q.candidates[:8])
    expl = [json.loads(line) for line in out.with_suffix(".explanations.jsonl").read_text().splitlines()]
    reason = expl[0]["direct_reasons"][0]["reason"]
    assert len(reason.split()) >= 3 and any(c.isalpha() for c in reason), reason
