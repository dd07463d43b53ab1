"""`r2r evaluate-reasons`: the metrics agree with sacrebleu / rouge-score called directly, the reasons to evaluate
are the teacher's, decoded from the training prompts, and the command writes aligned JSON or fails with one line.

One tiny random student (demo BPE tokenizer) is checkpointed once and shared by the module; the first demo records
are the held-out set.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from r2r_jax.cli import main as r2r
from r2r_jax.config import DataConfig, LoraConfig, MeshConfig, ModelConfig, TrainConfig
from r2r_jax.data.records import Comparison, read_records, write_records
from r2r_jax.eval import text_metrics as tm
from r2r_jax.rerank.reasons import collect_reasons, parse_kinds

DEMO_TEACHER = Path(__file__).resolve().parents[1] / "r2r_jax" / "demo_data" / "teacher.jsonl"
HELD_OUT = 3  # the first demo records; training uses the next ones

REF = "The passage explains how honeybees use the waggle dance to show where flowers are."
PARTIAL = "This passage explains the waggle dance honeybees perform near flowers."


def test_identical_disjoint_and_empty_generations():
    assert tm.rouge_l(REF, REF) == pytest.approx(1.0)
    assert tm.sentence_bleu(REF, REF) == pytest.approx(100.0)
    assert tm.corpus_bleu([REF, "short one"], [REF, "short one"]) == pytest.approx(100.0)
    assert tm.sentence_bleu("the cat", "the cat") == pytest.approx(100.0)  # effective order: short exact match
    assert tm.rouge_l(REF, "zebra quantum xylophone") == 0.0
    assert tm.sentence_bleu(REF, "zebra quantum xylophone") == 0.0
    assert tm.rouge_l(REF, "") == 0.0 and tm.sentence_bleu(REF, "  ") == 0.0
    s = tm.summarize([REF, REF], [REF, ""])
    assert (s.n, s.empty) == (2, 1)
    assert s.rouge_l == pytest.approx(0.5) and s.sentence_bleu == pytest.approx(50.0)
    assert 0.0 < s.bleu < 100.0  # the empty one counts against the corpus length
    assert tm.summarize([], []) == tm.Summary(0, 0, None, None, None)
    with pytest.raises(ValueError, match="references"):
        tm.summarize([REF], [])


def test_partial_overlap_matches_the_libraries():
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(REF, PARTIAL)["rougeL"].fmeasure
    assert 0.2 < rouge < 0.9
    assert tm.rouge_l(REF, PARTIAL) == pytest.approx(rouge, abs=1e-12)
    bleu = sacrebleu.sentence_bleu(PARTIAL, [REF]).score
    assert 0.0 < bleu < 100.0
    assert tm.sentence_bleu(REF, PARTIAL) == pytest.approx(bleu, abs=1e-9)
    refs, hyps = [REF, "a comparison reason"], [PARTIAL, "a reason"]
    assert tm.corpus_bleu(refs, hyps) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    s = tm.summarize(refs, hyps)
    assert s.rouge_l == pytest.approx(np.mean([tm.rouge_l(r, h) for r, h in zip(refs, hyps, strict=True)]))
    assert s.sentence_bleu == pytest.approx(np.mean([sacrebleu.sentence_bleu(h, [r]).score
                                                     for r, h in zip(refs, hyps, strict=True)]))
    tm._sentence_bleu.cache_clear()
    tm._corpus_bleu.cache_clear()
    assert "nrefs:1" in tm.bleu_signatures()["corpus"]  # also before anything was scored (a fresh process)
    assert "eff:yes" in tm.bleu_signatures()["sentence"]


def test_collect_reasons_follows_the_teacher_records():
    records = list(read_records(DEMO_TEACHER))[:HELD_OUT]
    items = collect_reasons(records)
    for rec in records:
        mine = [it for it in items if it.qid == rec.qid]
        direct = [it for it in mine if it.kind == "direct"]
        assert [it.docids[0] for it in direct] == [c.docid for c in rec.candidates if c.docid in rec.direct_reasons]
        assert [it.reference for it in direct] == [rec.direct_reasons[it.docids[0]] for it in direct]
        cmps = [it for it in mine if it.kind == "comparison"]
        assert [(list(it.docids), it.preferred, it.reference) for it in cmps] == [
            (c.docids, c.preferred, c.reason) for c in rec.comparisons]
    assert {it.kind for it in collect_reasons(records, ("comparison",))} == {"comparison"}
    assert {it.qid for it in collect_reasons(records, max_queries=1)} == {records[0].qid}
    rec = records[0]
    rec.direct_reasons[rec.candidates[0].docid] = "  "  # nothing to compare against: left out
    rec.comparisons.append(Comparison(rec.ranking[:2], None, ""))
    assert len(collect_reasons([rec])) == len(rec.direct_reasons) - 1 + len(rec.comparisons) - 1
    with pytest.raises(ValueError, match="more than one record"):
        collect_reasons([rec, rec])
    assert parse_kinds("comparison, direct") == ("direct", "comparison")
    for bad in ("", "direct,why", "comparisons"):
        with pytest.raises(ValueError, match="--kinds"):
            parse_kinds(bad)


DATA = dict(group_size=4, max_prompt_len=48, max_target_len=16, comparisons_per_query=1,
            max_comparison_prompt_len=48)  # every demo prompt fills 48 tokens: one decoder shape to compile


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    from r2r_jax.testing.demo_tokenizer import build_demo_tokenizer

    return build_demo_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


def test_prompts_are_the_training_prompts(tokenizer):
    """Direct reasons continue the candidate's scoring prompt, comparison reasons the comparison prompt in the
    teacher's docid order: token for token what `tokenize_records` fed the train step."""
    from r2r_jax.data.features import tokenize_records
    from r2r_jax.data.templates import load_tokenizer
    from r2r_jax.rerank.reasons import _prompts
    from r2r_jax.trained.loading import PromptSettings

    tok, data = load_tokenizer(tokenizer), DataConfig(**DATA)
    records = list(read_records(DEMO_TEACHER))[:HELD_OUT]
    student = SimpleNamespace(tokenizer=tok, prompts=PromptSettings.from_data_config(data))
    items = collect_reasons(records)
    trained = tokenize_records(records, tok, data)
    for kind, rows in (("direct", [p for r in trained for p in r.prompts]),
                       ("comparison", [p for r in trained for p in r.cmp_prompts])):
        ids, mask = _prompts(student, records, items, kind)
        assert len(ids) == len(rows) == sum(it.kind == kind for it in items)
        for got, m, want in zip(ids, mask, rows, strict=True):
            assert got[m.astype(bool)].tolist() == want.tolist()


