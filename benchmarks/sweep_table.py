"""The table of `benchmarks/reasons_sweep.sh`'s points, best first, and the one the selection sets choose.

    python -m benchmarks.sweep_table runs/recipe/sweep [--control direct]

Each point folder holds `flags.txt` and the `r2r evaluate --report` JSON of its student-alone rerank of the
two selection sets (`heldout.json`: random distractors, `heldout_hard.json`: on-topic). A point is judged by the
mean of the two sets' nDCG@10 (the same 50 held-out queries under two kinds of distractor); points not yet
scored on both are listed last. With `--control NAME` each point's mean is also set against that point's: the
difference and a paired t-test over the 50 queries, each query's value its mean over the two sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from r2r_jax.eval.compare import paired_test

SETS = ("heldout", "heldout_hard")


def reports(folder: Path) -> list[dict] | None:
    """The `result` of each selection set's report, or None while a set is not scored."""
    paths = [folder / f"{name}.json" for name in SETS]
    if not all(p.is_file() for p in paths):
        return None
    return [json.loads(p.read_text())["result"] for p in paths]


def per_query(results: list[dict]) -> dict[str, float]:
    """Each query's nDCG@10 averaged over the two selection sets."""
    values = [r["per_query"]["ndcg@10"] for r in results]
    return {q: sum(v[q] for v in values) / len(values) for q in values[0]}


def point_scores(results: list[dict]) -> dict[str, float]:
    """nDCG@10 on each selection set and their mean."""
    scores = {name: r["means"]["ndcg@10"] for name, r in zip(SETS, results, strict=True)}
    scores["mean"] = sum(scores[s] for s in SETS) / len(SETS)
    return scores


def table(sweep: Path, control: str | None = None) -> tuple[list[str], str | None]:
    """Markdown rows, best first, and the chosen point's name (None when no point is scored)."""
    points = []  # (name, flags, reports or None), each folder's reports read once
    for folder in sorted(p for p in sweep.iterdir() if (p / "flags.txt").is_file()):
        flags = " ".join(folder.joinpath("flags.txt").read_text().split())
        points.append((folder.name, flags, reports(folder)))
    scores = {name: point_scores(r) for name, _, r in points if r is not None}
    points.sort(key=lambda p: (p[0] not in scores, -scores.get(p[0], {}).get("mean", 0.0), p[0]))
    head = "| point | flags | random | on-topic | mean |"
    rows = [head + (f" vs {control} (p) |" if control else ""), "|---" * (head.count("|") - 1 + bool(control)) + "|"]
    control_reports = next((r for name, _, r in points if name == control), None)
    baseline = per_query(control_reports) if control_reports else None
    for name, flags, results in points:
        s = scores.get(name)
        cells = ["–"] * 3 if s is None else [f"{s['heldout']:.4f}", f"{s['heldout_hard']:.4f}", f"{s['mean']:.4f}"]
        if control:
            versus = baseline is not None and results is not None and name != control
            cells.append(_versus(baseline, per_query(results)) if versus else "–")
        rows.append(f"| {name} | `{flags}` | " + " | ".join(cells) + " |")
    chosen = points[0][0] if points and points[0][0] in scores else None
    return rows, chosen


def _versus(baseline: dict[str, float], values: dict[str, float]) -> str:
    test = paired_test(baseline, values)
    return f"{test.mean_diff:+.4f} ({test.p_ttest:#.2g})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep_table", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path, help="the sweep folder (OUT/sweep of reasons_sweep.sh)")
    parser.add_argument("--control", help="a point to set the others against (paired t-test)")
    args = parser.parse_args(argv)
    if not args.sweep.is_dir():
        parser.error(f"{args.sweep}: not a folder")
    if args.control and not (args.sweep / args.control / "flags.txt").is_file():
        parser.error(f"--control: no point {args.control} in {args.sweep}")
    rows, chosen = table(args.sweep, args.control)
    print("\n".join(rows))
    print(f"\nchosen: {chosen}" if chosen else "\nno point scored on both selection sets yet")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
