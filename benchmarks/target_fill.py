"""How much of the LM head's work is padding, and which `loss.gen_capacity` fits the training batches.

    python -m benchmarks.target_fill --records runs/recipe/data/train.jsonl \
        --tokenizer runs/bases/smollm2-135m [--config configs/smollm2_135m.yaml] [--shards 1,2] [--steps N]

Builds the training loader exactly as `r2r train` does (the config's group size, random negatives, target
lengths, batch size and seed) and walks its batches (one epoch by default). For each sequence kind (direct
reasons; comparison reasons) and data-shard count it reports the real target tokens per padded position,
and for capacities 0.5-1.0 the share of steps whose every shard fits (those run the compacted LM head;
the others run padded) and the LM-head positions the compacted path skips. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from r2r_jax.config import TrainConfig, load_config
from r2r_jax.data.pipeline import TeacherLoader
from r2r_jax.data.records import read_records
from r2r_jax.data.templates import load_tokenizer
from r2r_jax.train.target_compaction import capacity_per_shard

from .common import machine

FRACTIONS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def shard_fill(masks: list[np.ndarray], shards: int) -> dict:
    """masks: per step, `[rows, T]` target masks of the global batch."""
    rows, length = masks[0].shape
    per_shard = rows // shards
    counts = np.stack([m.reshape(shards, -1).sum(axis=1) for m in masks])  # [steps, shards]
    out = {"rows_per_shard": per_shard, "positions_per_shard": per_shard * length,
           "fill": float(counts.sum() / (counts.size * per_shard * length)),
           "max_fill": float(counts.max() / (per_shard * length)), "capacities": {}}
    for fraction in FRACTIONS:
        capacity = capacity_per_shard(per_shard, length, fraction)
        fits = (counts <= capacity).all(axis=1)
        skipped = np.where(fits, 1 - capacity / (per_shard * length), 0.0)
        out["capacities"][str(fraction)] = {"slots": capacity, "steps_fitting": float(fits.mean()),
                                            "head_positions_skipped": float(skipped.mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--config", default="configs/smollm2_135m.yaml")
    parser.add_argument("--shards", default="1,2", help="data-parallel shard counts (each must divide the rows)")
    parser.add_argument("--steps", type=int, default=0, help="batches to walk (default: one epoch)")
    args = parser.parse_args()
    cfg: TrainConfig = load_config(TrainConfig, ["--config", args.config])
    records = list(read_records(args.records))
    loader = TeacherLoader.from_records(records, load_tokenizer(args.tokenizer), cfg.data,
                                        global_batch_size=cfg.batch_size)
    steps = args.steps or max(1, len(records) // cfg.batch_size)
    batches = [loader.batch(s) for s in range(steps)]
    kinds = {"direct": "target_mask", "comparison": "cmp_target_mask"}
    report = {"records": len(records), "steps": steps, "batch_size": cfg.batch_size, "machine": machine(),
              "max_target_len": cfg.data.max_target_len}
    for kind, key in kinds.items():
        if key not in batches[0] or batches[0][key].size == 0:
            continue
        masks = [b[key].reshape(-1, b[key].shape[-1]).astype(bool) for b in batches]
        report[kind] = {str(d): shard_fill(masks, d) for d in map(int, args.shards.split(","))
                        if masks[0].shape[0] % d == 0}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