def test_report_layout_for_one_kind():
    from r2r_jax.rerank.reasons_cli import build_report

    records = list(read_records(DEMO_TEACHER))[:HELD_OUT]
    items = [replace(it, generated=it.reference if i % 2 else "")
             for i, it in enumerate(collect_reasons(records, ("comparison",)))]
    report = build_report(items, ("comparison",), {"kinds": ["comparison"]})
    assert list(report["means"]) == ["comparison"] and report["settings"] == {"kinds": ["comparison"]}
    assert report["means"]["comparison"]["n"] == sum(len(r.comparisons) for r in records)
    assert report["means"]["comparison"]["empty"] == len(items) - len(items) // 2
    assert [q["qid"] for q in report["queries"]] == [r.qid for r in records]
    assert all(not q["direct"] and list(q["means"]) == ["comparison"] for q in report["queries"])
    scored = [c for q in report["queries"] for c in q["comparisons"]]
    assert [c["rouge_l"] for c in scored] == [pytest.approx(float(bool(it.generated))) for it in items]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer) -> Path:
    """A random tiny student's checkpoint with LoRA and head moved off their init, saved without training
    (as tests/test_rerank.py builds one: a train-step compile would triple this module's runtime)."""
    from r2r_jax.checkpoint import Checkpointer
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.train.setup import prepare

    root = tmp_path_factory.mktemp("reasons")
    model = ModelConfig(vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=8, dtype="float32",
                        param_dtype="float32", remat_policy="none")
    cfg = TrainConfig(model=model, lora=LoraConfig(rank=4, alpha=8.0), output_dir=str(root / "run"),
                      data=DataConfig(tokenizer=str(tokenizer), **DATA))
    prepared = prepare(cfg, make_mesh(MeshConfig(), jax.devices()[:1]))
    rng = np.random.default_rng(3)  # host-side noise: an eager jax.random op per leaf shape costs ~20 s of compiles
    moved = jax.tree.map(lambda x: jax.device_put(np.asarray(x) + 0.3 * rng.standard_normal(x.shape).astype(x.dtype),
                                                  x.sharding), prepared.state.trainable)
    ckpt = Checkpointer(root / "run" / "checkpoints", async_save=False)
    ckpt.save(prepared.state.replace(trainable=moved), {}, prepared.meta(), force=True)
    ckpt.close()
    return root / "run"


