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


def per_query(folder: Path) -> dict[str, float] | None:
    """Each query's nDCG@10 averaged over the two selection sets, or None while a set is not scored."""
    reports = [folder / f"{name}.json" for name in SETS]
    if not all(r.is_file() for r in reports):
        return None
    values = [json.loads(r.read_text())["result"]["per_query"]["ndcg@10"] for r in reports]
    return {q: sum(v[q] for v in values) / len(values) for q in values[0]}


def point_scores(folder: Path) -> dict[str, float] | None:
    """nDCG@10 on each selection set and their mean, or None while a set is not scored."""
    if per_query(folder) is None:
        return None
    scores = {name: json.loads((folder / f"{name}.json").read_text())["result"]["means"]["ndcg@10"]
              for name in SETS}
    scores["mean"] = sum(scores[s] for s in SETS) / len(SETS)
    return scores


def table(sweep: Path, control: str | None = None) -> tuple[list[str], str | None]:
    """Markdown rows, best first, and the chosen point's name (None when no point is scored)."""
    points = []
    for folder in sorted(p for p in sweep.iterdir() if (p / "flags.txt").is_file()):
        flags = " ".join(folder.joinpath("flags.txt").read_text().split())
        points.append((folder.name, flags, point_scores(folder)))
    points.sort(key=lambda p: (p[2] is None, -(p[2] or {}).get("mean", 0.0), p[0]))
    head = "| point | flags | random | on-topic | mean |"
    rows = [head + (f" vs {control} (p) |" if control else ""), "|---" * (head.count("|") - 1 + bool(control)) + "|"]
    baseline = per_query(sweep / control) if control else None
    for name, flags, s in points:
        cells = ["–"] * 3 if s is None else [f"{s['heldout']:.4f}", f"{s['heldout_hard']:.4f}", f"{s['mean']:.4f}"]
        if control:
            cells.append(_versus(baseline, per_query(sweep / name)) if name != control else "–")
        rows.append(f"| {name} | `{flags}` | " + " | ".join(cells) + " |")
    chosen = points[0][0] if points and points[0][2] is not None else None
    return rows, chosen


def _versus(baseline: dict[str, float] | None, values: dict[str, float] | None) -> str:
    if baseline is None or values is None:
        return "–"
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
