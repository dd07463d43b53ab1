"""DL19 top-100 reranking through one seq-cls export, four ways on this CPU: throughput, nDCG@10, agreement.

    python -m benchmarks.crossencoder_throughput --export runs/x/seq_cls [--queries 10] [--json out.json]
    python -m benchmarks.crossencoder_throughput --export DIR --backends torch,onnx --queries 2   # a quick look

`--export` is a float32 `r2r export --format seq-cls` folder (the card's snippets and this script load the same
folder). The four stacks rank the same candidates (TREC DL19, BM25 top 100 with text, the first `--queries`
queries; `--candidates`/`--qrels` for other sets) by the student's score alone:

- `jax`: `r2r rerank`'s engine through `r2r_jax.Reranker` (the export in float32 with the CPU settings: loop
  attention, unrolled layers; length-sorted batches, shared query prefixes, one compile per shape);
- `torch`: `sentence_transformers.CrossEncoder(DIR, trust_remote_code=True).predict` (float32, SDPA);
- `onnx`: the same with `backend="onnx"` (onnxruntime on `onnx/model.onnx`, exported on first use);
- `onnx-int8`: `model_kwargs={"file_name": "onnx/model_qint8.onnx"}`, made here with onnxruntime's
  `quantize_dynamic` (int8 weights) when missing.

Every stack loads and warms up on the first query's first `--batch-size` passages (JAX compiles there; other
shapes compile inside the timed calls, as in a real job). Then each query's 100 passages go through every
stack in turn — one query a call, as a search service reranks — with the order of the stacks rotated from
query to query, so on a shared machine every stack meets the same mix of load (the 1-minute load average
before each call is recorded). Reported per stack: load seconds, summed rerank seconds and passages/s,
nDCG@10 (ir_measures / pytrec_eval through `r2r_jax.eval.metrics`), and against `jax`: the largest |score
difference| and how many queries keep the same top-10 order. `--write-card` puts the table into the
export's model card.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .common import DL19, SHARED, machine, release_memory, write_json

BACKENDS = ("jax", "torch", "onnx", "onnx-int8")
INT8_FILE = "onnx/model_qint8.onnx"
QRELS = SHARED / "data" / "dl19" / "qrels.txt"


def load_items(candidates: Path, queries: int | None):
    from r2r_jax.data.candidates import read_candidates

    items = read_candidates(candidates)
    return items[:queries] if queries else items


class JaxStack:
    """`r2r rerank`'s engine through `r2r_jax.Reranker` on the export (float32, the CPU settings)."""

    def __init__(self, export: Path, batch_size: int):
        from r2r_jax import Reranker

        self.reranker = Reranker.load(export, dtype="float32", student_only=True, batch_size=batch_size)

    def scores(self, query: str, passages: list[str]) -> np.ndarray:
        out = np.zeros(len(passages))
        for r in self.reranker.rank(query, passages):
            out[r.index] = r.score
        return out


class CrossEncoderStack:
    """`CrossEncoder(DIR, trust_remote_code=True)` on torch, onnx or the int8 onnx file (made here if missing)."""

    def __init__(self, export: Path, batch_size: int, backend: str):
        from sentence_transformers import CrossEncoder

        self.batch_size, self.extra = batch_size, {}
        kwargs = {}
        if backend == "onnx-int8":
            path = export / INT8_FILE
            if not path.is_file():
                from onnxruntime.quantization import QuantType, quantize_dynamic

                if not (export / "onnx" / "model.onnx").is_file():
                    CrossEncoder(str(export), backend="onnx", trust_remote_code=True)  # writes onnx/model.onnx
                start = time.perf_counter()
                quantize_dynamic(export / "onnx" / "model.onnx", path, weight_type=QuantType.QInt8)
                self.extra["quantize_s"] = time.perf_counter() - start
            kwargs["model_kwargs"] = {"file_name": INT8_FILE}
        self.model = CrossEncoder(str(export), trust_remote_code=True,
                                  backend="torch" if backend == "torch" else "onnx", **kwargs)

    def scores(self, query: str, passages: list[str]) -> np.ndarray:
        return self.model.predict([(query, p) for p in passages], batch_size=self.batch_size, convert_to_numpy=True)


def load_stack(backend: str, export: Path, batch_size: int):
    return JaxStack(export, batch_size) if backend == "jax" else CrossEncoderStack(export, batch_size, backend)


def measure(stacks: dict, items) -> tuple[dict, dict]:
    """Each query's passages through every stack in turn, the order rotated from query to query, so every
    stack meets the same mix of machine load; per stack: qid -> docid -> score, summed seconds, load averages."""
    from .common import load_average

    names = list(stacks)
    scores = {b: {} for b in names}
    seconds = dict.fromkeys(names, 0.0)
    per_query = {b: [] for b in names}
    loads = {b: [] for b in names}
    for i, qc in enumerate(items):
        passages = [c.text for c in qc.candidates]
        for backend in names[i % len(names):] + names[: i % len(names)]:
            loads[backend].append(load_average())
            start = time.perf_counter()
            got = stacks[backend].scores(qc.query, passages)
            per_query[backend].append(time.perf_counter() - start)
            seconds[backend] += per_query[backend][-1]
            scores[backend][qc.qid] = {c.docid: float(v) for c, v in zip(qc.candidates, got, strict=True)}
        print(f"# query {i + 1}/{len(items)}: " + ", ".join(f"{b} {seconds[b]:.0f} s" for b in names),
              file=sys.stderr, flush=True)
    return scores, {b: {"rerank_s": seconds[b], "per_query_s": per_query[b],
                        "load_average_mean": float(np.mean(loads[b])),
                        "load_average_range": [float(min(loads[b])), float(max(loads[b]))]} for b in names}