def test_end_to_end_json_aligned_with_the_teacher(checkpoint, tmp_path, capsys):
    records = list(read_records(DEMO_TEACHER))[:HELD_OUT]
    write_records(tmp_path / "heldout.jsonl", records)
    out = tmp_path / "out" / "reasons.json"
    assert r2r(["evaluate-reasons", "--checkpoint", str(checkpoint), "--teacher", str(tmp_path / "heldout.jsonl"),
                "--output", str(out), "--max-new-tokens", "4", "--max-queries", "2", "--batch-size", "8",
                "--kinds", "direct,comparison"]) == 0
    printed = capsys.readouterr().out
    assert "ROUGE-L" in printed and "comparison" in printed and str(out) in printed
    report = json.loads(out.read_text())
    assert set(report) == {"means", "queries", "settings"}
    records = records[:2]
    n_direct = sum(len(r.direct_reasons) for r in records)
    n_cmp = sum(len(r.comparisons) for r in records)
    assert report["means"]["direct"]["n"] == n_direct and report["means"]["comparison"]["n"] == n_cmp
    assert [q["qid"] for q in report["queries"]] == [r.qid for r in records]
    for q, rec in zip(report["queries"], records, strict=True):
        assert [(d["docid"], d["reference"]) for d in q["direct"]] == [
            (c.docid, rec.direct_reasons[c.docid]) for c in rec.candidates if c.docid in rec.direct_reasons]
        assert [(c["docids"], c["preferred"], c["reference"]) for c in q["comparisons"]] == [
            (c.docids, c.preferred, c.reason) for c in rec.comparisons]
        assert q["means"]["direct"]["n"] == len(q["direct"])
        assert q["means"]["comparison"]["n"] == len(q["comparisons"])
        for d in q["direct"] + q["comparisons"]:
            assert isinstance(d["generated"], str)
            assert d["rouge_l"] == pytest.approx(tm.rouge_l(d["reference"], d["generated"]))
            assert d["bleu"] == pytest.approx(tm.sentence_bleu(d["reference"], d["generated"]))
    generated = [d["generated"] for q in report["queries"] for d in q["direct"] + q["comparisons"]]
    assert sum(bool(g) for g in generated) > len(generated) // 2  # a random student still says something
    everything = [d for q in report["queries"] for d in q["direct"]]
    want = tm.summarize([d["reference"] for d in everything], [d["generated"] for d in everything])
    assert report["means"]["direct"] == pytest.approx(want.to_dict())
    assert report["means"]["direct"]["empty"] == sum(not d["generated"] for d in everything)
    settings = report["settings"]
    assert settings["max_new_tokens"] == 4 and settings["kinds"] == ["direct", "comparison"]
    assert settings["prompts"]["max_prompt_len"] == 48 and "nrefs:1" in settings["bleu"]["corpus"]


