"""Do the reasons agree with the ranking? For the passages a ranking puts first, the share whose direct reason
says they answer the query; for the passages it puts last, the share whose reason says they do not
(`data.verdict` reads each reason). A reader who sees the top result called irrelevant stops trusting the
ranking, so this is checked on what `r2r rerank` wrote, per query and pooled over queries.

Top rows (1, 3, 10) count the queries whose explained ranks hold all of 1..k (or all of a shorter list). The
bottom row is the last contiguous range of explained ranks when it does not start at rank 1 (`r2r rerank
--explain-ranks 1-10,91-100` explains ranks 91-100 of a top 100 for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from r2r_jax.data.verdict import VERDICTS, Verdict
from r2r_jax.eval.tables import aligned

TOP_K = (1, 3, 10)


@dataclass(frozen=True)
class AgreementRow:
    label: str  # "top 3", "bottom (ranks 91-100)"
    expect: Verdict  # the verdict that agrees with the ranking here: yes at the top, no at the bottom
    queries: int
    passages: int
    yes: int
    no: int
    unclear: int

    @property
    def agree(self) -> float | None:
        """Share of the passages whose reason says what the ranking implies (None without passages)."""
        return getattr(self, self.expect) / self.passages if self.passages else None

    def to_dict(self) -> dict:
        return {**asdict(self), "agree": self.agree}


def blocks(ranks: Sequence[int]) -> list[list[int]]:
    """Sorted ranks split into runs of consecutive ones: [1, 2, 3, 91, 92] -> [[1, 2, 3], [91, 92]]."""
    out: list[list[int]] = []
    for r in sorted(ranks):
        if out and r == out[-1][-1] + 1:
            out[-1].append(r)
        else:
            out.append([r])
    return out


def _row(label: str, expect: Verdict, picked: Sequence[Sequence[Verdict]]) -> AgreementRow:
    flat = [v for query in picked for v in query]
    return AgreementRow(label, expect, len(picked), len(flat), *(flat.count(v) for v in VERDICTS))


def agreement(queries: Sequence[tuple[Mapping[int, Verdict], int]], top_k: Sequence[int] = TOP_K,
              ) -> list[AgreementRow]:
    """Rows for each top k some query qualifies for, then the bottom row when there is one. `queries` holds,
    per query, its verdicts by rank and the length of its ranked list."""
    rows = []
    for k in top_k:
        picked = [[v for r, v in sorted(by_rank.items()) if r <= k] for by_rank, listed in queries
                  if by_rank and all(r in by_rank for r in range(1, min(k, listed) + 1))]
        if picked:
            rows.append(_row(f"top {k}", "yes", picked))
    bottoms, ends = [], []
    for by_rank, _ in queries:
        runs = blocks(list(by_rank))
        if runs and runs[-1][0] != 1:
            bottoms.append([by_rank[r] for r in runs[-1]])
            ends += [runs[-1][0], runs[-1][-1]]
    if bottoms:
        rows.append(_row(f"bottom (ranks {min(ends)}-{max(ends)})", "no", bottoms))
    return rows


def table(rows: Sequence[AgreementRow]) -> str:
    """The rows as aligned text: passages, the share that agrees, and the three verdicts' shares."""
    def pct(n: int, total: int) -> str:
        return f"{100.0 * n / total:.1f}%" if total else "-"

    lines = [["direct reasons", "queries", "passages", "agree", "yes", "no", "unclear"]]
    for r in rows:
        lines.append([f"{r.label}: says {'it answers' if r.expect == 'yes' else 'it does not'}", str(r.queries),
                      str(r.passages), pct(getattr(r, r.expect), r.passages), pct(r.yes, r.passages),
                      pct(r.no, r.passages), pct(r.unclear, r.passages)])
    return aligned(lines)