def top10_same(a: dict[str, float], b: dict[str, float]) -> bool:
    order = lambda s: [d for d, _ in sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))][:10]  # noqa: E731
    return order(a) == order(b)


def table(rows: list[dict], queries: int, passages: int) -> str:
    head = (f"DL19, {queries} queries, BM25 top 100 ({passages:,} passages), the student's score alone\n\n"
            "| stack | load (s) | rerank (s) | passages/s | nDCG@10 | max \\|score − JAX\\| | same top 10 as JAX "
            "| 1-min load average (mean) |\n|---|---|---|---|---|---|---|---|\n")
    names = {"jax": "`r2r rerank` (JAX)", "torch": "CrossEncoder (torch)", "onnx": "CrossEncoder, onnx",
             "onnx-int8": "CrossEncoder, onnx int8"}
    lines = []
    for r in rows:
        diff = "—" if r["backend"] == "jax" else f"{r['max_abs_diff_vs_jax']:.1e}"
        same = "—" if r["backend"] == "jax" else f"{r['same_top10_vs_jax']}/{queries}"
        lines.append(f"| {names[r['backend']]} | {r['load_s']:.1f} | {r['rerank_s']:.0f} | "
                     f"{passages / r['rerank_s']:.2f} | {r['ndcg@10']:.4f} | {diff} | {same} | "
                     f"{r['load_average_mean']:.1f} |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True, type=Path, help="a float32 seq-cls export (r2r export)")
    ap.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, of {', '.join(BACKENDS)}")
    ap.add_argument("--queries", type=int, default=None, help="only the first N queries (default: all)")
    ap.add_argument("--candidates", type=Path, default=DL19, help="RankGPT hits JSON or rank_llm JSONL")
    ap.add_argument("--qrels", type=Path, default=QRELS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--write-card", action="store_true", help="put the table into the export's README.md")
    args = ap.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        ap.error(f"--backends: unknown {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    import jax

    jax.config.update("jax_platforms", "cpu")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from r2r_jax.eval.metrics import evaluate
    from r2r_jax.retrieval.trec import read_qrels

    items = load_items(args.candidates, args.queries)
    qrels = read_qrels(args.qrels)
    passages = sum(len(qc.candidates) for qc in items)
    info = {"machine": machine("jax", "torch", "sentence-transformers", "onnxruntime", "onnx", "transformers"),
            "export": str(args.export), "queries": len(items), "passages": passages, "batch_size": args.batch_size}
    stacks, loaded = {}, {}
    for backend in backends:  # load and warm up (JAX compiles the first shapes here; later ones in the timing)
        print(f"# loading {backend}", file=sys.stderr, flush=True)
        release_memory()
        start = time.perf_counter()
        stacks[backend] = load_stack(backend, args.export, args.batch_size)
        loaded[backend] = {"load_s": time.perf_counter() - start, **getattr(stacks[backend], "extra", {})}
        head = items[0]
        stacks[backend].scores(head.query, [c.text for c in head.candidates[: args.batch_size]])
    runs, timing = measure(stacks, items)
    rows = []
    for backend in backends:
        scores = runs[backend]
        run = {q: sorted(s.items(), key=lambda kv: -kv[1]) for q, s in scores.items()}
        row = {"backend": backend, **loaded[backend], **timing[backend],
               "passages_per_s": passages / timing[backend]["rerank_s"],
               "ndcg@10": evaluate(run, qrels, ["ndcg@10"]).means["ndcg@10"]}
        if backend != "jax" and "jax" in runs:
            diffs = [abs(scores[q][d] - runs["jax"][q][d]) for q in scores for d in scores[q]]
            row["max_abs_diff_vs_jax"] = float(np.max(diffs))
            row["mean_abs_diff_vs_jax"] = float(np.mean(diffs))
            row["same_top10_vs_jax"] = sum(top10_same(scores[q], runs["jax"][q]) for q in scores)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    text = table(rows, len(items), passages) if "jax" in backends else ""
    print(text or rows)
    info["rows"] = rows
    if args.json:
        write_json(args.json, info)
    if args.write_card and text:
        from r2r_jax.convert.model_card import write_measured

        cpu = info["machine"]["cpu"]
        write_measured(args.export, f"{text}\n\nMeasured on {info['machine']['cores']} cores of an {cpu} "
                                    f"({time.strftime('%Y-%m-%d')}) by `python -m benchmarks.crossencoder_throughput`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
