"""Llama-3.1-8B + LoRA on one lent GPU (H100 / H200): train-step time, tokens/s, MFU, peak memory, scoring.

    python -m benchmarks.gpu_8b [--seq 2048] [--group 8] [--remat full] [--json $OUT/gpu_8b.json]
    python -m benchmarks.gpu_8b --dry-run          # the same code on the CPU with the tiny preset

Random-init Llama-3.1-8B (bfloat16 weights and compute, cuDNN flash attention, the project's config
`llama3_1_8b()`), LoRA rank 16 / alpha 32 on all seven projections, the project's jitted train step with the
combined loss. One step: B queries × (G candidates + C comparisons) sequences of --seq tokens, the last
--target of which are reason tokens.

MFU, two ways, both against the chip's dense bf16 peak (--peak-tflops, else from the device name):
- `mfu_4nt`: model FLOPs = 4 × N × tokens + attention, N = decoder-layer weights + LM head (the embedding
  lookup costs nothing): forward 2N plus the activation gradient 2N per token (LoRA needs no weight gradient
  of the frozen base), attention 12·L²·H·D·layers per sequence (dense forward + backward). Treats the LM head
  as applied to every token, which the step does not do, so it overstates the work a little.
- `mfu_exact`: `r2r_jax.compile.flops.train_step_flops(...).model_total` — the same but with the LM head on
  target tokens only and the LoRA adapters' own FLOPs; recomputation (remat) is never counted as useful work.
Scoring: --score-candidates prompts of --score-len tokens, prompt-only forward (`make_score_step`), LoRA
merged away (a seq-cls student), in batches of --score-batch.
Results are written to --json after every phase, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0}


def peak_tflops(kind: str) -> float | None:
    for name, tflops in PEAK_BF16_TFLOPS.items():
        if name.lower() in kind.lower():
            return tflops
    return None


def model_flops_4nt(cfg, tokens: int, seq_lengths: list[int]) -> float:
    from r2r_jax.compile.flops import layer_weights

    n = layer_weights(cfg) * cfg.num_hidden_layers + cfg.hidden_size * cfg.vocab_size
    attention = sum(12.0 * length**2 * cfg.num_attention_heads * cfg.head_dim * cfg.num_hidden_layers
                    for length in seq_lengths)
    return 4.0 * n * tokens + attention


def peak_memory_gib(device) -> float | None:
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**30


def _save(path: str, out: dict) -> None:
    text = json.dumps(out, indent=2, default=str)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    print(text, flush=True)


def bench_train(p, st, trainable: dict, steps: int) -> tuple[dict, dict]:
    """One policy's measurements, and the trainable tree after its steps (the step donates the one it got)."""
    import jax

    from r2r_jax.compile.flops import train_step_flops

    from . import jax_stack
    from .common import median, synthetic_batch

    batch = synthetic_batch(p.shape, p.model.vocab_size, seed=0)
    step = jax_stack.JaxTrainStep(p, st, trainable, batch)
    compile_s = step.compile()
    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    sec = median(times)
    s = p.shape
    lengths = [s.prompt + s.target] * (s.batch * s.group) + [s.comparison_prompt + s.target] * (s.batch * s.comparisons)
    flops = train_step_flops(p.train_config())
    out = {"remat_policy": p.model.remat_policy, "compile_s": round(compile_s, 2), "step_s": sec, "step_s_all": times,
           "tokens_per_step": s.tokens, "tokens_per_s": s.tokens / sec,
           "flops_4nt": model_flops_4nt(p.model, s.tokens, lengths), "flops_exact": flops.model_total,
           "flops_executed": flops.total, "loss": float(step.last_metrics["loss"]),
           "peak_memory_gib": peak_memory_gib(jax.devices()[0])}
    return out, step.state.trainable


