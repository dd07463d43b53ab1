"""`r2r rerank`: valid runs on DL19, device-count invariance, a student with known scores, explanations, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import LLAMA_TOKENIZER, missing
from safetensors.numpy import save_file
from train_fixtures import saved_moved_checkpoint

from r2r_jax.cli import main as r2r
from r2r_jax.config import MeshConfig, ModelConfig
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, read_candidates, write_candidates
from r2r_jax.data.records import RecordError
from r2r_jax.model.hf_mapping import hf_config_from_model
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.rerank.job import rank_query, rerank, validate_candidates, write_outputs
from r2r_jax.retrieval.trec import read_run, write_run
from r2r_jax.testing.synthetic import FILLER, make_synthetic_dev, synthetic_data_config, synthetic_tokenizer
from r2r_jax.trained.loading import STUDENT_FILE, load_from_hf


def tiny(vocab: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, dtype="float32",
                       param_dtype="float32")


def hf_weights(cfg: ModelConfig, rng: np.random.Generator, scale: float = 0.08) -> dict[str, np.ndarray]:
    """Random weights under Hugging Face's Llama names and (out, in) layouts, plus a score head."""
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    per_layer = {"self_attn.q_proj": (q, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
                 "self_attn.o_proj": (h, q), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h),
                 "mlp.down_proj": (h, i)}
    out = {"model.embed_tokens.weight": (v, h), "lm_head.weight": (v, h), "score.weight": (1, h)}
    out.update({f"model.layers.{n}.{k}.weight": s for n in range(cfg.num_hidden_layers) for k, s in per_layer.items()})
    weights = {k: (scale * rng.standard_normal(s)).astype(np.float32) for k, s in out.items()}
    for n in range(cfg.num_hidden_layers):
        for norm in ("input_layernorm", "post_attention_layernorm"):
            weights[f"model.layers.{n}.{norm}.weight"] = (1 + 0.1 * rng.standard_normal(h)).astype(np.float32)
    weights["model.norm.weight"] = np.ones(h, np.float32)
    return weights


def write_hf_folder(folder: Path, cfg: ModelConfig, weights: dict, tokenizer, prompts: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config_from_model(cfg, "float32")))
    save_file(weights, str(folder / "model.safetensors"))
    if isinstance(tokenizer, Path):
        for f in tokenizer.iterdir():
            shutil.copy(f, folder / f.name)
    else:
        tokenizer.save_pretrained(folder)
    (folder / STUDENT_FILE).write_text(json.dumps(prompts))
    return folder


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory) -> Path:
    """A random tiny Llama with the real Llama-3.1 tokenizer (vocab 128256), LM head and score head."""
    if not LLAMA_TOKENIZER.is_dir():
        missing(f"tokenizer not found at {LLAMA_TOKENIZER}")
    cfg = tiny(128256)
    return write_hf_folder(tmp_path_factory.mktemp("llama"), cfg, hf_weights(cfg, np.random.default_rng(0)),
                           LLAMA_TOKENIZER, {"max_prompt_len": 64, "max_target_len": 6,
                                             "max_comparison_prompt_len": 96})


@pytest.fixture(scope="module")
def dl19(shared_data) -> list[QueryCandidates]:
    return read_candidates(shared_data / "dl19" / "bm25_top100.json")[:6]


def mesh_of(n: int):
    return make_mesh(MeshConfig(), jax.devices()[:n])


def test_dl19_rerank_is_a_valid_run_on_1_and_8_devices(llama_folder, dl19, tmp_path):
    assert len(jax.devices()) == 8
    results = {}
    for n in (1, 8):
        student = load_from_hf(llama_folder, mesh_of(n), dtype="float32")
        results[n] = rerank(student, dl19, batch_size=32, progress=False)
    # unrolled layers: the final layer runs at the scored position only; the scores stay the same
    unrolled = rerank(load_from_hf(llama_folder, mesh_of(8), dtype="float32", scan_layers=False), dl19,
                      batch_size=32, progress=False)
    # results[n] ran each query's shared prompt prefix once (the default); whole prompts give the same scores
    whole = rerank(load_from_hf(llama_folder, mesh_of(8), dtype="float32"), dl19, batch_size=32, progress=False,
                   share_prefix=False)
    out = tmp_path / "run.trec"
    write_outputs(results[8], dl19, out, tag="tiny")
    lines = [line.split() for line in out.read_text().splitlines()]
    run = read_run(out)
    assert list(run) == [qc.qid for qc in dl19]
    for qc in dl19:
        mine = [ln for ln in lines if ln[0] == qc.qid]
        assert [int(ln[3]) for ln in mine] == list(range(1, 101)) and {ln[5] for ln in mine} == {"tiny"}
        assert sorted(ln[2] for ln in mine) == sorted(c.docid for c in qc.candidates)  # a permutation
        scores = [float(ln[4]) for ln in mine]
        assert all(a >= b for a, b in zip(scores, scores[1:], strict=False))
        assert [ln[2] for ln in mine] == [d for d, _ in run[qc.qid]]  # the rank column is trec_eval's order
        one, eight = dict(results[1].run[qc.qid]), dict(results[8].run[qc.qid])
        assert one.keys() == eight.keys()
        np.testing.assert_allclose([one[d] for d in one], [eight[d] for d in one], atol=1e-5, rtol=0)
        np.testing.assert_allclose([dict(unrolled.run[qc.qid])[d] for d in one], [one[d] for d in one],
                                   atol=1e-5, rtol=0)
        np.testing.assert_allclose([dict(whole.run[qc.qid])[d] for d in one], [one[d] for d in one],
                                   atol=1e-5, rtol=0)
        assert np.std(scores) > 1e-4  # a real model, not a constant
    assert results[8].docs == 600 and results[8].docs_per_second > 0


