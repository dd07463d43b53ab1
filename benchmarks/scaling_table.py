"""The 8B table of docs/scaling.md, from the `r2r compile --report` JSON of each shipped platform config.

    for each platform file:  r2r compile --config FILE --topology TOPOLOGY --report runs/compile/NAME.json
    python -m benchmarks.scaling_table runs/compile/*.json
    python -m benchmarks.scaling_table --attempts configs/llama3_1_8b_*.auto.json

One row per report, in the order given: the remat policy and micro-batches the file pins, per-chip memory of
the train and scoring steps, executed against model FLOPs, the compute and memory bounds on the step time and
the MFU bound they give. Reports made with --skip-flops have no memory bound and count FLOPs analytically.
With --attempts, the reports of `remat_policy: auto` runs: each policy and micro-batch count tried, with the
compiler's per-chip memory, and the choice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from r2r_jax.compile.cli import _size, _time


def _slice(report: dict) -> str:
    chips = report["chips"]
    if report["estimate"]:
        return f"{report['topology']}, **estimate** on {chips} fake CPU devices"
    hosts = report["hosts"]
    return f"{report['topology']}, {chips} chips, {hosts} host{'s' if hosts > 1 else ''}"


def _memory(memory: dict | None, with_hbm: bool) -> str:
    if memory is None:
        return "–"
    share = f"{memory['total'] / memory['hbm']:.0%}"
    return f"{_size(memory['total'])} of {memory['hbm'] / 2**30:.0f} ({share})" if with_hbm else \
        f"{_size(memory['total'])} ({share})"


def row(report: dict) -> str:
    cfg, flops = report["config"], report["train_flops"]
    micro = cfg["micro_batches"]
    remat = f"`{cfg['model']['remat_policy']}`, {micro} micro-batch{'es' if micro > 1 else ''}"
    executed, model = flops["executed"], flops["analytic_model"]
    memory_bound = _time(flops["memory_seconds_bound"]) if "memory_seconds_bound" in flops else "–"
    cells = [f"`{Path(report['config_file']).name}`", _slice(report), remat,
             _memory(report["train_memory"], True), _memory(report.get("score_memory"), False),
             f"{executed / 1e15:.2f} / {model / 1e15:.2f} = {executed / model:.3f}",
             _time(flops["flop_seconds_bound"]), memory_bound,
             f"{_time(flops['step_seconds_bound'])} ({flops['bound_by']})", f"**{flops['mfu_bound']:.0%}**"]
    return "| " + " | ".join(cells) + " |"


def table(reports: list[dict]) -> str:
    header = ["config", "slice", "remat (`auto`'s choice)", "train step per chip (of HBM)", "scoring step per chip",
              "executed / model PFLOP", "compute bound", "memory bound", "step time ≥", "MFU ≤"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + [row(r) for r in reports])


def _attempt(a: dict) -> str:
    tried = f"`{a['policy']}` ×{a['micro_batches']}"
    if a["total"] is None:
        return f"{tried} refused ({_size(a['temporaries'])} temporaries)"
    return f"{tried} {_size(a['total'])}" + (" fits" if a["fits"] else "")


def attempts_table(reports: list[dict]) -> str:
    lines = ["| slice | budget per chip | attempts, per-chip memory | chosen |", "|---|---|---|---|"]
    for r in reports:
        remat = r["remat"]
        tried = "; ".join(_attempt(a) for a in remat["attempts"])
        lines.append(f"| {_slice(r)} | {_size(remat['budget'])} | {tried} | "
                     f"`{remat['policy']}`, {remat['micro_batches']} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    attempts = "--attempts" in argv
    reports = [json.loads(Path(p).read_text()) for p in argv if p != "--attempts"]
    print(attempts_table(reports) if attempts else table(reports))


if __name__ == "__main__":
    main(sys.argv[1:])
