"""Shared pieces of the benchmarks: model presets and batch shapes, synthetic batches, machine facts, timing.

Presets (float32 everywhere: bfloat16 is emulated and slow on CPUs for both stacks):

| preset | layers | hidden | MLP  | heads / KV | vocab   | batch: B × G (+ C) sequences, P + T tokens      |
|--------|--------|--------|------|------------|---------|-------------------------------------------------|
| tiny   | 2      | 64     | 128  | 4 / 2      | 1,024   | 2 × 4 (+ 2 comparisons), 48 + 16                |
| small  | 8      | 512    | 1792 | 8 / 2      | 128,256 | 2 × 8 (+ 2 comparisons), 192 + 64               |
| medium | 12     | 1024   | 3584 | 16 / 4     | 128,256 | 1 × 8 (+ 1 comparison), 192 + 64                |

Every preset runs with the project's CPU settings: `scan_layers=False` (unrolled layers: a scan stacks each
layer's saved activations with copies that cost ~15% of a CPU step; unrolling 8-12 layers compiles in seconds)
and `attention="loop"` (one sequence's scores at a time, cache-sized; r2r_jax/model/attention.py). Accelerator
configs keep the scan and use splash/cudnn.

small and medium use Llama-3's vocabulary (so the LM head costs what it costs in the real student, and the
rerank benchmark can use the real tokenizer), GQA 4:1 and MLP 3.5× hidden like Llama-3.1-8B.
LoRA: rank 16, alpha 32 on q, k, v, o, gate, up, down (the project's defaults); loss weights 0.4/0.4/0.2.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from r2r_jax.config import DataConfig, LoraConfig, LossConfig, ModelConfig, TrainConfig, load_config
from r2r_jax.data.features import BatchShapes

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DL19 = SHARED / "data" / "dl19" / "bm25_top100.json"
LLAMA_TOKENIZER = SHARED / "tokenizers" / "llama3_1"
LLAMA3_VOCAB = 128256


@dataclass(frozen=True)
class BatchShape:
    batch: int  # B queries per step
    group: int  # G candidates per query
    prompt: int  # P scoring-prompt tokens (left-padded)
    target: int  # T reason tokens (right-padded)
    comparisons: int  # C comparison sequences per query
    comparison_prompt: int  # Pc

    @property
    def sequences(self) -> int:
        return self.batch * (self.group + self.comparisons)

    @property
    def tokens(self) -> int:
        """Token positions one step computes (padding included: both stacks compute fixed shapes)."""
        return (self.batch * self.group * (self.prompt + self.target)
                + self.batch * self.comparisons * (self.comparison_prompt + self.target))


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    shape: BatchShape
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(rank=16, alpha=32.0))
    loss: LossConfig = field(default_factory=LossConfig)

    def train_config(self) -> TrainConfig:
        """The TrainConfig whose analytic FLOPs (`r2r_jax.compile.flops`) describe this step."""
        s = self.shape
        data = DataConfig(group_size=s.group, max_prompt_len=s.prompt, max_target_len=s.target,
                          comparisons_per_query=s.comparisons, max_comparison_prompt_len=s.comparison_prompt)
        return TrainConfig(model=self.model, lora=self.lora, loss=self.loss, data=data, batch_size=s.batch)


CPU_MODEL_SETTINGS = {"scan_layers": False, "attention": "loop", "dtype": "float32", "param_dtype": "float32",
                      "remat_policy": "none"}


def _llama_like(layers: int, hidden: int, heads: int, kv_heads: int) -> ModelConfig:
    return ModelConfig(vocab_size=LLAMA3_VOCAB, hidden_size=hidden, intermediate_size=hidden * 7 // 2,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       head_dim=hidden // heads, **CPU_MODEL_SETTINGS)


def preset(name: str) -> Preset:
    if name == "tiny":
        return Preset("tiny", ModelConfig(**CPU_MODEL_SETTINGS), BatchShape(2, 4, 48, 16, 1, 48))
    if name == "small":
        return Preset("small", _llama_like(8, 512, 8, 2), BatchShape(2, 8, 192, 64, 1, 192))
    if name == "medium":
        return Preset("medium", _llama_like(12, 1024, 16, 4), BatchShape(1, 8, 192, 64, 1, 192))
    raise ValueError(f"unknown preset {name!r} (tiny, small, medium)")


PRESET_NAMES = ("tiny", "small", "medium")
RECIPE_CONFIG = REPO / "configs" / "smollm2_135m.yaml"


def recipe_preset(base: str | Path, config: str | Path = RECIPE_CONFIG) -> Preset:
    """A real base's preset: its shape from the HF folder, numerics, LoRA, loss and batch from a training
    config (default: the SmolLM2 recipe's), rows per query counting the negatives, as `r2r train` builds them."""
    from r2r_jax.train.setup import resolve_model_config

    cfg = load_config(TrainConfig, ["--config", str(config), "--base-model", str(base)])
    d = cfg.data
    shape = BatchShape(cfg.batch_size, BatchShapes.from_config(d).rows, d.max_prompt_len, d.max_target_len,
                       d.comparisons_per_query, d.max_comparison_prompt_len)
    return Preset(Path(base).name, resolve_model_config(cfg), shape, lora=cfg.lora, loss=cfg.loss)


def synthetic_batch(shape: BatchShape, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch in the train step's layout: prompts of random length in [P/2, P], targets in [T/2, T], every
    candidate and comparison real, teacher ranks a random permutation. Ids avoid 0..2 (pad / specials)."""
    rng = np.random.default_rng(seed)
    t = shape.target

    def rows(n: int, p: int):
        ids = np.zeros((n, p + t), np.int32)
        mask = np.zeros_like(ids)
        tmask = np.zeros((n, t), np.int32)
        for r in range(n):
            k, m = int(rng.integers(p // 2, p + 1)), int(rng.integers(t // 2, t + 1))
            ids[r, p - k: p + m] = rng.integers(3, vocab, k + m)
            mask[r, p - k: p + m] = 1
            tmask[r, :m] = 1
        return ids, mask, ids[:, p:].copy(), tmask

    b, g, c = shape.batch, shape.group, shape.comparisons
    ids, mask, tid, tm = rows(b * g, shape.prompt)
    cids, cmask, ctid, ctm = rows(b * c, shape.comparison_prompt)
    ranks = np.stack([rng.permutation(g) + 1 for _ in range(b)]).astype(np.int32)
    return {
        "input_ids": ids.reshape(b, g, -1), "attention_mask": mask.reshape(b, g, -1),
        "target_ids": tid.reshape(b, g, t), "target_mask": tm.reshape(b, g, t),
        "candidate_mask": np.ones((b, g), np.int32), "teacher_rank": ranks,
        "cmp_input_ids": cids.reshape(b, c, -1), "cmp_attention_mask": cmask.reshape(b, c, -1),
        "cmp_target_ids": ctid.reshape(b, c, t), "cmp_target_mask": ctm.reshape(b, c, t),
    }


# ---------------------------------------------------------------- machine and timing


def use_cpu() -> None:
    """Run JAX on the CPU even where another backend (e.g. an installed libtpu) would be probed first."""
    import jax

    if not os.environ.get("JAX_PLATFORMS"):
        jax.config.update("jax_platforms", "cpu")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 15.0) -> float:
    """Sleep until the 1-minute load average is below `max_load` (other jobs share these cores) or the
    timeout passes; returns the load average when it stopped waiting."""
    deadline = time.monotonic() + timeout_s
    load = load_average()
    while load >= max_load and time.monotonic() < deadline:
        print(f"# load average {load:.2f} >= {max_load}: waiting", file=sys.stderr, flush=True)
        time.sleep(poll_s)
        load = load_average()
    return load


def versions(*names: str) -> dict[str, str]:
    """Versions of the named packages that are installed (imports nothing heavy that is not asked for)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def add_run_options(ap) -> None:
    """The options every timing benchmark shares: torch threads, the quiet-machine gate, the JSON output."""
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (XLA uses every core)")
    ap.add_argument("--max-load", type=float, default=0.0,
                    help="before the run and every timed round, wait until the 1-min load average is below this")
    ap.add_argument("--wait-s", type=float, default=600.0, help="longest wait for --max-load, each time")
    ap.add_argument("--json", default="", help="also write the results here")


def start_timed_run(args, *packages: str) -> tuple[Callable[[], object] | None, dict]:
    """CPU-only JAX, torch threads set, the first wait for a quiet machine: (gate for each round, machine facts)."""
    use_cpu()
    from . import torch_stack

    torch_stack.set_threads(args.threads)
    gate = (lambda: wait_for_quiet(args.max_load, args.wait_s)) if args.max_load else None
    if gate:
        gate()
    info = machine(*packages)
    info["torch_threads"] = args.threads
    return gate, info


def machine(*packages: str) -> dict:
    return {"cpu": cpu_model(), "cores": cores(), "load_average_1m": round(load_average(), 2),
            "date": time.strftime("%Y-%m-%d %H:%M"), "versions": versions(*packages),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def release_memory() -> None:
    """Collect garbage and return the C heap's free pages to the OS, between timed calls (not timed).

    Both stacks live in one process; without this, whichever ran last leaves its freed buffers in glibc's
    heap and the other stack's next call was measured up to 40% slower (medium preset, this machine)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def timed(fn: Callable[[], object]) -> float:
    release_memory()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def alternate(runners: dict[str, Callable[[], object]], reps: int, warmup: int = 1,
              before_round: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each runner, interleaved A, B, A, B, ... after `warmup` untimed calls of each, so
    load from other processes falls on both alike. `before_round` runs before every timed round (e.g. a wait
    for a quiet machine); the 1-minute load average at the start of each round is returned under "load"."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    times["load"] = []
    for _ in range(reps):
        if before_round is not None:
            before_round()
        times["load"].append(round(load_average(), 2))
        for name, fn in runners.items():
            times[name].append(timed(fn))
    return times


def write_json(path: str | Path | None, obj: dict) -> None:
    text = json.dumps(obj, indent=2, default=_jsonable)
    if path:
        Path(path).write_text(text + "\n")
    print(text)


def _jsonable(x):
    if hasattr(x, "__dataclass_fields__"):
        return asdict(x)
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def fmt_rate(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.2f} "
