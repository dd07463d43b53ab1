"""`r2r compile`: prove that a configuration fits a TPU slice (or, as an estimate, a GPU node) before renting it.

The real train step and scoring step are compiled ahead of time for the target (see `aot`), and the figures
printed are the compiler's: per-chip memory against the chip's HBM, FLOPs by cost analysis against the
analytic count (`flops`), and the step time and MFU bounds those imply at the chip's peak. Exits 1 when a
step does not fit, saying by how much.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from r2r_jax.atomic import write_json
from r2r_jax.cli_types import add_renamed, non_negative_int
from r2r_jax.compile.chips import parse_topology

TOLERANCE = 0.15  # compiler vs analytic FLOPs


# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("report",), ("config",))
EXAMPLE = "r2r compile --config configs/llama3_1_8b_v5p8.yaml --topology v5p:2x2x1 --set model.remat_policy=auto"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="a TrainConfig YAML file")
    parser.add_argument("--topology", required=True, metavar="CHIP:SHAPE",
                        help="v5p:2x2x1, v5e:4x4, v6e:2x4, ... (libtpu) or h100:8 (fake CPU devices: an estimate)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable, e.g. --set batch_size=32 --set model.remat_policy=dots")
    parser.add_argument("--score-batch", type=non_negative_int, default=0, metavar="N",
                        help="prompts per scoring step (default: 0, batch_size x group_size)")
    parser.add_argument("--skip-score", action="store_true", help="compile the train step only")
    parser.add_argument("--skip-flops", action="store_true",
                        help="skip the two small unrolled compiles that count FLOPs (memory figures only)")
    parser.add_argument("--compare-unchunked", action="store_true",
                        help="also compile with loss.gen_chunk = max_target_len to measure what chunking saves")
    add_renamed(parser, "--report", "--json", metavar="FILE", help="also write the figures as a JSON report")


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _flop(n: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} FLOP"


def _time(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else \
        f"{seconds * 1e6:.1f} us"


def _prepare_runtime(topology: str) -> None:
    """Before JAX starts: CPU as the host platform, and enough fake CPU devices for a GPU estimate."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    kind, dims = parse_topology(topology)
    if kind == "h100" and "jax" not in sys.modules:
        count = dims[0]
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def _load(args):
    from r2r_jax.config import TrainConfig
    from r2r_jax.config_io import ConfigError, load_config

    overrides = [f"--{s}" if not s.startswith("--") else s for s in args.set]
    cfg = load_config(TrainConfig, ["--config", args.config, *overrides], prog="r2r compile",
                      spell=lambda key: f"--set {key}")
    on_gpu = args.topology.lower().startswith("h100")
    notes = []
    if on_gpu and cfg.model.attention != "xla":
        notes.append(f"attention {cfg.model.attention!r} cannot compile on CPU devices: the estimate uses the XLA "
                     "reference, which holds [B, H, L, L] float32 logits per layer that cuDNN flash attention "
                     "does not (memory is overestimated)")
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, attention="xla"))
    if not on_gpu and cfg.model.attention == "cudnn":
        raise ConfigError("model.attention=cudnn is a GPU kernel; use splash (or xla) for a TPU topology")
    return cfg, notes


def _memory_report(name: str, mem, chip, estimate: bool) -> dict:
    label = " (estimate: CPU compiler)" if estimate else ""
    print(f"\n{name} step, per chip{label}:")
    for field in ("arguments", "outputs", "aliased", "temporaries", "code"):
        print(f"  {field:<12} {_size(getattr(mem, field)):>12}")
    share = mem.total / chip.hbm_bytes
    print(f"  {'total':<12} {_size(mem.total):>12}  of {_size(chip.hbm_bytes)} HBM ({share:.0%})"
          f"  {'fits' if mem.total <= chip.hbm_bytes else 'DOES NOT FIT'}")
    return {**dataclasses.asdict(mem), "total": mem.total, "hbm": chip.hbm_bytes}


def _bytes_rate(n: float) -> str:
    return f"{n / 1e9:,.0f} GB/s"