def test_known_scores_put_the_known_best_first(tmp_path):
    """A student whose score is analytic: with o_proj = down_proj = 0 every layer passes the embedding through,
    so with the template "{query} {passage}" the score is w · rmsnorm(embedding of the passage's last word)."""
    tok = synthetic_tokenizer()
    cfg = tiny(len(tok))
    rng = np.random.default_rng(1)
    weights = hf_weights(cfg, rng)
    for n in range(cfg.num_hidden_layers):
        weights[f"model.layers.{n}.self_attn.o_proj.weight"][:] = 0
        weights[f"model.layers.{n}.mlp.down_proj.weight"][:] = 0
    emb = weights["model.embed_tokens.weight"] = rng.standard_normal((len(tok), 32)).astype(np.float32)
    w = weights["score.weight"][0]
    folder = write_hf_folder(tmp_path / "known", cfg, weights, tok,
                             {"prompt_template": "{query} {passage}", "max_prompt_len": 64})

    def expected(word: str) -> float:
        e = emb[tok.convert_tokens_to_ids(word)].astype(np.float64)
        return float(w @ (e / np.sqrt(np.mean(e * e) + 1e-5)))

    words = sorted(FILLER, key=expected, reverse=True)
    best, rest = words[:3], words[3:18]
    items = []
    for q in range(3):
        ends = list(rng.permutation(best + rest))  # known-best passages at random first-stage positions
        passages = [ScoredPassage(f"q{q}-d{j}", " ".join(rng.choice(FILLER, int(rng.integers(2, 50)))) + " " + end,
                                  float(-j)) for j, end in enumerate(ends)]
        items.append(QueryCandidates(f"q{q}", f"query number {q}", passages))
    write_candidates(tmp_path / "cands.jsonl", items)
    assert r2r(["rerank", "--model", str(folder), "--dtype", "float32", "--candidates", str(tmp_path / "cands.jsonl"),
                "--output", str(tmp_path / "run.trec"), "--batch-size", "8", "--unroll-layers"]) == 0
    run = read_run(tmp_path / "run.trec")
    for qc in items:
        end_of = {c.docid: c.text.split()[-1] for c in qc.candidates}
        got = [end_of[d] for d, _ in run[qc.qid]]
        assert got[:3] == best and got == words[:18]
        np.testing.assert_allclose([s for _, s in run[qc.qid]], [expected(x) for x in got], atol=1e-4)
    # --depth 6: the first-stage top 6 reranked by the student, then the other 12 in first-stage order below
    assert r2r(["rerank", "--model", str(folder), "--dtype", "float32", "--candidates", str(tmp_path / "cands.jsonl"),
                "--output", str(tmp_path / "top6.trec"), "--batch-size", "8", "--unroll-layers", "--depth", "6"]) == 0
    run = read_run(tmp_path / "top6.trec")
    for qc in items:
        end_of = {c.docid: c.text.split()[-1] for c in qc.candidates}
        top = sorted((c.docid for c in qc.candidates[:6]), key=lambda d: expected(end_of[d]), reverse=True)
        assert [d for d, _ in run[qc.qid]] == top + [c.docid for c in qc.candidates[6:]]
    # the same from a first-stage TREC run + corpus + queries: only the top 6 passages are needed
    write_run(tmp_path / "bm25.trec", {qc.qid: [(c.docid, c.score) for c in qc.candidates] for qc in items})
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"id": c.docid, "contents": c.text}) + "\n"
                                                   for qc in items for c in qc.candidates[:6]))
    (tmp_path / "queries.tsv").write_text("".join(f"{qc.qid}\t{qc.query}\n" for qc in items))
    assert r2r(["rerank", "--model", str(folder), "--dtype", "float32", "--run", str(tmp_path / "bm25.trec"),
                "--corpus", str(tmp_path / "corpus.jsonl"), "--queries", str(tmp_path / "queries.tsv"),
                "--output", str(tmp_path / "run6.trec"), "--batch-size", "8", "--unroll-layers", "--depth", "6"]) == 0
    assert read_run(tmp_path / "run6.trec") == run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint whose LoRA and head differ from their init (so a restore that fell back to init shows),
    saved without training; returns (run dir, the Prepared it came from, its trainable tree)."""
    return saved_moved_checkpoint(tmp_path_factory.mktemp("ckpt"), tiny(512), mesh_of(1))


def test_checkpoint_student_scores_with_its_restored_adapters(checkpoint):
    from r2r_jax.inference.score_step import make_score_step
    from r2r_jax.inference.scoring import score_candidates
    from r2r_jax.trained.loading import load_from_checkpoint

    run_dir, prepared, moved = checkpoint
    dev, _ = make_synthetic_dev(4, seed=5)
    student = load_from_checkpoint(run_dir, mesh_of(8))
    assert student.prompts.max_prompt_len == synthetic_data_config().max_prompt_len  # the trained settings
    result = rerank(student, dev, batch_size=16, progress=False)
    score_fn, data, tok = make_score_step(prepared.student.model), prepared.cfg.data, synthetic_tokenizer()
    initial = prepared.state.trainable
    want, init = (score_candidates(score_fn, prepared.student.variables(trainable), tok, dev, data.prompt_template,
                                   data.max_prompt_len, 16, mesh_of(1)) for trainable in (moved, initial))
    for qc in dev:
        got = dict(result.run[qc.qid])
        np.testing.assert_allclose([got[d] for d in want[qc.qid]], list(want[qc.qid].values()), atol=1e-5)
        assert not np.allclose([got[d] for d in init[qc.qid]], list(init[qc.qid].values()), atol=1e-3)


def test_explanations_for_top_k_deterministically(llama_folder, dl19, tmp_path):
    """The CLI's explanations file; a second, independent run decodes the same text; and pooling, bucketing
    and filler rows do not change what a prompt decodes to alone."""
    from r2r_jax.data.features import encode_prompts
    from r2r_jax.data.templates import special_ids

    items = dl19[:2]
    write_candidates(tmp_path / "c.jsonl", items)
    assert r2r(["rerank", "--model", str(llama_folder), "--dtype", "float32", "--candidates", str(tmp_path / "c.jsonl"),
                "--output", str(tmp_path / "run.trec"), "--explain-top", "3", "--max-new-tokens", "4"]) == 0
    run = read_run(tmp_path / "run.trec")
    records = [json.loads(line) for line in (tmp_path / "run.explanations.jsonl").read_text().splitlines()]
    assert [r["qid"] for r in records] == [qc.qid for qc in items]
    for rec in records:
        top = [d for d, _ in run[rec["qid"]]][:3]
        assert [r["docid"] for r in rec["ranking"]] == [d for d, _ in run[rec["qid"]]]
        assert [(d["rank"], d["docid"]) for d in rec["direct_reasons"]] == list(zip([1, 2, 3], top, strict=True))
        # one listwise window of the top 3, shown in first-stage order, one reason about each passage
        first_stage = [c.docid for c in next(qc for qc in items if qc.qid == rec["qid"]).candidates]
        shown = sorted(top, key=first_stage.index)
        assert [(c["ranks"], c["docids"], c["about"]) for c in rec["comparisons"]] == [
            ([top.index(d) + 1 for d in shown], shown, d) for d in top]
        assert all(d["reason"] and d["passage"] for d in rec["direct_reasons"])
        assert all(c["reason"] for c in rec["comparisons"])

    student = load_from_hf(llama_folder, mesh_of(8), dtype="float32")
    again = rerank(student, items, batch_size=8, explain_top=3, max_new_tokens=4, progress=False)
    for rec in records:
        assert again.explanations[rec["qid"]].to_dict() == {k: [{x: y for x, y in d.items() if x != "passage"}
                                                                for d in rec[k]]
                                                            for k in ("direct_reasons", "comparisons")}
    tok, pr, ids = student.tokenizer, student.prompts, special_ids(student.tokenizer)
    qc, first = items[1], records[1]["direct_reasons"][0]
    i, m = encode_prompts(tok, qc.query, [first["passage"]], pr.prompt_template, pr.max_prompt_len)
    tokens, lengths = student.generate_fn(4, {ids.eot, tok.eos_token_id}, ids.pad)(
        student.variables, i, m, jax.random.key(0), 0.0)
    alone = tok.decode([t for t in np.asarray(tokens[0, : int(lengths[0])]) if t != ids.eot],
                       skip_special_tokens=True).strip()
    assert first["reason"] == alone


def test_explain_ranks_and_the_comparisons_they_make():
    from r2r_jax.rerank.explain_plan import ExplainPlan, comparisons_for, parse_ranks, windows

    assert parse_ranks("1-10,91-100") == ((1, 10), (91, 100)) and parse_ranks(" 3 , 5-6") == ((3, 3), (5, 6))
    for bad in ("", "0-3", "5-2", "1-5,3-8", "a-b", "1-3,2", "1-3,"):
        with pytest.raises(ValueError, match="--explain-ranks"):
            parse_ranks(bad)
    assert windows(list(range(1, 11))) == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert windows(list(range(1, 8))) == [[1, 2, 3, 4], [5, 6, 7]]  # near-equal: never a lone passage
    assert windows([1, 2, 3, 4, 5, 6]) == [[1, 2, 3], [4, 5, 6]] and windows([4]) == [[4]]
    order = list("edcbagf")  # the final ranking: e is rank 1, f rank 7
    first_stage = {d: i for i, d in enumerate("abcdefg")}
    window = comparisons_for(ExplainPlan(((1, 3), (6, 7))), order, first_stage)
    # each range its own window, listed in first-stage order; one reason about each passage, in rank order
    assert [(c.docids, c.about) for c in window] == [(list("cde"), "e"), (list("cde"), "d"), (list("cde"), "c"),
                                                     (list("fg"), "g"), (list("fg"), "f")]
    pairs = comparisons_for(ExplainPlan(((1, 3),), "pair"), order, first_stage)
    assert [(c.docids, c.about) for c in pairs] == [(list("de"), None), (list("cd"), None)]
    assert comparisons_for(ExplainPlan(((1, 3),), "none"), order, first_stage) == []
    for plan in (ExplainPlan(((1, 3), (6, 7))), ExplainPlan(((2, 9),), "pair"), ExplainPlan.top(1),
                 ExplainPlan(((1, 10), (91, 100))), ExplainPlan.top(12, "none")):
        for n in (1, 2, 5, 7, 12, 95, 100):
            ranking = [f"d{i}" for i in range(n)]
            made = comparisons_for(plan, ranking, {d: i for i, d in enumerate(ranking)})
            direct = sum(len(b) for b in plan.blocks(n))
            assert plan.count(n) == direct + len(made)
    assert ExplainPlan(((1, 10), (91, 100))).blocks(95) == [list(range(1, 11)), list(range(91, 96))]
    assert ExplainPlan.top(3).describe() == "the top 3 (window comparisons)"
    assert ExplainPlan(((1, 2), (9, 9)), "none").describe() == "ranks 1-2,9 (direct only)"
    assert not ExplainPlan.top(0) and not ExplainPlan.top(1).compares and ExplainPlan.top(2).compares


def test_served_comparison_prompts_are_the_training_prompts(tmp_path):
    """What `r2r rerank` feeds the decoder is, token for token, what training fed the train step for the same
    query and passages: a release-style window (listwise reasons with the `about` line, the window in the
    teacher's order, which a first-stage candidate list keeps) and `r2r teach`-style pairs (first-stage order,
    no `about`), direct prompts too, with a long passage cut to the comparison prompt limit on both paths."""
    from types import SimpleNamespace

    from r2r_jax.config import DataConfig
    from r2r_jax.data.features import comparison_item, tokenize_records
    from r2r_jax.data.records import Candidate, Comparison, TeacherRecord
    from r2r_jax.data.templates import encode_texts, load_tokenizer
    from r2r_jax.rerank.explain import explain_rankings
    from r2r_jax.rerank.explain_plan import ExplainPlan
    from r2r_jax.testing.demo_tokenizer import build_demo_tokenizer
    from r2r_jax.trained.loading import PromptSettings

    tok = load_tokenizer(build_demo_tokenizer(tmp_path / "tok"))
    data = DataConfig(max_prompt_len=64, max_comparison_prompt_len=128, comparisons_per_query=8)
    texts = ["Honeybees swarm in spring when the colony outgrows its hive.",
             "A swarm is a queen and thousands of workers looking for a new home. " * 12,  # cut on both paths
             "Bees dance to tell the others where flowers are.",
             "Wasps are not bees.", "Swarming splits one colony into two."]

    def record(qid: str, ranking: list[int], comparisons) -> TeacherRecord:
        cands = [Candidate(f"{qid}-{i + 1}", t) for i, t in enumerate(texts)]
        order = [f"{qid}-{r}" for r in ranking]
        return TeacherRecord(qid, "why do honeybees swarm", cands, order, {d: "because" for d in order},
                             comparisons([c.docid for c in cands], order))

    release = record("r", [5, 1, 2, 4, 3], lambda window, order: [Comparison(window, None, "w", about=d)
                                                                 for d in order])
    pairwise = record("p", [2, 5, 1, 3, 4], lambda window, order: [
        Comparison(sorted(pair, key=window.index), pair[0], "p") for pair in zip(order, order[1:], strict=False)])
    trained = tokenize_records([release, pairwise], tok, data)
    uncut = [len(encode_texts(tok, [render(*args)])[0]) for rec in (release, pairwise) for args, render in
             (comparison_item(rec.query, {c.docid: c.text for c in rec.candidates}, cmp, data.comparison_template)
              for cmp in rec.comparisons)]
    assert max(uncut) > data.max_comparison_prompt_len >= max(len(p) for r in trained for p in r.cmp_prompts)

    fed: list[tuple[int, ...]] = []  # every prompt row the decoder is given, its padding dropped

    def generate_fn(max_new_tokens, stop, pad):
        def generate(variables, ids, mask, rng, temperature):
            ids, mask = np.asarray(ids), np.asarray(mask).astype(bool)
            fed.extend(tuple(row[m].tolist()) for row, m in zip(ids, mask, strict=True))
            return jax.numpy.zeros((len(ids), 1), np.int32), jax.numpy.zeros((len(ids),), np.int32)
        return generate

    student = SimpleNamespace(tokenizer=tok, prompts=PromptSettings.from_data_config(data), variables=None,
                              generate_fn=generate_fn)
    for rec, fmt, tokenized in ((release, "window", trained[0]), (pairwise, "pair", trained[1])):
        qc = QueryCandidates(rec.qid, rec.query, [ScoredPassage(c.docid, c.text) for c in rec.candidates])
        fed.clear()
        explained = explain_rankings(student, [(qc, rec.ranking)], ExplainPlan.top(5, fmt), 4, 3)[rec.qid]
        want = [tuple(p.tolist()) for p in (*tokenized.prompts, *tokenized.cmp_prompts)]
        assert sorted(fed) == sorted(want) and len(fed) == 5 + len(rec.comparisons)
        assert [(list(c.docids), c.about) for c in explained.comparisons] == [(c.docids, c.about)
                                                                             for c in rec.comparisons]


def test_rerank_explains_the_ranks_asked_for(checkpoint, tmp_path, capsys):
    """--explain-ranks: direct reasons at exactly those ranks, listwise windows within each range with their
    ranks and docids in prompt order; --explain-comparisons pair / none; bad rank specs fail in one line."""
    run_dir, _, _ = checkpoint
    dev, _ = make_synthetic_dev(2, seed=7, n_candidates=8)
    cands = tmp_path / "cands.jsonl"
    write_candidates(cands, dev)
    base = ["rerank", "--checkpoint", str(run_dir), "--candidates", str(cands), "--max-new-tokens", "3",
            "--batch-size", "8"]
    assert r2r([*base, "--output", str(tmp_path / "w.trec"), "--explain-ranks", "1-3,6-7"]) == 0
    assert "explained ranks 1-3,6-7 (window comparisons): 20 reasons" in capsys.readouterr().out
    run = read_run(tmp_path / "w.trec")
    for qc, rec in zip(dev, map(json.loads, (tmp_path / "w.explanations.jsonl").read_text().splitlines()),
                       strict=True):
        order = [d for d, _ in run[qc.qid]]
        first_stage = [c.docid for c in qc.candidates]
        assert [(d["rank"], d["docid"]) for d in rec["direct_reasons"]] == [(r, order[r - 1]) for r in (1, 2, 3, 6, 7)]
        want = []
        for ranks in ([1, 2, 3], [6, 7]):
            shown = sorted((order[r - 1] for r in ranks), key=first_stage.index)
            want += [([order.index(d) + 1 for d in shown], shown, order[r - 1]) for r in ranks]
        assert [(c["ranks"], c["docids"], c["about"]) for c in rec["comparisons"]] == want
        assert all(isinstance(c["reason"], str) for c in rec["comparisons"])
    assert r2r([*base, "--output", str(tmp_path / "p.trec"), "--explain-top", "3", "--explain-comparisons", "pair",
                "--max-queries", "1"]) == 0
    [rec] = [json.loads(line) for line in (tmp_path / "p.explanations.jsonl").read_text().splitlines()]
    order = [d for d, _ in read_run(tmp_path / "p.trec")[dev[0].qid]]
    first_stage = [c.docid for c in dev[0].candidates]
    assert [c["docids"] for c in rec["comparisons"]] == [sorted(order[i:i + 2], key=first_stage.index)
                                                         for i in (0, 1)]
    assert all("about" not in c for c in rec["comparisons"])
    capsys.readouterr()
    for args, needle in ((["--explain-ranks", "3-1"], "--explain-ranks"),
                         (["--explain-ranks", "1-3,9-10", "--depth", "8"], "only the top 8 are reranked"),
                         (["--explain-top", "4", "--depth", "3"], "--explain-top 1-4: only the top 3")):
        assert r2r([*base, "--output", str(tmp_path / "bad.trec"), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("r2r rerank: error:") and needle in err[0], err
    assert not (tmp_path / "bad.trec").exists()


def test_ranking_is_a_deterministic_permutation():
    qc = QueryCandidates("q", "text", [ScoredPassage(d, "p") for d in ("a", "b", "c", "d")])
    assert rank_query(qc, {"a": 1.0, "b": 2.0, "c": 1.0, "d": 0.5}) == [("b", 2.0), ("c", 1.0), ("a", 1.0),
                                                                         ("d", 0.5)]
    with pytest.raises(RuntimeError, match="one to one"):
        rank_query(qc, {"a": 1.0, "b": 2.0, "c": 1.0})
    with pytest.raises(FloatingPointError, match="non-finite"):
        rank_query(qc, {"a": 1.0, "b": float("nan"), "c": 1.0, "d": 0.0})


def _rerank_error(capsys, *args: str) -> str:
    assert r2r(["rerank", "--model", "/nonexistent", "--output", "/nonexistent/run.trec", *args]) == 2  # bad input
    return capsys.readouterr().err


def test_malformed_inputs_give_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    good = {"query": {"qid": "1", "text": "q"}, "candidates": [{"docid": "d1", "doc": {"contents": "x"}}]}
    bad.write_text(json.dumps(good) + "\n{not json\n")
    assert f"{bad}:2" in _rerank_error(capsys, "--candidates", str(bad))
    bad.write_text(json.dumps({**good, "query": {"qid": "1", "text": " "}}) + "\n")
    err = _rerank_error(capsys, "--candidates", str(bad))
    assert f"{bad}:1" in err and "query.text" in err
    spaced = {**good, "candidates": [{"docid": "d 1", "doc": {"contents": "x"}}]}
    bad.write_text(json.dumps(good) + "\n\n" + json.dumps({**spaced, "query": {"qid": "2", "text": "q"}}) + "\n")
    err = _rerank_error(capsys, "--candidates", str(bad))
    assert f"{bad}:3" in err and "candidates[0].docid" in err and "whitespace" in err
    hits = tmp_path / "hits.json"
    hits.write_text(json.dumps([{"query": "q", "hits": [{"qid": 1, "docid": "d", "content": "x"},
                                                        {"qid": 1, "docid": "d", "content": "y"}]}]))
    err = _rerank_error(capsys, "--candidates", str(hits))
    assert str(hits) in err and "candidates[1].docid" in err and "appears twice" in err
    hits.write_text(json.dumps([{"query": "q", "hits": [{"qid": 1, "docid": "a b", "content": "x"}]}]))
    assert "whitespace" in _rerank_error(capsys, "--candidates", str(hits))


def test_run_corpus_mismatches_give_clear_errors(tmp_path, capsys):
    run, corpus, queries = tmp_path / "bm25.trec", tmp_path / "corpus.tsv", tmp_path / "q.tsv"
    run.write_text("1 Q0 d1 1 9.0 bm25\n1 Q0 d2 2 8.0 bm25\n2 Q0 d1 1 5.0 bm25\n")
    corpus.write_text("d1\tfirst passage\n")
    queries.write_text("1\tfirst query\n2\tsecond query\n")
    err = _rerank_error(capsys, "--run", str(run), "--corpus", str(corpus), "--queries", str(queries))
    assert str(corpus) in err and "'docid'" in err and "d2" in err
    corpus.write_text("d1\tfirst passage\nd2\tsecond\n")
    queries.write_text("1\tfirst query\n")
    err = _rerank_error(capsys, "--run", str(run), "--corpus", str(corpus), "--queries", str(queries))
    assert str(run) in err and "'qid'" in err and "'2'" in err
    run.write_text("1 Q0 d1 1 9.0\n")
    assert f"{run}:1" in _rerank_error(capsys, "--run", str(run), "--corpus", str(corpus), "--queries", str(queries))
    assert "--corpus" in _rerank_error(capsys, "--run", str(run))
    assert "no candidates" in _rerank_error(capsys)


def test_validation_and_model_errors(llama_folder, tmp_path, capsys):
    with pytest.raises(RecordError, match=r"query\[1\].*qid appears twice"):
        validate_candidates([QueryCandidates("1", "a", [ScoredPassage("d", "x")])] * 2, "f.jsonl")
    with pytest.raises(RecordError, match="no candidates"):
        validate_candidates([QueryCandidates("1", "a", [])], "f.jsonl")
    cands = tmp_path / "c.jsonl"
    write_candidates(cands, [QueryCandidates("1", "a query", [ScoredPassage("d", "x")])])
    seq_cls = tmp_path / "seq_cls"
    shutil.copytree(llama_folder, seq_cls)
    weights = hf_weights(tiny(128256), np.random.default_rng(0))
    save_file({k: v for k, v in weights.items() if k != "score.weight"}, str(seq_cls / "model.safetensors"))
    args = ["rerank", "--model", str(seq_cls), "--candidates", str(cands), "--output", str(tmp_path / "r.trec")]
    assert r2r(args) == 2 and "no score.weight" in capsys.readouterr().err  # not a whole export: bad input
    save_file({k: v for k, v in weights.items() if k != "lm_head.weight"}, str(seq_cls / "model.safetensors"))
    assert r2r(args + ["--dtype", "float32"]) == 0  # a seq-cls export scores without an LM head
    assert r2r(args + ["--explain-top", "2"]) == 1 and "no LM head" in capsys.readouterr().err


def test_shared_prefix_length_leaves_every_suffix_a_token():
    from r2r_jax.inference.prefix import shared_prefix_length

    rows = [np.asarray(r) for r in ([1, 5, 6, 7, 9], [1, 5, 6, 8], [1, 5, 6, 7])]
    assert shared_prefix_length(rows) == 3
    assert shared_prefix_length([np.asarray([1, 5, 6])]) == 2  # one prompt: all but its last token
    assert shared_prefix_length([np.asarray([1, 5, 6]), np.asarray([1, 5, 6])]) == 2
    assert shared_prefix_length([np.asarray([2, 5]), np.asarray([1, 5])]) == 0


# `r2r rerank` run as the `r2r` program with one event at a known point of the job, whatever the host's speed:
# SIGINT as the checkpoint's adapters start to load, after the first batch of scores or after the first batch of
# reasons, or SIGKILL once N shards are on disk.
RERANK_WITH_EVENT = """
import os, signal, sys
from r2r_jax import checkpoint, cli
from r2r_jax.rerank import job, shards

