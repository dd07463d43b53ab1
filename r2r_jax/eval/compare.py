"""Paired comparison of two runs on the same queries: significance tests and a per-query plot.

Per-query values of one metric are paired by qid (queries evaluated for only one run are left out and
counted). The paired t-test is the IR field's habit; the randomisation (permutation) test makes no
normality assumption and is exact when 2^n is small enough to enumerate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from r2r_jax.atomic import atomic_path
from r2r_jax.eval.metrics import EvalError, EvalResult


@dataclass
class PairedTest:
    """B against A on one metric; `mean_diff` = mean(B − A), p-values two-sided."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    t_statistic: float
    p_ttest: float
    p_permutation: float | None
    wins: int  # queries where B > A
    losses: int
    ties: int
    unpaired: int  # queries evaluated for only one of the runs

    def to_dict(self) -> dict:
        """As JSON takes it: a test that could not run (one shared query) has null, not NaN, p-values."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}


def paired_test(a: Mapping[str, float], b: Mapping[str, float], metric: str = "",
                permutations: int = 0, seed: int = 0) -> PairedTest:
    """Paired t-test (scipy) and, with `permutations > 0`, a paired randomisation test of mean(B − A). Both need
    two or more shared queries: with one, the means are compared and the p-values are NaN / None."""
    qids = sorted(a.keys() & b.keys())
    if not qids:
        raise EvalError(f"{metric or 'metric'}: the two runs share no evaluated query")
    x = np.array([a[q] for q in qids], dtype=np.float64)
    y = np.array([b[q] for q in qids], dtype=np.float64)
    diff = y - x
    if not np.any(diff):  # identical per-query values: no evidence of a difference (scipy would give NaN)
        t_stat, p_t = 0.0, 1.0
    elif len(qids) < 2:
        t_stat, p_t = math.nan, math.nan
    else:
        res = stats.ttest_rel(y, x)
        t_stat, p_t = float(res.statistic), float(res.pvalue)
    p_perm = None
    if permutations > 0 and (len(qids) > 1 or not np.any(diff)):
        if not np.any(diff):
            p_perm = 1.0
        else:
            res = stats.permutation_test((y, x), lambda u, v, axis: np.mean(u - v, axis=axis),
                                         permutation_type="samples", n_resamples=permutations,
                                         vectorized=True, rng=np.random.default_rng(seed))
            p_perm = float(res.pvalue)
    return PairedTest(metric, len(qids), float(x.mean()), float(y.mean()), float(diff.mean()), t_stat, p_t,
                      p_perm, int(np.sum(diff > 0)), int(np.sum(diff < 0)), int(np.sum(diff == 0)),
                      len(a.keys() ^ b.keys()))


def compare_results(a: EvalResult, b: EvalResult, permutations: int = 0, seed: int = 0) -> list[PairedTest]:
    """One `PairedTest` per metric the two results share, in A's order."""
    shared = [m for m in a.metrics if m in b.metrics]
    if not shared:
        raise EvalError(f"the results share no metric: {a.metrics} vs {b.metrics}")
    return [paired_test(a.per_query[m], b.per_query[m], m, permutations, seed) for m in shared]


def per_query_differences(a: EvalResult, b: EvalResult) -> dict[str, dict[str, float]]:
    """metric -> qid -> B − A over the queries both evaluated."""
    return {m: {q: b.per_query[m][q] - a.per_query[m][q] for q in a.per_query[m] if q in b.per_query[m]}
            for m in a.metrics if m in b.metrics}


def plot_per_query(series: Mapping[str, Mapping[str, float]], path: str | Path, title: str = "",
                   ylabel: str = "value", notes: Sequence[str] | None = None) -> Path:
    """A PNG with one panel per metric: per-query values as bars, sorted from highest to lowest.

    Uses the Agg canvas directly (no pyplot, no global backend), so it works headless and in threads.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not series:
        raise EvalError("nothing to plot")
    path = Path(path)
    fig = Figure(figsize=(9, 2.4 * len(series) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(series), 1, squeeze=False)[:, 0]
    for i, (ax, (metric, values)) in enumerate(zip(axes, series.items(), strict=True)):
        items = sorted(values.items(), key=lambda kv: -kv[1])
        heights = [v for _, v in items]
        colours = ["tab:green" if v > 0 else "tab:red" if v < 0 else "tab:gray" for v in heights]
        ax.bar(range(len(items)), heights, color=colours, width=0.85)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"{metric}\n{ylabel}")
        ax.set_xlim(-0.6, max(len(items), 1) - 0.4)
        ax.set_xticks([])
        mean = float(np.mean(heights)) if heights else math.nan
        label = f"mean {mean:+.4f}, {len(items)} queries" + (f"; {notes[i]}" if notes else "")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1].set_xlabel("queries, sorted")
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def plot_differences(a: EvalResult, b: EvalResult, path: str | Path, names: tuple[str, str] = ("A", "B"),
                     tests: Sequence[PairedTest] | None = None) -> Path:
    """Per-query B − A for each shared metric; green where B is better. p-values in the panel titles."""
    diffs = per_query_differences(a, b)
    notes = None
    if tests is not None:
        by_metric = {t.metric: t for t in tests}
        notes = [_p_note(by_metric.get(m)) for m in diffs]
    return plot_per_query(diffs, path, title=f"{names[1]} − {names[0]}", ylabel="difference", notes=notes)


def _p_note(test: PairedTest | None) -> str:
    if test is None:
        return ""
    note = f"paired t-test p = {test.p_ttest:.3g}"
    if test.p_permutation is not None:
        note += f", permutation p = {test.p_permutation:.3g}"
    return note