def bench_scoring(cfg, frozen: dict, score_head: dict, candidates: int, length: int, batch_size: int,
                  reps: int) -> dict:
    import jax
    import numpy as np

    from r2r_jax.inference.score_step import make_score_step
    from r2r_jax.model.llama import LlamaForRanking

    from .common import median

    model = LlamaForRanking(cfg)  # no LoRA: the merged, exported ranker
    variables = {"params": {**frozen, "score": score_head}}
    score = make_score_step(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, cfg.vocab_size, (candidates, length)).astype(np.int32)
    mask = np.ones_like(ids)
    batches = [(ids[i: i + batch_size], mask[i: i + batch_size]) for i in range(0, candidates, batch_size)]
    start = time.perf_counter()
    jax.block_until_ready([score(variables, i, m) for i, m in batches])
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready([score(variables, i, m) for i, m in batches])
        times.append(time.perf_counter() - start)
    sec = median(times)
    return {"candidates": candidates, "length": length, "batch_size": batch_size, "compile_s": round(compile_s, 2),
            "s": sec, "docs_per_s": candidates / sec, "tokens_per_s": candidates * length / sec,
            "peak_memory_gib": peak_memory_gib(jax.devices()[0])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=2048, help="tokens per sequence (prompt + target)")
    ap.add_argument("--target", type=int, default=128, help="reason tokens per sequence (T)")
    ap.add_argument("--batch", type=int, default=1, help="queries per step (B)")
    ap.add_argument("--group", type=int, default=8, help="candidates per query (G)")
    ap.add_argument("--comparisons", type=int, default=1, help="comparison sequences per query (C)")
    ap.add_argument("--remat", default="full", help="comma list of remat policies to measure in turn")
    ap.add_argument("--attention", default="cudnn", help="xla, cudnn or splash")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
    ap.add_argument("--score-candidates", type=int, default=100)
    ap.add_argument("--score-len", type=int, default=256)
    ap.add_argument("--score-batch", type=int, default=100)
    ap.add_argument("--score-reps", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak; 0: from the device name")
    ap.add_argument("--json", default="")
    ap.add_argument("--dry-run", action="store_true", help="tiny preset on the CPU, short sequences, 2 steps")
    args = ap.parse_args(argv)

    import jax

    from r2r_jax.config import TrainConfig, load_config

    from .common import REPO, BatchShape, Preset, machine, preset

    if args.dry_run:
        jax.config.update("jax_platforms", "cpu")
        cfg = dataclasses.replace(preset("tiny").model, dtype="bfloat16", param_dtype="bfloat16")
        args.seq, args.target, args.group, args.steps = 64, 16, 4, 2
        args.score_candidates, args.score_len, args.score_batch, args.score_reps = 8, 32, 4, 2
        args.attention = "xla"
    else:
        cfg = load_config(TrainConfig, ["--config", str(REPO / "configs" / "llama3_1_8b.yaml")]).model
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", str(device))
    peak = args.peak_tflops or peak_tflops(kind) or 0.0
    out = {"benchmark": "gpu_8b", "dry_run": args.dry_run, "device": kind, "devices": len(jax.devices()),
           "peak_bf16_tflops": peak, "machine": machine("jax", "jaxlib", "flax", "optax"), "args": vars(args),
           "train": [], "score": None}
    _save(args.json, out)
    shape = BatchShape(args.batch, args.group, args.seq - args.target, args.target, args.comparisons,
                       args.seq - args.target)
    from r2r_jax.model.llama import LlamaForRanking

    from . import jax_stack

    start = time.perf_counter()
    st, trainable = jax_stack.student(Preset("llama3_1_8b", dataclasses.replace(cfg, attention=args.attention),
                                             shape))
    jax.block_until_ready(st.frozen)
    out["init_s"] = round(time.perf_counter() - start, 2)
    for policy in [x.strip() for x in args.remat.split(",") if x.strip()]:
        p = Preset("llama3_1_8b", dataclasses.replace(cfg, remat_policy=policy, attention=args.attention), shape)
        st = dataclasses.replace(st, model=LlamaForRanking(p.model, p.lora))
        try:
            r, trainable = bench_train(p, st, trainable, args.steps)
        except Exception as e:  # e.g. out of memory for a light remat policy: report it and go on
            out["train"].append({"remat_policy": policy, "error": f"{type(e).__name__}: {str(e)[:500]}"})
            _save(args.json, out)
            if any(x.is_deleted() for x in jax.tree.leaves(trainable)):
                break  # the failed step had already consumed the trainable tree
            continue
        if peak:
            r["mfu_4nt"] = r["flops_4nt"] / r["step_s"] / (peak * 1e12)
            r["mfu_exact"] = r["flops_exact"] / r["step_s"] / (peak * 1e12)
        out["train"].append(r)
        _save(args.json, out)
        print(f"# remat={policy}: {r['step_s']:.3f} s/step, {r['tokens_per_s']:.0f} tokens/s, "
              f"MFU {r.get('mfu_4nt', float('nan')):.1%} (4NT) / {r.get('mfu_exact', float('nan')):.1%} (exact), "
              f"peak {r['peak_memory_gib']} GiB", file=sys.stderr, flush=True)
    score_head = trainable["score"]
    if any(x.is_deleted() for x in jax.tree.leaves(score_head)):  # a failed step consumed it: any head will do
        score_head = {"kernel": jax.numpy.zeros((cfg.hidden_size, 1), jax.numpy.float32)}
    out["score"] = bench_scoring(st.model.cfg, st.frozen, score_head, args.score_candidates, args.score_len,
                                 args.score_batch, args.score_reps)
    _save(args.json, out)
    print(f"# scoring: {out['score']['docs_per_s']:.1f} docs/s ({args.score_candidates} × {args.score_len} tokens)",
          file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
