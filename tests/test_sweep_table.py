"""benchmarks/sweep_table.py on reports written by `r2r evaluate --report`: the point that ranks the relevant
passages first is chosen, its mean is the two sets' mean, and a point not yet scored is listed last."""

from __future__ import annotations

from pathlib import Path

from benchmarks.sweep_table import table
from r2r_jax.cli import main

QRELS = "q1 0 a 2\nq1 0 b 0\nq1 0 c 0\nq2 0 e 1\nq2 0 d 0\n"


def write_point(sweep: Path, name: str, orders: dict[str, list[str]]) -> None:
    folder = sweep / name
    folder.mkdir(parents=True)
    (folder / "flags.txt").write_text(f"--loss.reasons\n{name}\n")
    qrels = folder / "qrels.txt"
    qrels.write_text(QRELS)
    for selection_set in ("heldout", "heldout_hard"):
        run = folder / f"{selection_set}.trec"
        run.write_text("".join(f"{q} Q0 {d} {r} {10 - r} t\n" for q, docs in orders.items()
                               for r, d in enumerate(docs, start=1)))
        assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--metrics", "ndcg@5,ndcg@10",
                     "--report", str(folder / f"{selection_set}.json")]) == 0


def test_the_better_point_is_chosen_and_unscored_points_come_last(tmp_path, capsys):
    write_point(tmp_path, "worse", {"q1": ["b", "c", "a"], "q2": ["d", "e"]})
    write_point(tmp_path, "best", {"q1": ["a", "b", "c"], "q2": ["e", "d"]})
    (tmp_path / "unscored").mkdir()
    (tmp_path / "unscored" / "flags.txt").write_text("--loss.reasons\nboth\n")
    rows, chosen = table(tmp_path)
    assert chosen == "best"
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| best", "| worse", "| unscored"]
    assert rows[2].endswith("| 1.0000 | 1.0000 | 1.0000 |")  # ideal order on both sets
    assert rows[3].split(" | ")[-1] != "1.0000 |" and rows[4].endswith("| – | – | – |")
    assert "`--loss.reasons best`" in rows[2]
