"""Sequence packing's effect on the real-base training step: the same `r2r train` run padded and packed.

    python -m benchmarks.packing_step --records runs/recipe/data/train.jsonl --base runs/bases/smollm2-135m \
        [--config configs/smollm2_135m.yaml] [--steps 12] [--pack-length 512 --pack-rows 2] [--out runs/packing]

Both runs train the same steps from the same start (one CPU device); each logs real tokens per second every
step. The figure per run is the median over steps after the first two (compiles), counting for the packed run
only the steps that ran packed (a step whose query does not fit runs padded, and compiles that step the first
time). Prints one JSON object; the runs' folders stay under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from .common import REPO, machine


def run(args: argparse.Namespace, name: str, *extra: str) -> list[dict]:
    out = Path(args.out) / name
    cmd = [sys.executable, "-m", "r2r_jax.cli", "train", "--config", args.config, "--base-model", args.base,
           "--data.tokenizer", args.base, "--data.train-path", args.records, "--steps", str(args.steps),
           "--log-every", "1", "--eval-every", "0", "--save-every", str(args.steps), "--output-dir", str(out),
           *extra]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--base", required=True, help="the base folder (`r2r base`), also the tokenizer")
    parser.add_argument("--config", default="configs/smollm2_135m.yaml")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--pack-length", type=int, default=512)
    parser.add_argument("--pack-rows", type=int, default=2)
    parser.add_argument("--out", default="runs/packing")
    args = parser.parse_args()
    if any((Path(args.out) / name).exists() for name in ("padded", "packed")):
        parser.error(f"--out {args.out} already holds a padded/ or packed/ run; give a fresh folder")
    padded = run(args, "padded")
    packed = run(args, "packed", "--data.pack-length", str(args.pack_length), "--data.pack-rows", str(args.pack_rows))
    steady = {"padded": [m["tokens_per_second"] for m in padded if m["step"] > 2],
              "packed": [m["tokens_per_second"] for m in packed if m["step"] > 2 and m["packed"]]}
    report = {"machine": machine(), "config": args.config, "steps": args.steps,
              "pack": {"length": args.pack_length, "rows": args.pack_rows},
              "packed_steps": sum(int(m["packed"]) for m in packed),
              "tokens_per_s": {k: statistics.median(v) for k, v in steady.items()},
              "loss_last": {"padded": padded[-1]["loss"], "packed": packed[-1]["loss"]}}
    report["speedup"] = report["tokens_per_s"]["packed"] / report["tokens_per_s"]["padded"]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