def _flops_report(analytic, measured, chips: int, chip, tokens: int) -> dict:
    """Compiler vs analytic FLOPs, with the Pallas kernels' share added analytically (XLA cannot see it), and
    the step-time lower bound: the larger of compute (FLOPs / peak) and memory traffic (bytes / bandwidth)."""
    kernel = analytic.in_kernels
    parts = ", ".join(f"{k} {_flop(v)}" for k, v in analytic.executed.items() if v)
    print(f"  analytic, executed   {_flop(analytic.total):>14}  ({parts})")
    out = {"analytic_executed": analytic.total, "analytic_model": analytic.model_total, "pallas_analytic": kernel,
           "analytic_terms": analytic.executed}
    executed = analytic.total
    if measured is not None:
        ratio = measured.flops / analytic.visible_to_xla
        ok = abs(ratio - 1) <= TOLERANCE
        print(f"  compiler, XLA ops    {_flop(measured.flops):>14}  vs analytic {_flop(analytic.visible_to_xla)} "
              f"outside Pallas kernels: ratio {ratio:.3f} ({'within' if ok else 'OUTSIDE'} {TOLERANCE:.0%})")
        executed = measured.flops + kernel
        out.update(compiler=measured.flops, ratio=ratio, agrees=ok)
    if kernel:
        print(f"  Pallas kernels       {_flop(kernel):>14}  not counted by XLA: added from the analytic count of the "
              "tiles the kernels visit")
    per_chip = executed / chips
    seconds = per_chip / chip.peak_flops
    print(f"  per chip             {_flop(per_chip):>14}  -> compute: step time >= {_time(seconds)} at "
          f"{chip.peak_flops / 1e12:.0f} TFLOP/s bf16 peak")
    out.update(executed=executed, flop_seconds_bound=seconds)
    bound, bound_by = seconds, "compute"
    if measured is not None:
        traffic = measured.bytes_per_chip / chip.hbm_bandwidth
        print(f"  HBM traffic per chip {_size(measured.bytes_per_chip):>14}  -> memory: step time >= "
              f"{_time(traffic)} at {_bytes_rate(chip.hbm_bandwidth)} (compiler's bytes accessed, Pallas kernels' "
              "own not counted)")
        out.update(bytes_per_chip=measured.bytes_per_chip, memory_seconds_bound=traffic)
        if traffic > seconds:
            bound, bound_by = traffic, "memory"
    mfu = analytic.model_total / (chips * chip.peak_flops * bound)  # model / executed when compute-bound
    print(f"  step time bound      {_time(bound):>14}  ({bound_by}-bound) -> <= {tokens / bound:,.0f} tokens/s")
    print(f"  model FLOPs          {_flop(analytic.model_total):>14}  (no recomputation) -> MFU <= {mfu:.0%}")
    out.update(step_seconds_bound=bound, bound_by=bound_by, mfu_bound=mfu)
    return out


def run(args: argparse.Namespace) -> int:
    parse_topology(args.topology)  # the flags and the config are checked before JAX or libtpu starts
    cfg, notes = _load(args)
    _prepare_runtime(args.topology)
    from r2r_jax.compile import aot, flops
    from r2r_jax.data.features import BatchShapes
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.train import lowering

    target = aot.resolve_target(args.topology)
    mesh = make_mesh(cfg.mesh, target.devices)
    chip, d, m = target.chip, cfg.data, cfg.model
    tag = "ESTIMATE on fake CPU devices" if target.estimate else "libtpu compiler"
    print(f"r2r compile {args.config} for {args.topology}: {mesh.size} x {chip.name}, {target.hosts} host(s) "
          f"compiled from one process ({tag})")
    print(f"  mesh {dict(mesh.shape)}; model {m.num_hidden_layers} layers x {m.hidden_size}, LoRA r={cfg.lora.rank} "
          f"on {','.join(t.removesuffix('_proj') for t in cfg.lora.targets)}; remat {m.remat_policy}; "
          f"attention {m.attention}")
    seq_len, cmp_len = d.max_prompt_len + d.max_target_len, d.max_comparison_prompt_len + d.max_target_len
    rows = BatchShapes.from_config(d).rows
    n_seq, n_cmp = cfg.batch_size * rows, cfg.batch_size * d.comparisons_per_query
    tokens = n_seq * seq_len + n_cmp * cmp_len
    print(f"  batch {cfg.batch_size} queries x {rows} candidates = {n_seq} sequences of {seq_len} tokens "
          f"+ {n_cmp} comparison sequences of {cmp_len} = {tokens:,} tokens per step")
    for note in notes:
        print(f"  note: {note}")
    report: dict = {"topology": args.topology, "chips": mesh.size, "hosts": target.hosts, "estimate": target.estimate,
                    "mesh": dict(mesh.shape), "tokens": tokens}
    fits = True
    compiled = None
    if m.remat_policy == "auto":
        cfg, compiled, report["remat"] = _choose_remat(cfg, mesh, chip)
        m = cfg.model
    # what was compiled: `auto` resolved, GPU attention substituted (tests/test_remat_pins.py reads it)
    report.update(config_file=args.config, config=dataclasses.asdict(cfg))
    try:
        compiled = compiled or lowering.compile_lowered(lowering.lower_train_step(cfg, mesh))
    except lowering.DoesNotFit as e:
        return _refused("train", e, chip, report, args)
    mem = lowering.memory_of(compiled)
    report["train_memory"] = _memory_report("train", mem, chip, target.estimate)
    fits &= mem.total <= chip.hbm_bytes
    report["logits"] = _logits_report(cfg, mesh, mem, args.compare_unchunked)
    print("\ntrain step FLOPs (global, one optimizer step):")
    measured = None if args.skip_flops else aot.measured_costs(cfg, dict(mesh.shape), target.devices[0])
    report["train_flops"] = _flops_report(flops.train_step_flops(cfg), measured, mesh.size, chip, tokens)
    if not args.skip_score:
        n = args.score_batch or n_seq
        try:
            scored = lowering.compile_lowered(aot.lower_score_step(cfg, mesh, n, d.max_prompt_len))
        except lowering.DoesNotFit as e:
            return _refused("score", e, chip, report, args)
        smem = lowering.memory_of(scored)
        print(f"\nscoring step: {n} prompts of {d.max_prompt_len} tokens")
        report["score_memory"] = _memory_report("score", smem, chip, target.estimate)
        fits &= smem.total <= chip.hbm_bytes
        print("\nscoring step FLOPs:")
        smeasured = None if args.skip_flops else aot.measured_costs(cfg, dict(mesh.shape), target.devices[0],
                                                                      "score", n, d.max_prompt_len)
        report["score_flops"] = _flops_report(flops.score_step_flops(m, cfg.lora, n, d.max_prompt_len), smeasured,
                                              mesh.size, chip, n * d.max_prompt_len)
    report["fits"] = bool(fits)
    _write(report, args)
    if not fits:
        worst = max(report["train_memory"]["total"], report.get("score_memory", {}).get("total", 0))
        print(f"\nDOES NOT FIT: {_size(worst)} per chip needed, {chip.name} has {_size(chip.hbm_bytes)}: "
              f"short by {_size(worst - chip.hbm_bytes)}", file=sys.stderr)
        return 1
    print(f"\nfits: every step within {chip.name}'s {_size(chip.hbm_bytes)} per chip")
    return 0


