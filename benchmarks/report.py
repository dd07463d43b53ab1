"""Markdown tables from the benchmarks' JSON outputs, for docs/benchmarks.md.

    python -m benchmarks.report train_step.json rerank.json memory.json [gpu_8b.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _g(x: float) -> str:
    return f"{x / 1e9:.1f}"


def train_table(res: dict) -> str:
    peak = res["peak_matmul_flops_per_s"]
    lines = [f"Peak float32 matmul ({res['matmul_n']}³): JAX {_g(peak['jax'])} GFLOP/s, torch {_g(peak['torch'])} "
             "GFLOP/s.", "",
             "| preset | tokens/step | JAX s/step | JAX tokens/s | JAX GFLOP/s (% of peak) | torch s/step | "
             "torch tokens/s | torch GFLOP/s (% of peak) | JAX / torch | load (1 min) per round |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    def cells(r: dict, stack: str) -> str:
        if stack not in r:  # a `--only` run times one stack
            return "– | – | –"
        x = r[stack]
        return (f"{x['step_s']:.3f} | {x['tokens_per_s']:.0f} | {_g(x['model_flops_per_s'])} "
                f"({x['fraction_of_peak']:.0%})")

    for r in res["results"]:
        ratio = f"**{r['speedup']:.2f}×**" if "speedup" in r else "–"
        lines.append(
            f"| {r['preset']} | {r['tokens_per_step']} | {cells(r, 'jax')} | {cells(r, 'torch')} | {ratio} | "
            f"{', '.join(f'{x:.1f}' for x in r['load_average_1m'])} |")
    return "\n".join(lines)


def rerank_table(res: dict) -> str:
    lines = ["| preset | docs | prompt tokens (mean / max) | JAX docs/s | torch docs/s | JAX / torch | "
             "tokens computed JAX / torch | max abs score diff | load per round |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        pt = r["prompt_tokens"]
        lines.append(
            f"| {r['preset']} | {r['docs']} | {pt['mean']:.0f} / {pt['max']} | {r['jax']['docs_per_s']:.1f} | "
            f"{r['torch']['docs_per_s']:.1f} | **{r['speedup']:.2f}×** | {r['jax']['computed_tokens']} / "
            f"{r['torch']['computed_tokens']} | {r['max_abs_score_diff']:.1e} | "
            f"{', '.join(f'{x:.1f}' for x in r['load_average_1m'])} |")
    return "\n".join(lines)


def memory_table(res: dict) -> str:
    lines = ["| preset | task | JAX peak RSS (MiB) | torch peak RSS (MiB) | JAX / torch | "
             "after imports JAX / torch (MiB) |",
             "|---|---|---|---|---|---|"]
    for r in res["results"]:
        j, t = r["jax"], r["torch"]
        lines.append(f"| {r['preset']} | {r['task']} | {j['peak_rss_mib']:.0f} | {t['peak_rss_mib']:.0f} | "
                     f"**{r['peak_ratio_jax_over_torch']:.2f}** | {j['rss_after_import_mib']:.0f} / "
                     f"{t['rss_after_import_mib']:.0f} |")
    return "\n".join(lines)


def gpu_table(res: dict) -> str:
    lines = [f"Device: {res['device']} (peak bf16 {res['peak_bf16_tflops']} TFLOP/s), dry run: {res['dry_run']}", "",
             "| remat | s/step | tokens/s | MFU (4NT) | MFU (exact) | peak GPU memory (GiB) |",
             "|---|---|---|---|---|---|"]
    for r in res["train"]:
        if "error" in r:
            lines.append(f"| {r['remat_policy']} | {r['error']} | | | | |")
            continue
        lines.append(f"| {r['remat_policy']} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | "
                     f"{r.get('mfu_4nt', float('nan')):.1%} | {r.get('mfu_exact', float('nan')):.1%} | "
                     f"{r['peak_memory_gib']} |")
    if res.get("score"):
        s = res["score"]
        lines += ["", f"Scoring {s['candidates']} × {s['length']} tokens: {s['docs_per_s']:.1f} docs/s"]
    return "\n".join(lines)


TABLES = {"train_step": train_table, "rerank": rerank_table, "memory": memory_table, "gpu_8b": gpu_table}


def main(argv: list[str] | None = None) -> int:
    for path in argv if argv is not None else sys.argv[1:]:
        res = json.loads(Path(path).read_text())
        m = res.get("machine", {})
        print(f"### {res['benchmark']} ({path})\n")
        print(f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('date')}, versions {m.get('versions')}\n")
        print(TABLES[res["benchmark"]](res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
