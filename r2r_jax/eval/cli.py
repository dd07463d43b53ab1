"""`r2r evaluate`: metrics of a TREC run against qrels, per-query figures, a paired comparison, a plot."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from r2r_jax.atomic import check_output_files, write_json
from r2r_jax.cli_types import add_renamed, non_negative_float, non_negative_int, positive_int
from r2r_jax.data.datasets import dataset_file
from r2r_jax.data.records import RecordError
from r2r_jax.eval.metric_names import DEFAULT_METRICS
from r2r_jax.retrieval.trec import read_qrels, read_run

if TYPE_CHECKING:
    from r2r_jax.eval.metrics import EvalResult

# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("report", "plot"), ("run", "qrels", "compare"))
EXAMPLE = "r2r evaluate --dataset dl19 --run r2r.trec --compare bm25.trec --report dl19_eval.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN", help="TREC run: qid Q0 docid rank score tag")
    judgements = parser.add_mutually_exclusive_group(required=True)
    judgements.add_argument("--qrels", metavar="FILE", help="TREC qrels (qid Q0 docid grade) or BEIR qrels TSV")
    judgements.add_argument("--dataset", metavar="NAME",
                            help="the qrels of a named set (r2r data list): dl19, dl20 or your BEIR set's test split")
    parser.add_argument("--metrics", default=DEFAULT_METRICS,
                        help="comma-separated: ndcg@k, mrr@k, r@k, p@k, map, success@k, judged@k (the share of "
                             "the top k with a judgement), or ir_measures names")
    parser.add_argument("--rel-level", type=positive_int, default=1, metavar="GRADE",
                        help="lowest grade counted relevant by binary measures (trec_eval -l; TREC DL uses 2)")
    parser.add_argument("--per-query", action="store_true", help="print per-query values too")
    parser.add_argument("--compare", metavar="RUN2", help="a second run: paired significance test RUN2 vs RUN")
    parser.add_argument("--permutations", type=non_negative_int, default=10000, metavar="N",
                        help="resamples of the paired randomisation test with --compare (0: t-test only)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="N", help="seed of the randomisation test")
    parser.add_argument("--plot", metavar="PNG",
                        help="per-query bar chart: differences with --compare, else the run's values")
    add_renamed(parser, "--report", "--json", metavar="FILE",
                help="also write a JSON report: means, per-query values and tests")
    parser.add_argument("--min-query-value", type=non_negative_float, metavar="T",
                        help="NON-STANDARD (the R2R authors' evaluation, which used 0.5): also report each metric's "
                             "mean over only the queries whose value exceeds T, with how many were kept")


def _evaluate_file(path: str, qrels, specs) -> EvalResult:
    from r2r_jax.eval.metrics import evaluate

    result = evaluate(read_run(path), qrels, specs)
    for warning in result.warnings():
        print(f"r2r evaluate: warning: {path}: {warning}", file=sys.stderr)
    return result


def run_labels(run: str, compare: str | None) -> tuple[str, str]:
    """Column names for the two runs: their file names, else (same name in two folders) their paths, else (the
    same file twice) A and B, so the columns never read alike."""
    if not compare:
        return Path(run).name, ""
    if Path(run).name != Path(compare).name:
        return Path(run).name, Path(compare).name
    if run != compare:
        return run, compare
    return f"A ({Path(run).name})", f"B ({Path(compare).name})"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    return "\n".join(line(r) for r in rows)


def run(args: argparse.Namespace) -> int:
    from r2r_jax.eval.compare import compare_results, plot_differences, plot_per_query
    from r2r_jax.eval.metrics import EvalError, parse_metrics

    try:
        if args.dataset:  # a named set's qrels, checked against its recorded hash (r2r data)
            args.qrels = str(dataset_file(args.dataset, "qrels"))
            check_output_files(args, *FILE_ARGUMENTS)
        try:
            specs = parse_metrics(args.metrics, args.rel_level)
        except EvalError as e:
            raise EvalError(f"--metrics {args.metrics!r}: {e}") from None
        qrels = read_qrels(args.qrels)
        a = _evaluate_file(args.run, qrels, specs)
        b = _evaluate_file(args.compare, qrels, specs) if args.compare else None
        tests = compare_results(a, b, args.permutations, args.seed) if b is not None else None
    except (RecordError, EvalError, OSError) as e:  # unreadable, malformed or empty inputs, bad metric names
        print(f"r2r evaluate: error: {e}", file=sys.stderr)
        return 2

    name_a, name_b = run_labels(args.run, args.compare)
    print(f"{len(a.qids)} queries evaluated" + (f" ({name_a}), {len(b.qids)} ({name_b})" if b else ""))
    if b is None:
        rows = [["metric", name_a]] + [[m, f"{a.means[m]:.4f}"] for m in a.metrics]
    else:
        rows = [["metric", name_a, name_b, "diff", "p (t-test)", "p (perm.)"]]
        for t in tests:
            perm = "-" if t.p_permutation is None else f"{t.p_permutation:.4g}"
            rows.append([t.metric, f"{t.mean_a:.4f}", f"{t.mean_b:.4f}", f"{t.mean_diff:+.4f}",
                         "-" if math.isnan(t.p_ttest) else f"{t.p_ttest:.4g}", perm])
    print(_table(rows))
    if tests and min(t.n for t in tests) < 2:
        print(f"note: the runs share {min(t.n for t in tests)} evaluated query; a paired test needs two or more, "
              "so only the means are compared")
    filtered = []  # (run file, its means above the threshold)
    if args.min_query_value is not None:
        filtered = [(path, r.means_above(args.min_query_value)) for path, r in ((args.run, a), (args.compare, b)) if r]
        print(f"\nNON-STANDARD: means over only the queries whose value exceeds {args.min_query_value} "
              f"(the R2R authors' filter; the standard means are above)")
        head = ["metric"] + [f"{n} (kept of {len(r.qids)})" for n, r in ((name_a, a), (name_b, b)) if r]
        print(_table([head] + [[m] + [f"{f[m][0]:.4f} ({f[m][1]})" for _, f in filtered] for m in a.metrics]))

    if args.per_query:
        columns = [(m, a, "A") for m in a.metrics] + ([(m, b, "B") for m in b.metrics] if b else [])
        head = ["qid"] + [f"{m} {n}" if b else m for m, _, n in columns]
        qids = list(dict.fromkeys(a.qids + (b.qids if b else [])))
        body = [[q] + [f"{r.per_query[m][q]:.4f}" if q in r.per_query[m] else "-" for m, r, _ in columns]
                for q in qids]
        print()
        if b is not None:
            print(f"A = {name_a}, B = {name_b}")
        print(_table([head] + body))

    if args.plot:
        if b is None:
            plot_per_query(a.per_query, args.plot, title=name_a)
        else:
            plot_differences(a, b, args.plot, (name_a, name_b), tests)
        print(f"plot: {args.plot}")
    if args.report:
        out = {"run": args.run, "qrels": args.qrels, "dataset": args.dataset, "rel_level": args.rel_level,
               "result": a.to_dict(),
               "warnings": a.warnings()}
        if filtered:
            out["non_standard_means_above"] = {"threshold": args.min_query_value, "runs": [
                {"run": path, "means": {m: {"mean": v, "kept": k} for m, (v, k) in f.items()}} for path, f in filtered]}
        if b is not None:
            out.update(compare=args.compare, compare_result=b.to_dict(), compare_warnings=b.warnings(),
                       tests=[t.to_dict() for t in tests])
        write_json(args.report, out, indent=2)
        print(f"report: {args.report}")
    return 0
