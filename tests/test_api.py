"""`Reranker`: the same scores as `r2r rerank`, reasons for the top K, the stored default, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file
from train_fixtures import saved_moved_checkpoint

from r2r_jax import Ranked, Reranker
from r2r_jax.cli import main as r2r
from r2r_jax.config import MeshConfig, ModelConfig
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, write_candidates
from r2r_jax.inference.fusion import DEFAULT_FILE, STUDENT_ONLY, Fusion, fuse_run
from r2r_jax.model.hf_mapping import hf_config_from_model
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.retrieval.trec import read_run
from r2r_jax.testing.synthetic import make_synthetic_dev, synthetic_tokenizer


def tiny(vocab: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, dtype="float32",
                       param_dtype="float32")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A training run whose checkpoint's LoRA and head differ from their init, saved without training."""
    mesh = make_mesh(MeshConfig(), jax.devices()[:1])
    return saved_moved_checkpoint(tmp_path_factory.mktemp("ckpt"), tiny(512), mesh)[0]


@pytest.fixture(scope="module")
def dev() -> list[QueryCandidates]:
    """Synthetic queries with falling first-stage scores, so a fusing setting has a signal to mix in."""
    items, _ = make_synthetic_dev(3, seed=6, n_candidates=8)
    return [QueryCandidates(qc.qid, qc.query, [ScoredPassage(c.docid, c.text, 10.0 - 0.7 * i)
                                               for i, c in enumerate(qc.candidates)]) for qc in items]


@pytest.fixture(scope="module")
def cli_run(run_dir, dev, tmp_path_factory):
    """`r2r rerank --student-only` over `dev`: the scores the API must reproduce."""
    folder = tmp_path_factory.mktemp("cli")
    write_candidates(folder / "cands.jsonl", dev)
    assert r2r(["rerank", "--checkpoint", str(run_dir), "--candidates", str(folder / "cands.jsonl"),
                "--output", str(folder / "run.trec"), "--student-only", "--batch-size", "8"]) == 0
    return read_run(folder / "run.trec")


@pytest.fixture(scope="module")
def reranker(run_dir) -> Reranker:
    return Reranker.load(run_dir, student_only=True, batch_size=8)


def as_run(qc: QueryCandidates, ranked: list[Ranked]) -> list[tuple[str, float]]:
    return [(qc.candidates[r.index].docid, r.score) for r in ranked]


def test_rank_gives_r2r_rerank_scores_order_and_indices(reranker, dev, cli_run):
    for qc in dev:
        passages = [c.text for c in qc.candidates]
        ranked = reranker.rank(qc.query, passages)
        assert sorted(r.index for r in ranked) == list(range(len(passages)))  # a permutation of the input
        assert all(r.text == passages[r.index] and r.reason is None for r in ranked)
        got, want = as_run(qc, ranked), cli_run[qc.qid]
        assert [d for d, _ in got] == [d for d, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5, rtol=0)
    batch = reranker.rerank_batch(dev)  # QueryCandidates keep their own ids; one job for every query
    for qc, ranked in zip(dev, batch, strict=True):
        assert [d for d, _ in as_run(qc, ranked)] == [d for d, _ in cli_run[qc.qid]]
    pairs = reranker.rerank_batch([(qc.query, [c.text for c in qc.candidates]) for qc in dev])
    assert [[r.index for r in x] for x in pairs] == [[r.index for r in x] for x in batch]


def test_explain_gives_a_reason_for_the_top_k_only(reranker, dev):
    qc = dev[0]
    ranked = reranker.rank(qc.query, [c.text for c in qc.candidates], explain=1)
    assert isinstance(ranked[0].reason, str) and ranked[0].reason
    assert all(r.reason is None for r in ranked[1:])
    assert [r.index for r in ranked] == [r.index for r in reranker.rank(qc.query, [c.text for c in qc.candidates])]


def test_the_stored_default_is_honoured_and_student_only_ignores_it(run_dir, dev, cli_run):
    setting = Fusion("interpolate", 0.4, depth=5)
    (run_dir / DEFAULT_FILE).write_text(json.dumps({"fusion": setting.to_dict()}))
    try:
        fused = Reranker.load(run_dir / "checkpoints", batch_size=8)  # the run's default, found from below
        assert fused.fusion == setting
        want = fuse_run(dev, cli_run, setting)
        for qc in dev:
            scores = [c.score for c in qc.candidates]
            got = as_run(qc, fused.rank(qc.query, [c.text for c in qc.candidates], scores=scores))
            assert [d for d, _ in got] == [d for d, _ in want[qc.qid]]
        assert any([d for d, _ in want[q]] != [d for d, _ in cli_run[q]] for q in want)  # fusion changed something
        alone = Reranker.load(run_dir, student_only=True, batch_size=8)
        assert alone.fusion == STUDENT_ONLY
        qc = dev[0]
        ranked = alone.rank(qc.query, [c.text for c in qc.candidates], scores=[c.score for c in qc.candidates])
        assert [d for d, _ in as_run(qc, ranked)] == [d for d, _ in cli_run[qc.qid]]
        (run_dir / DEFAULT_FILE).write_text(json.dumps({"fusion": {"method": "average"}}))
        with pytest.raises(ValueError, match=DEFAULT_FILE):  # read before the weights load
            Reranker.load(run_dir)
    finally:
        (run_dir / DEFAULT_FILE).unlink()
    with pytest.raises(ValueError, match="not both"):
        Reranker.load(run_dir, fusion=setting, student_only=True)