def _error(capsys, *args: str) -> str:
    assert r2r(["evaluate-reasons", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r2r evaluate-reasons: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_bad_inputs_fail_with_one_line(tmp_path, capsys):
    ckpt = ["--checkpoint", str(tmp_path / "no_run"), "--output", str(tmp_path / "r.json")]
    teacher = ["--teacher", str(DEMO_TEACHER)]
    assert "missing.jsonl" in _error(capsys, *ckpt, "--teacher", str(tmp_path / "missing.jsonl"))
    assert "--kinds" in _error(capsys, *ckpt, *teacher, "--kinds", "direct,why")
    assert "--max-new-tokens" in _error(capsys, *ckpt, *teacher, "--max-new-tokens", "0")
    assert "--batch-size" in _error(capsys, *ckpt, *teacher, "--batch-size", "0")
    assert "no_run" in _error(capsys, *ckpt, *teacher, "--max-queries", "1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(DEMO_TEACHER.read_text().splitlines()[0] + "\n{not json\n")
    assert f"{bad}:2" in _error(capsys, *ckpt, "--teacher", str(bad))
    rec = next(read_records(DEMO_TEACHER))
    rec.direct_reasons, rec.comparisons = {}, []
    write_records(bad, [rec])
    assert "no non-empty" in _error(capsys, *ckpt, "--teacher", str(bad))
    assert not (tmp_path / "r.json").exists()


def test_agreement_rows_pool_the_top_and_the_bottom():
    from r2r_jax.eval.agreement import agreement, blocks, table

    assert blocks([92, 1, 2, 91, 3, 10]) == [[1, 2, 3], [10], [91, 92]]
    top = {1: "yes", 2: "yes", 3: "no", **{r: "unclear" for r in range(4, 11)}}
    bottom = {r: ("no" if r < 98 else "yes") for r in range(91, 101)}
    queries = [({**top, **bottom}, 100),  # ranks 1-10 and 91-100 of a top 100
               ({1: "no", 2: "yes", 3: "yes"}, 3),  # a list of 3, all explained: it counts for the top 10 too
               ({1: "yes", 2: "unclear"}, 50),  # the top 2 of 50 only: not for the top 3 or 10
               ({}, 20)]  # nothing explained
    rows = {r.label: r for r in agreement(queries)}
    assert list(rows) == ["top 1", "top 3", "top 10", "bottom (ranks 91-100)"]
    assert (rows["top 1"].queries, rows["top 1"].passages, rows["top 1"].yes, rows["top 1"].no) == (3, 3, 2, 1)
    assert (rows["top 3"].queries, rows["top 3"].yes, rows["top 3"].no, rows["top 3"].unclear) == (2, 4, 2, 0)
    assert (rows["top 10"].passages, rows["top 10"].unclear) == (13, 7)
    b = rows["bottom (ranks 91-100)"]
    assert (b.expect, b.queries, b.passages, b.no, b.yes) == ("no", 1, 10, 7, 3) and b.agree == pytest.approx(0.7)
    assert rows["top 3"].agree == pytest.approx(4 / 6)
    printed = table(list(rows.values()))
    assert "top 3: says it answers" in printed and "66.7%" in printed and "bottom (ranks 91-100): says it does not" \
        in printed and "70.0%" in printed
    assert agreement([({1: "yes"}, 1)])[0].label == "top 1"  # a one-passage list is the top 3 and 10 too
    assert [r.label for r in agreement([({1: "yes"}, 1)])] == ["top 1", "top 3", "top 10"]


def _explanation_lines(records) -> list[dict]:
    """Explanations as `r2r rerank` writes them, for the demo records: the teacher's ranking, each top-3
    passage's reason (the teacher's own for rank 1, a paraphrase below), one listwise and one pairwise
    comparison."""
    out = []
    for rec in records:
        top = rec.ranking[:3]
        direct = [{"rank": 1, "docid": top[0], "reason": rec.direct_reasons[top[0]], "passage": "..."}]
        direct += [{"rank": r, "docid": d, "reason": "This passage does not answer the query.", "passage": "..."}
                   for r, d in ((2, top[1]), (3, top[2]))]
        pair = list(reversed(rec.comparisons[0].docids))  # the teacher's pair, listed the other way round
        comparisons = [{"ranks": [1, 2, 3], "docids": top, "about": top[0], "reason": "It is the best one."},
                       {"ranks": [1, 2], "docids": pair, "reason": rec.comparisons[0].reason}]
        out.append({"qid": rec.qid, "query": rec.query,
                    "ranking": [{"rank": r, "docid": d, "score": 0.0, "first_stage_rank": r}
                                for r, d in enumerate(rec.ranking, start=1)],
                    "direct_reasons": direct, "comparisons": comparisons})
    return out


def test_served_reasons_are_matched_to_the_teachers_and_the_missing_counted(tmp_path, capsys):
    """Each served reason meets the teacher's reason for the same passage (direct by docid, pairwise by its two
    docids in any order); one the teacher has none for is counted, by why, never scored or dropped."""
    from r2r_jax.eval.explanations import read_explanations, score_explanations

    records = list(read_records(DEMO_TEACHER))[:HELD_OUT]
    lines = _explanation_lines(records)
    lines.append({**lines[0], "qid": "not-in-teacher"})
    del records[1].direct_reasons[records[1].ranking[2]]  # the teacher has no reason for this passage
    path = tmp_path / "run.explanations.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    queries = read_explanations(path)
    report, rows, text_rows = score_explanations(queries, records)
    assert text_rows == [] and "agreement_text" not in report  # no reason opens with a verdict
    n = HELD_OUT + 1
    assert report["coverage"]["direct"] == {"explained": 3 * n, "scored": 3 * HELD_OUT - 1,
                                            "no_teacher_record": 3, "no_teacher_reason": 1}
    # the listwise one: the demo teacher has pairwise comparisons only; the pairwise one matches
    assert report["coverage"]["comparison"] == {"explained": 2 * n, "scored": HELD_OUT, "no_teacher_record": 2,
                                                "no_teacher_reason": HELD_OUT}
    scored = [d for q in report["queries"] for d in q["direct"] if d["reference"] is not None]
    want = tm.summarize([d["reference"] for d in scored], [d["generated"] for d in scored])
    assert report["means"]["direct"] == pytest.approx(want.to_dict())
    assert [d["rouge_l"] for d in scored if d["rank"] == 1] == [pytest.approx(1.0)] * HELD_OUT
    assert report["means"]["comparison"]["rouge_l"] == pytest.approx(1.0)  # the pair's reason is the teacher's
    assert [q["qid"] for q in report["queries"]] == [line["qid"] for line in lines]
    assert all(d["verdict"] == "no" for q in report["queries"] for d in q["direct"] if d["rank"] > 1)
    top1 = next(r for r in rows if r.label == "top 1")
    assert top1.passages == n and report["agreement"][0]["label"] == "top 1"
    # and through the command, with and without the teacher
    write_records(tmp_path / "teacher.jsonl", records)
    out = tmp_path / "scores.json"
    assert r2r(["evaluate-reasons", "--explanations", str(path), "--teacher", str(tmp_path / "teacher.jsonl"),
                "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no teacher reason" in printed and "top 3: says it answers" in printed and str(out) in printed
    written = json.loads(out.read_text())
    assert written["coverage"] == report["coverage"] and written["settings"]["explanations"] == str(path)
    assert r2r(["evaluate-reasons", "--explanations", str(path), "--output", str(out), "--kinds", "direct"]) == 0
    written = json.loads(out.read_text())
    assert "means" not in written and written["agreement"] == report["agreement"]
    assert "ROUGE-L" not in capsys.readouterr().out


def test_a_verdict_opening_is_checked_against_its_own_text(tmp_path, capsys):
    """A verdict-first student's reasons open with "Yes" / "No", which decides their verdict; the report reads
    each reason again without that word, so an opening "Yes." before "does not answer" shows as disagreement."""
    from r2r_jax.eval.explanations import read_explanations, score_explanations

    records = list(read_records(DEMO_TEACHER))[:HELD_OUT]
    lines = _explanation_lines(records)
    for line in lines:  # ranks 2-3 say "Yes." and then that the passage does not answer
        line["direct_reasons"] = [{**d, "reason": "Yes. " + d["reason"]} if d["rank"] > 1 else d
                                  for d in line["direct_reasons"]]
    path = tmp_path / "run.explanations.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report, rows, text_rows = score_explanations(read_explanations(path), None, ("direct",))
    top3 = {r.label: r for r in rows}["top 3"]
    text_top3 = {r.label: r for r in text_rows}["top 3"]
    assert top3.passages == text_top3.passages == 3 * HELD_OUT
    assert top3.no == 0 and text_top3.no == 2 * HELD_OUT  # the opening word says yes, the text says no
    assert top3.yes - text_top3.yes == 2 * HELD_OUT
    ranks_2_3 = [d for q in report["queries"] for d in q["direct"] if d["rank"] > 1]
    assert {(d["verdict"], d["text_verdict"]) for d in ranks_2_3} == {("yes", "no")}
    assert report["agreement_text"] == [r.to_dict() for r in text_rows]
    out = tmp_path / "agreement.json"
    assert r2r(["evaluate-reasons", "--explanations", str(path), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "without its opening Yes / No" in printed
    assert json.loads(out.read_text())["agreement_text"] == report["agreement_text"]


def test_rerank_explanations_score_end_to_end(checkpoint, tmp_path, capsys):
    """`r2r rerank --explain-top` on the held-out teacher records' own passages, then `evaluate-reasons
    --explanations`: every direct reason the rerank wrote is scored against the teacher's for its passage."""
    from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, write_candidates

    records = list(read_records(DEMO_TEACHER))[:2]
    write_records(tmp_path / "heldout.jsonl", records)
    write_candidates(tmp_path / "cands.jsonl", [QueryCandidates(r.qid, r.query, [ScoredPassage(c.docid, c.text)
                                                                                 for c in r.candidates])
                                                for r in records])
    run = tmp_path / "run.trec"
    assert r2r(["rerank", "--checkpoint", str(checkpoint), "--candidates", str(tmp_path / "cands.jsonl"),
                "--output", str(run), "--explain-top", "4", "--explain-comparisons", "pair",
                "--max-new-tokens", "4", "--batch-size", "8"]) == 0
    explanations = tmp_path / "run.explanations.jsonl"
    out = tmp_path / "scores.json"
    assert r2r(["evaluate-reasons", "--explanations", str(explanations), "--teacher", str(tmp_path / "heldout.jsonl"),
                "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    served = [json.loads(line) for line in explanations.read_text().splitlines()]
    assert [[(d["docid"], d["generated"]) for d in q["direct"]] for q in report["queries"]] == [
        [(d["docid"], d["reason"]) for d in s["direct_reasons"]] for s in served]
    assert report["coverage"]["direct"] == {"explained": 8, "scored": 8, "no_teacher_record": 0,
                                            "no_teacher_reason": 0}
    cmp = report["coverage"]["comparison"]
    assert cmp["explained"] == 6 and cmp["scored"] + cmp["no_teacher_reason"] == 6
    assert report["means"]["direct"]["n"] == 8


def test_bad_explanations_fail_with_one_line(tmp_path, capsys):
    good = _explanation_lines(list(read_records(DEMO_TEACHER))[:1])[0]
    path = tmp_path / "x.explanations.jsonl"
    out = ["--output", str(tmp_path / "r.json")]
    path.write_text(json.dumps(good) + "\n{not json\n")
    assert f"{path}:2" in _error(capsys, "--explanations", str(path), *out)
    path.write_text(json.dumps({**good, "direct_reasons": [{"rank": "1", "docid": "d", "reason": "r"}]}) + "\n")
    assert "direct_reasons[0].rank" in _error(capsys, "--explanations", str(path), *out)
    path.write_text(json.dumps({k: v for k, v in good.items() if k not in ("direct_reasons", "comparisons")}) + "\n")
    assert "no reasons in the file" in _error(capsys, "--explanations", str(path), *out)
    path.write_text(json.dumps(good) + "\n")
    assert "--max-new-tokens goes with --checkpoint" in _error(capsys, "--explanations", str(path), *out,
                                                               "--max-new-tokens", "3")
    assert "--checkpoint needs --teacher" in _error(capsys, "--checkpoint", str(tmp_path), *out)
    assert not (tmp_path / "r.json").exists()
