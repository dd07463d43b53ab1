"""The table of `benchmarks/reasons_sweep.sh`'s points, best first, and the one the selection sets choose.

    python -m benchmarks.sweep_table runs/recipe/sweep

Each point folder holds `flags.txt` and the `r2r evaluate --report` JSON of its student-alone rerank of the
two selection sets (`heldout.json`: random distractors, `heldout_hard.json`: on-topic). A point is judged by the
mean of the two sets' nDCG@10 (100 held-out queries in all); points not yet scored on both are listed last.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SETS = ("heldout", "heldout_hard")


def point_scores(folder: Path) -> dict[str, float] | None:
    """nDCG@10 on each selection set and their mean, or None while a set is not scored."""
    scores = {}
    for name in SETS:
        report = folder / f"{name}.json"
        if not report.is_file():
            return None
        scores[name] = json.loads(report.read_text())["result"]["means"]["ndcg@10"]
    scores["mean"] = sum(scores[s] for s in SETS) / len(SETS)
    return scores


def table(sweep: Path) -> tuple[list[str], str | None]:
    """Markdown rows, best first, and the chosen point's name (None when no point is scored)."""
    points = []
    for folder in sorted(p for p in sweep.iterdir() if (p / "flags.txt").is_file()):
        flags = " ".join(folder.joinpath("flags.txt").read_text().split())
        points.append((folder.name, flags, point_scores(folder)))
    points.sort(key=lambda p: (p[2] is None, -(p[2] or {}).get("mean", 0.0), p[0]))
    rows = ["| point | flags | random | on-topic | mean |", "|---|---|---|---|---|"]
    for name, flags, s in points:
        cells = ["–"] * 3 if s is None else [f"{s['heldout']:.4f}", f"{s['heldout_hard']:.4f}", f"{s['mean']:.4f}"]
        rows.append(f"| {name} | `{flags}` | " + " | ".join(cells) + " |")
    chosen = points[0][0] if points and points[0][2] is not None else None
    return rows, chosen


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m benchmarks.sweep_table SWEEP_FOLDER", file=sys.stderr)
        return 2
    rows, chosen = table(Path(argv[0]))
    print("\n".join(rows))
    print(f"\nchosen: {chosen}" if chosen else "\nno point scored on both selection sets yet")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