@pytest.mark.parametrize("query, passages, scores, message", [
    ("q", [], None, "passages is empty"),
    ("q", ["a", 3], None, r"passages\[1\] is a int, expected a str"),
    ("q", "one passage", None, "passages must be a list of str"),
    (None, ["a"], None, "query 0: expected a str"),
    ("   ", ["a"], None, "empty query text"),
    ("q", ["a", "b"], [1.0], "scores must be a list of 2 numbers"),
    ("q", ["a", "b"], [1.0, float("nan")], r"scores\[1\] is nan"),
])
def test_bad_inputs_raise_value_errors_naming_the_problem(reranker, query, passages, scores, message):
    with pytest.raises(ValueError, match=message):
        reranker.rank(query, passages, scores=scores)


def test_bad_batches_raise_value_errors(reranker, dev):
    with pytest.raises(ValueError, match="qid 'x'.*appears twice"):
        reranker.rerank_batch([QueryCandidates("x", "q", [ScoredPassage("a", "t")])] * 2)
    with pytest.raises(ValueError, match="item 1: expected a .query, passages. pair"):
        reranker.rerank_batch([("q", ["a"]), "q"])
    assert reranker.rerank_batch([]) == []


def test_an_export_folder_loads_as_r2r_rerank_model_does(dev, tmp_path):
    """A merged folder with score.weight (and an LM head): scores equal `r2r rerank --model` with the CPU
    settings the API picks on CPU (loop attention, unrolled layers)."""
    tok = synthetic_tokenizer()
    cfg = tiny(len(tok))
    rng = np.random.default_rng(0)
    h, i, v, q, kv = 32, 64, len(tok), 32, 16
    shapes = {"model.embed_tokens.weight": (v, h), "lm_head.weight": (v, h), "score.weight": (1, h)}
    for n in range(cfg.num_hidden_layers):
        shapes.update({f"model.layers.{n}.{k}.weight": s for k, s in {
            "self_attn.q_proj": (q, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
            "self_attn.o_proj": (h, q), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i),
            "input_layernorm": (h,), "post_attention_layernorm": (h,)}.items()})
    shapes["model.norm.weight"] = (h,)
    weights = {k: (1.0 + 0.1 * rng.standard_normal(s) if len(s) == 1 else 0.08 * rng.standard_normal(s))
               .astype(np.float32) for k, s in shapes.items()}
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config_from_model(cfg, "float32")))
    save_file(weights, str(folder / "model.safetensors"))
    tok.save_pretrained(folder)
    (folder / "r2r_student.json").write_text(json.dumps({"max_prompt_len": 64}))
    write_candidates(tmp_path / "cands.jsonl", dev)
    assert r2r(["rerank", "--model", str(folder), "--dtype", "float32", "--attention", "loop", "--unroll-layers",
                "--candidates", str(tmp_path / "cands.jsonl"), "--output", str(tmp_path / "run.trec"),
                "--batch-size", "8"]) == 0
    want = read_run(tmp_path / "run.trec")
    with pytest.raises(ValueError, match="base_model goes with"):
        Reranker.load(folder, base_model="elsewhere")
    reranker = Reranker.load(folder, dtype="float32", batch_size=8)
    assert reranker.fusion == STUDENT_ONLY and "model" in repr(reranker)
    for qc, ranked in zip(dev, reranker.rerank_batch(dev, explain=1), strict=True):
        got = as_run(qc, ranked)
        assert [d for d, _ in got] == [d for d, _ in want[qc.qid]]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want[qc.qid]], atol=1e-5, rtol=0)
        assert isinstance(ranked[0].reason, str) and ranked[1].reason is None


def test_import_r2r_jax_stays_light():
    code = ("import sys, r2r_jax; assert 'jax' not in sys.modules, 'jax imported'; "
            "from r2r_jax import Reranker; assert 'jax' in sys.modules; print(Reranker.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "r2r_jax.api"