def _choose_remat(cfg, mesh, chip):
    """`model.remat_policy: auto`: the least recomputation that fits (train/remat_choice.py), printed."""
    from r2r_jax.train.remat_choice import HEADROOM, choose_remat, with_policy

    print(f"\nremat auto: least recomputation whose train step fits {chip.name}'s {_size(chip.hbm_bytes)} less "
          f"{HEADROOM:.0%} headroom")
    choice = choose_remat(cfg, mesh, chip.hbm_bytes, report=lambda line: print(f"  {line}"))
    print(f"  chosen: remat {choice.policy}, micro_batches {choice.micro_batches}"
          + ("" if choice.compiled is not None else " (nothing fits: the least memory, compiled below)"))
    return with_policy(cfg, choice.policy, choice.micro_batches), choice.compiled, choice.to_dict()


def _logits_report(cfg, mesh, mem, compare: bool) -> dict:
    """What chunking the generation loss saves: float32 logits of every target token at once vs one chunk."""
    from r2r_jax.compile.flops import logits_bytes
    from r2r_jax.data.features import BatchShapes
    from r2r_jax.train import lowering

    d = cfg.data
    rows = BatchShapes.from_config(d).rows
    seqs = cfg.batch_size * (rows + (d.comparisons_per_query if cfg.loss.gamma > 0 else 0))
    per_chip = max(seqs // max(mesh.size // mesh.shape["tensor"], 1), 1)
    vocab_shard = cfg.model.vocab_size // (mesh.shape["tensor"] if cfg.model.vocab_size % mesh.shape["tensor"] == 0
                                           else 1)
    chunk = min(cfg.loss.gen_chunk, d.max_target_len)
    whole = logits_bytes(per_chip, d.max_target_len, vocab_shard)
    one = logits_bytes(per_chip, chunk, vocab_shard)
    print(f"\ngeneration loss: float32 logits of all {d.max_target_len} target positions of {per_chip} sequences "
          f"per chip would take {_size(whole)}; chunks of {chunk} hold {_size(one)} at a time")
    out = {"all_at_once": whole, "one_chunk": one, "chunk": chunk}
    if compare and chunk < d.max_target_len:
        variant = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, gen_chunk=d.max_target_len))
        try:
            unchunked = lowering.memory_of(lowering.compile_lowered(lowering.lower_train_step(variant, mesh)))
            saved = unchunked.total - mem.total
            print(f"  compiled with gen_chunk={d.max_target_len}: total {_size(unchunked.total)} per chip, "
                  f"{_size(saved)} more than with chunks of {chunk}")
            out.update(unchunked_total=unchunked.total, measured_saving=saved)
        except lowering.DoesNotFit as e:
            print(f"  compiled with gen_chunk={d.max_target_len}: does not fit ({e})")
            out.update(unchunked_total=e.needed)
    return out


def _refused(name: str, error, chip, report: dict, args) -> int:
    """The compiler's own out-of-memory verdict, with the shortfall it reported."""
    detail = ""
    if error.needed is not None and error.available is not None:
        detail = f": {_size(error.needed)} needed of {_size(error.available)} available"
    if error.short is not None:
        detail += f", short by at least {_size(error.short)} per chip"
    print(f"\nDOES NOT FIT on {chip.name}: the compiler refused the {name} step{detail}\n  {error}", file=sys.stderr)
    report.update(fits=False, refused=name, needed=error.needed, available=error.available, short=error.short)
    _write(report, args)
    return 1


def _write(report: dict, args) -> None:
    if args.report:
        write_json(args.report, report, indent=2)  # atomic, its folder made, like every other r2r output
