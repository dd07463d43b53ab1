"""How much of the training step's work is padding: which `loss.gen_capacity` and which sequence packing
(`data.pack_length` / `data.pack_rows`) fit the training batches.

    python -m benchmarks.target_fill --records runs/recipe/data/train.jsonl \
        --tokenizer runs/bases/smollm2-135m [--config configs/smollm2_135m.yaml] [--shards 1,2] [--steps N] \
        [--pack-lengths 256,512]

Builds the training loader exactly as `r2r train` does (the config's group size, random negatives, target
lengths, batch size and seed) and walks its batches (one epoch by default). For each sequence kind (direct
reasons; comparison reasons) and data-shard count it reports the real target tokens per padded position,
and for capacities 0.5-1.0 the share of steps whose every shard fits (those run the compacted LM head;
the others run padded) and the LM-head positions the compacted path skips. For each packing row length L
it reports how many rows each query's scoring sequences need, and for each row count R the share of steps
whose every query fits (those run packed) and the scoring positions saved against the padded G x (P + T)
rows, averaged over all steps (a step that does not fit saves nothing). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from r2r_jax.config import TrainConfig, load_config
from r2r_jax.data.features import BatchShapes
from r2r_jax.data.packing import rows_needed
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


def packing_fill(batches: list[dict], shapes: BatchShapes, length: int) -> dict:
    """Rows of `length` each query needs, and per row count the steps that fit and the positions saved."""
    need = np.asarray([rows_needed(b, shapes, length) for b in batches])  # [steps, queries]
    padded = shapes.rows * (shapes.prompt_len + shapes.target_len)
    step_need = need.max(axis=1)
    out = {"padded_positions_per_query": padded, "rows_needed": {str(r): int((need == r).sum())
                                                                  for r in np.unique(need)}, "rows": {}}
    for rows in range(int(need.min()), int(need.max()) + 1):
        fits = step_need <= rows
        saved = 1 - rows * length / padded
        out["rows"][str(rows)] = {"steps_fitting": float(fits.mean()),
                                  "positions_saved": float(np.where(fits, max(saved, 0.0), 0.0).mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--config", default="configs/smollm2_135m.yaml")
    parser.add_argument("--shards", default="1,2", help="data-parallel shard counts (each must divide the rows)")
    parser.add_argument("--steps", type=int, default=0, help="batches to walk (default: one epoch)")
    parser.add_argument("--pack-lengths", default="256,512", help="packing row lengths to try")
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
    shapes = BatchShapes.from_config(cfg.data)
    report["packing"] = {length: packing_fill(batches, shapes, int(length))
                         for length in args.pack_lengths.split(",")}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
