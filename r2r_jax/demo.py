"""`r2r demo`: the embedded default job, end to end on the shipped demo set, on a CPU in minutes.

Trains a BPE tokenizer on the demo texts, trains a tiny student from a random base with the combined
loss, reranks the held-out queries, evaluates against the shipped qrels (BM25 first stage vs student),
and prints one explanation. What it shows is that every stage runs and connects; a real student needs
real teacher records, Llama-3.1-8B weights and accelerators (README).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from r2r_jax.config import ConfigError, TrainConfig, load_config

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"


def _split_output_dir(argv: list[str]) -> tuple[Path, list[str]]:
    out, rest = Path("runs/demo"), []
    it = iter(argv)
    for arg in it:
        if arg == "--output-dir":
            out = Path(next(it))
        elif arg.startswith("--output-dir="):
            out = Path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return out, rest


def demo_config(argv: list[str], out: Path) -> TrainConfig:
    cfg = load_config(TrainConfig, argv, prog="r2r demo")
    cfg.data.train_path = cfg.data.train_path or str(DEMO_DATA / "teacher.jsonl")
    cfg.data.dev_candidates = cfg.data.dev_candidates or str(DEMO_DATA / "dev_candidates.jsonl")
    cfg.data.dev_qrels = cfg.data.dev_qrels or str(DEMO_DATA / "dev_qrels.txt")
    cfg.output_dir = str(out / "train")
    return cfg


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print("usage: r2r demo [--output-dir DIR] [--config FILE] [--a.b=value ...]\n\n"
              "Trains a tiny student on the shipped demo set, reranks the held-out queries and prints an\n"
              "explanation. Options after --output-dir are `r2r train` overrides (see `r2r train --help`);\n"
              "the data paths default to the shipped demo files and the tokenizer is trained on them.")
        return 0
    out, rest = _split_output_dir(argv)
    try:
        cfg = demo_config(rest, out)
    except ConfigError as e:
        print(f"r2r demo: error: {e}", file=sys.stderr)
        return 2
    from r2r_jax.data.candidates import read_candidates
    from r2r_jax.data.demo_tokenizer import build_demo_tokenizer
    from r2r_jax.eval.metrics import evaluate
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.rerank.job import rerank, write_outputs
    from r2r_jax.rerank.loading import load_from_checkpoint
    from r2r_jax.retrieval.trec import candidates_to_run, read_qrels, write_run
    from r2r_jax.train.trainer import train

    if not cfg.data.tokenizer:
        cfg.data.tokenizer = str(build_demo_tokenizer(out / "tokenizer"))
        print(f"[1/4] demo tokenizer (BPE, {cfg.model.vocab_size} ids) trained on the demo texts: {cfg.data.tokenizer}")
    print(f"[2/4] training a {cfg.model.num_hidden_layers}-layer, {cfg.model.hidden_size}-wide student for "
          f"{cfg.steps} steps (LoRA r={cfg.lora.rank} + score head, random base)")
    report = train(cfg)
    if report["exit_code"]:
        return int(report["exit_code"])

    print("[3/4] reranking the held-out queries with the trained student")
    items = read_candidates(cfg.data.dev_candidates)
    student = load_from_checkpoint(cfg.output_dir, make_mesh(cfg.mesh))
    result = rerank(student, items, progress=False)
    write_outputs(result, items, out / "student.trec", tag="r2r-demo")
    explained = rerank(student, items[:1], explain_top=2, progress=False)  # decoding is the slow part on a CPU
    write_outputs(explained, items[:1], None, explanations=out / "explanations.jsonl")
    write_run(out / "bm25.trec", candidates_to_run(items), tag="bm25")

    qrels = read_qrels(cfg.data.dev_qrels)
    metrics = ["ndcg@1", "ndcg@5", "ndcg@10"]
    bm25 = evaluate(candidates_to_run(items), qrels, metrics).means
    student_means = evaluate(result.run, qrels, metrics).means
    print("[4/4] held-out evaluation (nDCG, graded qrels)")
    print(f"  {'run':<22}" + "".join(f"{m:>10}" for m in metrics))
    for name, means in (("BM25 (first stage)", bm25), ("student (this demo)", student_means)):
        print(f"  {name:<22}" + "".join(f"{means[m]:>10.4f}" for m in metrics))
    last = report.get("last_metrics") or {}
    print(f"  final losses: total {last.get('loss', float('nan')):.4f}  pair {last.get('loss_pair', float('nan')):.4f}"
          f"  list {last.get('loss_list', float('nan')):.4f}  gen {last.get('loss_gen', float('nan')):.4f}")
    print(f"  dev nDCG@10 during training: before {report['dev_before']['ndcg@10']:.4f}, "
          f"after {report['dev_after']['ndcg@10']:.4f}")

    first = items[0]
    expl = explained.explanations.get(first.qid)
    if expl is not None and expl.direct:
        top = expl.direct[0]
        text = next(c.text for c in first.candidates if c.docid == top.docid)
        print(f"\nexplanation for query {first.qid} {first.query!r}:\n  rank 1 {top.docid}: {text[:100]}...\n"
              f"  student's reason: {top.reason!r}")
        if expl.comparisons:
            print(f"  comparison of ranks 1-2: {expl.comparisons[0].reason!r}")
    summary = {
        "bm25": bm25, "student": student_means, "train_report": str(Path(cfg.output_dir) / "report.json"),
        "student_run": str(out / "student.trec"), "explanations": str(out / "explanations.jsonl"),
        "loss_plot": report.get("loss_plot"), "checkpoints": report.get("checkpoints"),
    }
    (out / "demo_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\noutputs in {out}/: student.trec, bm25.trec, explanations.jsonl, demo_report.json, "
          f"train/ (metrics.jsonl, loss.png, tensorboard/, checkpoints/)")
    return 0