EVENT = sys.argv[1]
# Ctrl-C raises KeyboardInterrupt, as at a terminal, also where the tests run as a background job (which starts
# its processes with SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupt():
    os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at once: KeyboardInterrupt here, in the main thread


def after_first_batch(real):
    def wrapped(*args, progress, **kwargs):
        def first(n):
            progress(n)
            interrupt()
        return real(*args, progress=first, **kwargs)
    return wrapped


if EVENT == "load":
    restore_trainable = checkpoint.Checkpointer.restore_trainable

    def interrupted_restore(self, *args, **kwargs):
        interrupt()
        return restore_trainable(self, *args, **kwargs)

    checkpoint.Checkpointer.restore_trainable = interrupted_restore
elif EVENT == "score":
    job.score_candidates = after_first_batch(job.score_candidates)
elif EVENT == "explain":
    job.explain_rankings = after_first_batch(job.explain_rankings)
else:
    left = [int(EVENT.removeprefix("kill-after-shards="))]
    write_run = shards.write_run

    def write_and_count(*args, **kwargs):  # shard files only: the final run is written by concatenation
        write_run(*args, **kwargs)
        left[0] -= 1
        if left[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    shards.write_run = write_and_count
sys.argv = ["r2r", *sys.argv[2:]]
sys.exit(cli.main())
"""


def rerank_process(event: str, args: list[str], env: dict):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", RERANK_WITH_EVENT, event, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("event", ["load", "score", "explain"])
def test_ctrl_c_mid_rerank_exits_130_with_one_line_and_writes_nothing(checkpoint, tmp_path, event):
    """SIGINT while the job loads the student, scores or explains: exit 130, `r2r rerank: interrupted`, no
    traceback, no crash, and no run or explanations file."""
    import os

    run_dir, _, _ = checkpoint
    dev, _ = make_synthetic_dev(6, seed=1, n_candidates=8)
    write_candidates(tmp_path / "cands.jsonl", dev)
    out = tmp_path / "run.trec"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    proc = rerank_process(event, ["rerank", "--checkpoint", str(run_dir), "--candidates",
                                  str(tmp_path / "cands.jsonl"), "--output", str(out), "--explain-top", "2",
                                  "--batch-size", "4", "--no-share-prefix"], env)
    _, err = proc.communicate(timeout=600)
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and not ln.startswith(("score", "explain"))]  # progress bars aside
    assert proc.returncode == 130 and lines == ["r2r rerank: interrupted"], (proc.returncode, lines[-20:])
    assert ("score" in err) == (event != "load") and ("explain" in err) == (event == "explain")  # where it stopped
    assert not out.exists() and not list(tmp_path.glob("*.explanations.jsonl"))


def _rerank_args(run_dir, cands, out) -> list[str]:
    return ["rerank", "--checkpoint", str(run_dir), "--candidates", str(cands), "--output", str(out),
            "--explain-top", "2", "--max-new-tokens", "4", "--batch-size", "8", "--shard-size", "2"]


def test_a_killed_rerank_resumes_without_scoring_a_finished_query_again(checkpoint, tmp_path, capsys):
    """SIGKILL mid-job leaves finished shards in <output>.shards/; the same command then reranks only the
    rest, and the run and explanations equal an uninterrupted job's, byte for byte."""
    import os
    import signal

    run_dir, _, _ = checkpoint
    dev, _ = make_synthetic_dev(16, seed=2, n_candidates=6)
    cands = tmp_path / "cands.jsonl"
    write_candidates(cands, dev)
    reference = tmp_path / "reference.trec"
    assert r2r(_rerank_args(run_dir, cands, reference)) == 0
    assert not (tmp_path / "reference.trec.shards").exists()  # the job's own folder, removed when done

    out = tmp_path / "run.trec"
    shards = tmp_path / "run.trec.shards"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # the same fake devices as this process: the same batches
    proc = rerank_process("kill-after-shards=3", _rerank_args(run_dir, cands, out), env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    assert len(list(shards.glob("shard-*.trec"))) == 3 and not out.exists()

    capsys.readouterr()
    assert r2r(_rerank_args(run_dir, cands, out)) == 0
    printed = capsys.readouterr().out
    assert "reranked 10 queries (6 more from 3 finished shard" in printed
    assert out.read_bytes() == reference.read_bytes()
    explained = tmp_path / "run.explanations.jsonl"
    assert explained.read_bytes() == (tmp_path / "reference.explanations.jsonl").read_bytes()
    assert not shards.exists()


def test_a_shard_folder_of_another_job_or_not_ours_is_refused(checkpoint, tmp_path, capsys):
    run_dir, _, _ = checkpoint
    dev, _ = make_synthetic_dev(3, seed=4, n_candidates=4)
    cands = tmp_path / "cands.jsonl"
    write_candidates(cands, dev)
    out = tmp_path / "run.trec"
    shards = tmp_path / "run.trec.shards"
    shards.mkdir()
    (shards / "notes.txt").write_text("mine")
    assert r2r(_rerank_args(run_dir, cands, out)) == 2
    assert "not an r2r rerank shard folder" in capsys.readouterr().err
    assert (shards / "notes.txt").read_text() == "mine" and not out.exists()

    (shards / "notes.txt").unlink()
    shards.rmdir()
    shards.mkdir()
    (shards / "job.json").write_text(json.dumps({"fingerprint": "other", "job": {"depth": 3}}))
    assert r2r(_rerank_args(run_dir, cands, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds shards of a different job (changed: " in err[0] and "depth" in err[0]
    assert (shards / "job.json").is_file() and not out.exists()


def test_the_stored_default_ranks_as_its_offline_fusion_and_student_only_ignores_it(checkpoint, tmp_path, capsys):
    """`r2r rerank` reads the run's rerank_default.json (written by tune-fusion): its run equals the
    student-only run fused offline with that setting, its depth included; --student-only and --fusion win."""
    from r2r_jax.inference.fusion import DEFAULT_FILE, Fusion, fuse_run

    run_dir, _, _ = checkpoint
    dev, _ = make_synthetic_dev(4, seed=6, n_candidates=8)
    dev = [QueryCandidates(qc.qid, qc.query, [ScoredPassage(c.docid, c.text, 10.0 - 0.7 * i)
                                              for i, c in enumerate(qc.candidates)]) for qc in dev]
    cands = tmp_path / "cands.jsonl"
    write_candidates(cands, dev)
    base = ["rerank", "--checkpoint", str(run_dir), "--candidates", str(cands), "--batch-size", "8"]
    assert r2r([*base, "--output", str(tmp_path / "student.trec"), "--student-only"]) == 0
    student = read_run(tmp_path / "student.trec")
    setting = Fusion("interpolate", 0.4, depth=5)
    (run_dir / DEFAULT_FILE).write_text(json.dumps({"fusion": setting.to_dict()}))
    try:
        capsys.readouterr()
        assert r2r([*base, "--output", str(tmp_path / "default.trec")]) == 0
        assert "ranking: interpolate (student weight 0.4) over top 5 (the student's stored default)" in \
            capsys.readouterr().out
        want = fuse_run(dev, student, setting)
        got = read_run(tmp_path / "default.trec")
        assert [[d for d, _ in got[q]] for q in got] == [[d for d, _ in want[q]] for q in got]
        assert got != student  # the fusion changed something, or the test shows nothing
        assert r2r([*base, "--output", str(tmp_path / "again.trec"), "--student-only"]) == 0
        assert read_run(tmp_path / "again.trec") == student
        assert r2r([*base, "--output", str(tmp_path / "rrf.trec"), "--fusion", "rrf", "--fusion-weight", "0.7"]) == 0
        rrf = fuse_run(dev, student, Fusion("rrf", 0.7))
        assert [[d for d, _ in v] for v in read_run(tmp_path / "rrf.trec").values()] == \
            [[d for d, _ in rrf[q]] for q in rrf]
        (run_dir / DEFAULT_FILE).write_text(json.dumps({"fusion": {"method": "average"}}))
        capsys.readouterr()
        assert r2r([*base, "--output", str(tmp_path / "bad.trec")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("r2r rerank: error:") and DEFAULT_FILE in err and not (tmp_path / "bad.trec").exists()
    finally:
        (run_dir / DEFAULT_FILE).unlink()
