"""The rerank table and depth curve of docs/results.md: BM25, the student alone and the stored default, on
each test set, from one student-only top-100 run per set.

    python -m benchmarks.depth_curve --default runs/recipe/direct_hn8_b1/rerank_default.json \
        --set dl19 runs/recipe/data/dl19_top100.jsonl runs/recipe/student_dl19_top100.trec QRELS \
        --set dl20 ... --out docs/results

Scores are pointwise, so reordering only the first-stage top K by a run's scores is what `r2r rerank
--depth K` writes (`inference.fusion.fuse_run`, the code rerank ranks with). For each set this writes
`default_<set>_top100.trec` (the top 100 under the stored default, its depth included: the run `r2r rerank`
writes by default; where that run is already in `--out`, it is checked to rank the same instead),
prints nDCG@1/5/10 with paired t-test p-values against BM25 for the three rows, and the depth curve
(K = 5 ... 100) of the student alone and of the default's method at each depth, as a markdown table and
`depth_curve.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from r2r_jax.atomic import atomic_path
from r2r_jax.data.candidates import read_candidates
from r2r_jax.eval.compare import compare_results
from r2r_jax.eval.metrics import evaluate
from r2r_jax.inference.fusion import Fusion, fuse_run, read_default
from r2r_jax.retrieval.trec import candidates_to_run, read_qrels, read_run, write_run

METRICS = ["ndcg@1", "ndcg@5", "ndcg@10"]
DEPTHS = (5, 10, 20, 30, 50, 100)


def rows_for_set(items, student_run, qrels, default: Fusion) -> dict:
    """The three rows (means and p-values against BM25) and the depth curve of one test set."""
    bm25 = evaluate(candidates_to_run(items), qrels, METRICS)
    out = {"rows": {}, "curve": {}}
    runs = {"student": fuse_run(items, student_run, Fusion("student", 1.0, 100)),
            "default": fuse_run(items, student_run, default)}  # its own depth, as `r2r rerank` applies it
    out["rows"]["bm25"] = {"means": bm25.means}
    for name, run in runs.items():
        res = evaluate(run, qrels, METRICS)
        tests = {t.metric: t.p_ttest for t in compare_results(bm25, res)}
        out["rows"][name] = {"means": res.means, "p": tests}
    for depth in DEPTHS:
        curve = {}
        for name, setting in (("student", Fusion("student", 1.0, depth)),
                              ("default", dataclasses.replace(default, depth=depth))):
            curve[name] = evaluate(fuse_run(items, student_run, setting), qrels, METRICS).means
        out["curve"][depth] = curve
    out["default_run"] = runs["default"]
    out["bm25_ndcg10"] = bm25.means["ndcg@10"]
    return out


def plot(results: dict[str, dict], default: Fusion, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(results), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, (name, res) in zip(axes, results.items(), strict=True):
        depths = sorted(res["curve"])
        for row, label, style in (("student", "student alone", "o-"),
                                  ("default", f"{default.method} w={default.weight:g}", "s-")):
            ax.plot(depths, [res["curve"][d][row]["ndcg@10"] for d in depths], style, label=label)
        ax.axhline(res["bm25_ndcg10"], color="gray", linestyle="--", label="BM25")
        ax.set_xscale("log")
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.set_xlabel("rerank depth K (BM25 top K reordered)")
        ax.set_ylabel("nDCG@10")
        ax.set_title(name.upper())
        ax.legend(fontsize=8)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def markdown(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["| ranking (top 100) | " + " | ".join(f"{n.upper()} nDCG@1 / @5 / @10" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for row in ("bm25", "student", "default"):
        cells = []
        for n in names:
            r = results[n]["rows"][row]
            p = r.get("p")
            cells.append(" / ".join(f"{r['means'][m]:.4f}" + (f" (p={p[m]:.2g})" if p else "") for m in METRICS))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "| depth K | " + " | ".join(f"{n.upper()} student / default nDCG@10" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for depth in DEPTHS:
        lines.append(f"| {depth} | " + " | ".join(
            f"{results[n]['curve'][depth]['student']['ndcg@10']:.4f} / "
            f"{results[n]['curve'][depth]['default']['ndcg@10']:.4f}" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--default", required=True, help="the student's rerank_default.json")
    parser.add_argument("--set", nargs=4, action="append", required=True,
                        metavar=("NAME", "CANDIDATES", "STUDENT_RUN", "QRELS"))
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--tag", default="r2r_default")
    args = parser.parse_args(argv)
    stored = read_default(Path(args.default).parent)
    if stored is None:
        raise SystemExit(f"{args.default}: not found")
    default = stored[0]
    out = Path(args.out)
    results = {}
    for name, cands, run, qrels in args.set:
        res = rows_for_set(read_candidates(cands), read_run(run), read_qrels(qrels), default)
        offline, written = res.pop("default_run"), out / f"default_{name}_top100.trec"
        if written.exists():  # `r2r rerank`'s own default run: it must rank exactly as the offline fusion
            cli = read_run(written)
            same = all([d for d, _ in cli[q]] == [d for d, _ in offline[q]] for q in offline)
            print(f"{written}: {'the same ranking as' if same else 'DIFFERS from'} the offline fusion")
        else:
            write_run(written, offline, tag=args.tag)
        results[name] = res
    plot(results, default, out / "depth_curve.png")
    (out / "depth_curve.json").write_text(json.dumps(results, indent=1))
    print(f"default: {default.describe()}")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
