"""benchmarks/sweep_table.py on reports written by `r2r evaluate --report`: the point that ranks the relevant
passages first is chosen, its mean is the two sets' mean, and a point not yet scored is listed last."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_the_control_column_is_the_paired_difference_of_each_querys_two_set_mean(tmp_path):
    """q1 gains 1 - ndcg(b,c,a) on both sets and q2 loses nothing, so the mean gain is half q1's; with one query
    moved and one not, the t-test's p-value is 0.5 (t = 1 on one degree of freedom)."""
    write_point(tmp_path, "control", {"q1": ["b", "c", "a"], "q2": ["e", "d"]})
    write_point(tmp_path, "better", {"q1": ["a", "b", "c"], "q2": ["e", "d"]})
    rows, chosen = table(tmp_path, control="control")
    assert chosen == "better" and rows[0].endswith("| vs control (p) |") and rows[1].count("---") == 6
    gain = 1 - 0.5  # ndcg@10 of the relevant passage at rank 3: 1 / log2(4)
    assert rows[2].endswith(f"| {gain / 2:+.4f} (0.50) |")
    assert rows[3].endswith("| 0.7500 | – |")  # q1 0.5, q2 1.0


def test_a_missing_control_point_is_named(tmp_path, capsys):
    from benchmarks.sweep_table import main as sweep_main

    write_point(tmp_path, "direct", {"q1": ["a", "b", "c"], "q2": ["e", "d"]})
    with pytest.raises(SystemExit) as stop:
        sweep_main([str(tmp_path), "--control", "both"])
    assert stop.value.code == 2
    assert "--control: no point both" in capsys.readouterr().err
