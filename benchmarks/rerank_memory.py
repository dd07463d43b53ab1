"""Host memory of `r2r rerank` against the number of queries: streamed shards (flat) vs one shard (grows).

    python -m benchmarks.rerank_memory [--queries 1000,4000,16000] [--candidates 10] [--shard-size 500]
    python -m benchmarks.rerank_memory --quick          # smoke run: 50 and 100 queries

A random tiny Llama seq-cls folder (the `tiny` preset of benchmarks/common.py, with the synthetic word-level
tokenizer's vocabulary) and synthetic candidate files (rank_llm JSONL, `--candidates` passages a query) are
written first. Each job is `r2r rerank --model FOLDER --candidates FILE` in its own fresh process
(`--worker`), which reports its peak resident set size (`VmHWM`, the whole process: libraries, compiled
programs, inputs, results) and its wall time. Two settings per size: `--shard-size N` (the default streaming
job) and one shard of every query (what the job did before shards: every query and result held at once).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, machine, preset
from .common import write_json as emit
from .memory import peak_rss_mib


def worker(argv: list[str]) -> None:
    from r2r_jax.cli import main

    start = time.perf_counter()
    code = main(["rerank", *argv])
    print(json.dumps({"exit": code, "seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}))


def prepare_model(folder: Path) -> Path:
    from r2r_jax.testing.synthetic import synthetic_tokenizer
    from r2r_jax.trained.loading import STUDENT_FILE

    from . import torch_stack

    tokenizer = synthetic_tokenizer()
    cfg = dataclasses.replace(preset("tiny").model, vocab_size=len(tokenizer))
    model = torch_stack.random_seq_cls(cfg, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / STUDENT_FILE).write_text(json.dumps({"max_prompt_len": 64}))
    return folder


def prepare_candidates(path: Path, queries: int, candidates: int) -> Path:
    from r2r_jax.data.candidates import write_candidates
    from r2r_jax.testing.synthetic import make_synthetic_dev

    write_candidates(path, make_synthetic_dev(queries, seed=queries, n_candidates=candidates)[0])
    return path


def run_job(model: Path, cands: Path, out: Path, shard_size: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.rerank_memory", "--worker", "--model", str(model), "--candidates",
           str(cands), "--output", str(out), "--dtype", "float32", "--shard-size", str(shard_size)]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user would run it
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", default="1000,4000,16000", help="comma-separated query counts")
    ap.add_argument("--candidates", type=int, default=10, help="passages a query")
    ap.add_argument("--shard-size", type=int, default=500, help="queries per shard of the streamed job")
    ap.add_argument("--quick", action="store_true", help="50 and 100 queries (a smoke run)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    sizes = [50, 100] if args.quick else [int(q) for q in args.queries.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = prepare_model(Path(tmp) / "model")
        for n in sizes:
            cands = prepare_candidates(Path(tmp) / f"cands_{n}.jsonl", n, args.candidates)
            row = {"queries": n, "passages": n * args.candidates, "input_mib": cands.stat().st_size / 2**20}
            for name, shard in (("streamed", min(args.shard_size, n)), ("one_shard", n)):
                row[name] = run_job(model, cands, Path(tmp) / f"run_{n}_{name}.trec", shard)
                row[name]["shard_size"] = shard
            rows.append(row)
            s, o = row["streamed"], row["one_shard"]
            print(f"{n:>7} queries ({row['input_mib']:.1f} MiB input): streamed, shards of {s['shard_size']}: "
                  f"{s['peak_rss_mib']:.0f} MiB peak, {s['seconds']:.0f} s; one shard: {o['peak_rss_mib']:.0f} MiB, "
                  f"{o['seconds']:.0f} s", flush=True)
    emit(args.json, {"machine": machine("jax"), "candidates": args.candidates, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
