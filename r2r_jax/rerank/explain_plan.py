"""Which passages of a reranked list `r2r rerank` explains, and in which comparison prompts (docs/rerank.md,
"Explanations").

A plan names ranks (`--explain-top K` is ranks 1-K; `--explain-ranks 1-10,91-100` any disjoint ranges) and a
comparison format. Every explained rank gets a direct reason. Comparisons are built as the teacher records
the student trained on hold them, so `data.features.comparison_item` renders them exactly as in training:

- `window` (the R2R release; `r2r teach --preset r2r-authors`): each contiguous range of explained ranks is
  cut into consecutive windows of at most `WINDOW` passages (near-equal sizes, so no window is a lone
  passage); a window lists its passages in first-stage order, as the teacher saw its window, and each
  passage gets one listwise reason that explains it against the others (`about`).
- `pair` (`r2r teach`'s compare stage): each two adjacent explained ranks are one pair, listed in
  first-stage order (the teacher's default `pair_order`), with one reason and no `about` line.
- `none`: direct reasons only.

In both formats the prompt's [1], [2], ... follow the first stage, never the student's ranking: at training
[1] said nothing about the teacher's ranking, so at serving it says nothing about the student's. The
explanations record lists each comparison's docids and ranks in prompt order, so a reason's "passage [3]"
maps to a docid. Pure Python: the CLI checks a plan before jax loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from r2r_jax.data.records import Comparison

COMPARISON_FORMATS = ("window", "pair", "none")
WINDOW = 5  # passages per listwise window: the release's (and `r2r teach --preset r2r-authors`') window
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_ranks(spec: str, flag: str = "--explain-ranks") -> tuple[tuple[int, int], ...]:
    """'1-10,91-100' -> ((1, 10), (91, 100)); a single rank '3' is (3, 3). Ranges are 1-based and inclusive,
    must be ascending and disjoint; ValueError naming `flag` otherwise."""
    ranges = []
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"{flag}: {part.strip()!r} is not a rank or a range FIRST-LAST (e.g. 1-10,91-100)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo < 1 or hi < lo:
            raise ValueError(f"{flag}: {part.strip()!r}: ranks start at 1 and a range runs from low to high")
        if ranges and lo <= ranges[-1][1]:
            raise ValueError(f"{flag}: ranges must be ascending and disjoint, got {spec!r}")
        ranges.append((lo, hi))
    return tuple(ranges)


def format_ranks(ranges: Sequence[tuple[int, int]]) -> str:
    """((1, 10), (91, 100)) -> '1-10,91-100' (the spec `parse_ranks` reads back)."""
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


@dataclass(frozen=True)
class ExplainPlan:
    ranks: tuple[tuple[int, int], ...] = ()  # inclusive 1-based rank ranges, ascending and disjoint
    comparisons: str = "window"  # one of COMPARISON_FORMATS

    def __post_init__(self):
        if self.comparisons not in COMPARISON_FORMATS:
            raise ValueError(f"comparisons must be one of {', '.join(COMPARISON_FORMATS)}, got {self.comparisons!r}")
        parse_ranks(format_ranks(self.ranks) or "1")  # the same checks as the flag

    @classmethod
    def top(cls, k: int, comparisons: str = "window") -> ExplainPlan:
        """Ranks 1-k (no ranks for k = 0)."""
        if k < 0:
            raise ValueError(f"explain_top must be >= 0, got {k}")
        return cls(((1, k),) if k else (), comparisons)

    def __bool__(self) -> bool:
        return bool(self.ranks)

    @property
    def compares(self) -> bool:
        """Whether some list could get a comparison reason (decoding them needs the comparison template)."""
        return self.comparisons != "none" and any(hi > lo for lo, hi in self.ranks)

    def blocks(self, n: int) -> list[list[int]]:
        """The explained ranks of a list of `n` passages, one list per range (cut at n; empty ranges left out)."""
        return [list(range(lo, min(hi, n) + 1)) for lo, hi in self.ranks if lo <= n]

    def count(self, n: int) -> int:
        """Reasons a list of `n` passages gets: its direct reasons and comparison reasons."""
        blocks = self.blocks(n)
        direct = sum(len(b) for b in blocks)
        if self.comparisons == "window":
            return direct + sum(len(b) for b in blocks if len(b) > 1)
        if self.comparisons == "pair":
            return direct + sum(len(b) - 1 for b in blocks)
        return direct

    def to_dict(self) -> dict:
        return {"ranks": format_ranks(self.ranks), "comparisons": self.comparisons}

    def describe(self) -> str:
        """'the top 5' or 'ranks 1-10,91-100', and the comparison format."""
        top = len(self.ranks) == 1 and self.ranks[0][0] == 1
        which = f"the top {self.ranks[0][1]}" if top else f"ranks {format_ranks(self.ranks)}"
        return f"{which} ({self.comparisons} comparisons)" if self.comparisons != "none" else f"{which} (direct only)"


def windows(block: Sequence[int], size: int = WINDOW) -> list[list[int]]:
    """Consecutive ranks cut into ceil(len / size) windows of near-equal length (7 -> 4 + 3, 6 -> 3 + 3)."""
    if not block:
        return []
    parts = -(-len(block) // size)
    base, extra = divmod(len(block), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + base + (i < extra)
        out.append(list(block[start:end]))
        start = end
    return out


def comparisons_for(plan: ExplainPlan, order: Sequence[str], first_stage: Mapping[str, int]) -> list[Comparison]:
    """The comparisons to explain for one query: `order` is its final ranking (docids, best first) and
    `first_stage[docid]` the first-stage position that orders a prompt's passages. Reasons are empty."""
    out: list[Comparison] = []
    for block in plan.blocks(len(order)):
        if plan.comparisons == "window":
            for ranks in windows(block):
                if len(ranks) < 2:
                    continue
                shown = sorted((order[r - 1] for r in ranks), key=first_stage.__getitem__)
                out += [Comparison(shown, None, "", about=order[r - 1]) for r in ranks]
        elif plan.comparisons == "pair":
            for r in block[:-1]:
                pair = sorted((order[r - 1], order[r]), key=first_stage.__getitem__)
                out.append(Comparison(pair, None, ""))
    return out
