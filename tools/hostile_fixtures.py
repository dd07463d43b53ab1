"""Good inputs for the hostile-input sweep (tools/hostile_inputs.py), built in a scratch folder.

Every bad input of the sweep is a small change to one of these: a file cut, re-encoded or replaced by a folder,
a checkpoint with a file missing. The text files come from the project's synthetic task (its tokenizer covers
their words, so a tiny student reranks them for real); the trained run and its export are made by `r2r train`
and `r2r export` themselves (`TRAINED` lists the command lines, run by the sweep's worker)."""

from __future__ import annotations

import json
from pathlib import Path

# files of the good set, by the name cases use after "@"
TEXT_FILES = ("candidates.jsonl", "teacher.jsonl", "release.jsonl", "queries.jsonl", "queries.tsv", "corpus.jsonl",
              "corpus.tsv", "qrels.txt", "run.trec", "run_b.trec", "config.yaml", "explanations.jsonl")

TINY_MODEL = ["--model.vocab-size=128", "--model.hidden-size=32", "--model.intermediate-size=64",
              "--model.num-attention-heads=4", "--model.num-key-value-heads=2", "--model.head-dim=8",
              "--data.max-prompt-len=48", "--data.max-target-len=16", "--data.max-comparison-prompt-len=96",
              "--data.group-size=4", "--batch-size=8"]


def train_argv(root: Path, output: str, steps: int = 2, save_every: int = 2) -> list[str]:
    """`r2r train` of the tiny student on the good records (the sweep's trained run and its interrupt cases)."""
    return ["train", f"--data.train-path={root / 'teacher.jsonl'}", f"--data.tokenizer={root / 'tok'}", *TINY_MODEL,
            f"--steps={steps}", f"--save-every={save_every}", "--log-every=1", f"--output-dir={output}"]


def trained(root: Path) -> list[tuple[str, list[str]]]:
    """(fixture name, argv) of the fixtures `r2r` itself makes, in order: the tiny run and its seq-cls export."""
    return [("tiny_run", train_argv(root, str(root / "tiny_run"))),
            ("export", ["export", "--checkpoint", str(root / "tiny_run"), "--format", "seq-cls", "--dtype",
                        "float32", "--output-dir", str(root / "export")])]


def build_text_fixtures(root: Path) -> None:
    """The good text inputs and the tokenizer, under `root`."""
    from r2r_jax.data.candidates import write_candidates
    from r2r_jax.data.records import write_records
    from r2r_jax.testing.synthetic import make_synthetic_dev, make_synthetic_records, synthetic_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    synthetic_tokenizer().save_pretrained(root / "tok")
    records = make_synthetic_records(8, seed=0, n_candidates=4)
    write_records(root / "teacher.jsonl", records)
    (root / "release.jsonl").write_text("".join(json.dumps(release_row(rec)) + "\n" for rec in records[:3]))
    dev, qrels = make_synthetic_dev(3, seed=0, n_candidates=4)
    write_candidates(root / "candidates.jsonl", dev)
    (root / "queries.jsonl").write_text("".join(json.dumps({"qid": q.qid, "text": q.query}) + "\n" for q in dev))
    (root / "queries.tsv").write_text("".join(f"{q.qid}\t{q.query}\n" for q in dev))
    passages = [p for q in dev for p in q.candidates]
    (root / "corpus.jsonl").write_text("".join(json.dumps({"id": p.docid, "contents": p.text}) + "\n"
                                               for p in passages))
    (root / "corpus.tsv").write_text("".join(f"{p.docid}\t{p.text}\n" for p in passages))
    (root / "qrels.txt").write_text("".join(f"{qid} 0 {d} {g}\n" for qid, grades in qrels.items()
                                            for d, g in grades.items()))
    for name, order in (("run.trec", 1), ("run_b.trec", -1)):
        lines = []
        for q in dev:
            ranked = sorted(q.candidates, key=lambda p: order * -p.score)
            lines += [f"{q.qid} Q0 {p.docid} {r} {len(ranked) - r + 1:.1f} t" for r, p in enumerate(ranked, 1)]
        (root / name).write_text("\n".join(lines) + "\n")
    (root / "config.yaml").write_text("steps: 1\nbatch_size: 8\nmodel:\n  vocab_size: 128\n")
    (root / "explanations.jsonl").write_text("".join(json.dumps({
        "qid": q.qid, "ranking": [{"rank": r, "docid": p.docid, "score": p.score}
                                  for r, p in enumerate(q.candidates, 1)],
        "direct_reasons": [{"rank": r, "docid": p.docid, "reason": f"it is about {q.query.split()[-1]}"}
                           for r, p in enumerate(q.candidates[:2], 1)],
        "comparisons": []}) + "\n" for q in dev))


def release_row(rec) -> dict:
    """A teacher record as a line of the R2R authors' release (`r2r import-teacher --format r2r`)."""
    ident = {c.docid: i for i, c in enumerate(rec.candidates, 1)}
    return {"query": rec.query, "qid": rec.qid, "sorted_docids": [c.docid for c in rec.candidates],
            "re_rank_id": [ident[d] for d in rec.ranking], "unsorted_docs": [c.text for c in rec.candidates],
            "reason": {"ranked_passages": [
                {"identifier": ident[d], "direct_reason": rec.direct_reasons[d] or "no reason given",
                 "listwise_reason": "Compared to the other passages, this one is about the same topic."}
                for d in rec.ranking]},
            "scores": ["0"] * len(rec.candidates)}
