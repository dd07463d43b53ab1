"""Training records at corpus scale: host memory and records/s of the tokenized record store against the
number of records (memory must stay flat as records grow).

    python -m benchmarks.record_store [--records 10000,100000,1000000] [--steps 500] [--json out.json]
    python -m benchmarks.record_store --quick          # smoke run: 500 and 2000 records

Synthetic teacher records (8 candidates, a direct reason each, one or two comparisons; the word-level
synthetic tokenizer) are written as JSONL, a chunk at a time. Each size then runs in its own fresh process
(`--worker`), which builds the store as `r2r train` does (`open_store`: validate, tokenize, write Arrow),
opens it again from the cache (what a resumed or second run does), and reads `--steps` global batches of 16
queries through the loader at evenly spread steps, so reads touch the whole file. It reports the build's
and the reads' records/s, its peak anonymous memory (`RssAnon`, sampled every 50 ms: what the process
allocated itself) during the build and during the reads, the file-backed resident pages at the end
(`RssFile`: memory-mapped pages the reads touched, which the kernel can drop) and the overall peak resident
set size (`VmHWM`, both kinds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, machine
from .common import write_json as emit
from .memory import peak_rss_mib

CONFIG = dict(group_size=8, max_prompt_len=64, max_target_len=24, comparisons_per_query=1,
              max_comparison_prompt_len=128, random_negatives=2)
BATCH = 16


def write_records(path: Path, count: int) -> None:
    """`count` synthetic records with distinct qids, made and written 10,000 at a time."""
    from r2r_jax.testing.synthetic import make_synthetic_records

    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, count, 10_000):
            for i, rec in enumerate(make_synthetic_records(min(10_000, count - start), seed=start)):
                f.write(json.dumps({**rec.to_dict(), "qid": f"syn-{start + i}"}) + "\n")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class AnonPeak:
    """Samples this process's anonymous resident memory (`RssAnon`: what the process itself allocated, as
    opposed to `RssFile`, pages of memory-mapped files the kernel may drop) every 50 ms; `peak` in MiB."""

    def __init__(self):
        import threading

        self.peak_kib, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_kib = max(self.peak_kib, _status_kib("RssAnon"))

    def take(self) -> float:
        """The peak since the last `take`, in MiB."""
        self.peak_kib = max(self.peak_kib, _status_kib("RssAnon"))
        peak, self.peak_kib = self.peak_kib, 0
        return peak / 1024


def worker(records: str, tokenizer: str, cache: str, steps: int) -> None:
    from r2r_jax.config import DataConfig
    from r2r_jax.data.features import BatchShapes
    from r2r_jax.data.pipeline import TeacherLoader
    from r2r_jax.data.record_store import open_store
    from r2r_jax.data.templates import load_tokenizer

    cfg = DataConfig(**CONFIG)
    tok = load_tokenizer(tokenizer)
    anon = AnonPeak()
    before = anon.take()
    start = time.perf_counter()
    store = open_store(records, tok, tokenizer, cfg, cache)
    built = time.perf_counter() - start
    build_anon = anon.take()
    start = time.perf_counter()
    store = open_store(records, tok, tokenizer, cfg, cache)
    reopened = time.perf_counter() - start
    loader = TeacherLoader(store, BatchShapes.from_config(cfg), tok.pad_token_id, global_batch_size=BATCH)
    epoch_steps = max(1, len(store) // BATCH)
    start = time.perf_counter()
    for i in range(steps):
        loader.batch(i * epoch_steps // steps)
    read = time.perf_counter() - start
    print(json.dumps({"records": len(store), "build_seconds": built, "build_records_per_s": len(store) / built,
                      "reopen_seconds": reopened, "read_records_per_s": steps * BATCH / read,
                      "anon_mib_after_imports": before, "peak_anon_mib_build": build_anon,
                      "peak_anon_mib_read": anon.take(), "rss_file_mib_end": _status_kib("RssFile") / 1024,
                      "peak_rss_mib": peak_rss_mib()}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(*argv[1:4], int(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", default="10000,100000,1000000", help="comma-separated record counts")
    ap.add_argument("--steps", type=int, default=500, help="global batches read per size")
    ap.add_argument("--quick", action="store_true", help="500 and 2000 records, 50 batches")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args(argv)
    sizes = [500, 2000] if args.quick else [int(x) for x in args.records.split(",")]
    steps = 50 if args.quick else args.steps
    from r2r_jax.testing.synthetic import synthetic_tokenizer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        synthetic_tokenizer().save_pretrained(tmp_path / "tok")
        for n in sizes:
            data = tmp_path / f"records_{n}.jsonl"
            write_records(data, n)
            env = {**os.environ, "JAX_PLATFORMS": "cpu"}
            proc = subprocess.run([sys.executable, "-m", "benchmarks.record_store", "--worker", str(data),
                                   str(tmp_path / "tok"), str(tmp_path / "cache"), str(steps)],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=6 * 3600)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["jsonl_mib"] = data.stat().st_size / 2**20
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            data.unlink()
    emit(args.json, {"benchmark": "record_store", "config": CONFIG, "global_batch": BATCH, "steps": steps,
                     "machine": machine("datasets", "pyarrow"), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
