"""Ranking metrics with trec_eval semantics, through ir_measures' pytrec_eval provider (docs/evaluation.md).

trec_eval conventions kept on purpose, so figures match published ones:
- documents are ranked by score (ties by docid, descending), the rank column is ignored;
- nDCG uses the graded judgements; binary measures (RR, recall, P, AP) count grade >= `rel_level` as relevant;
- run queries without judgements are ignored, judged queries missing from the run are left out of the means
  (trec_eval without `-c`); both are reported so that a caller can warn;
- `mrr@k` is trec_eval's `recip_rank` over each query's top k (`trec_eval -M k`), as MS MARCO reports it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import ir_measures
from ir_measures.providers.base import NOT_PROVIDED

from r2r_jax.eval.metric_names import DEFAULT_METRICS
from r2r_jax.retrieval.trec import trec_order

# short name -> (ir_measures measure family, takes a relevance level)
_SHORT = {
    "ndcg": (ir_measures.nDCG, False),
    "mrr": (ir_measures.RR, True),
    "rr": (ir_measures.RR, True),
    "r": (ir_measures.R, True),
    "recall": (ir_measures.R, True),
    "p": (ir_measures.P, True),
    "map": (ir_measures.AP, True),
    "ap": (ir_measures.AP, True),
    "success": (ir_measures.Success, True),
    "judged": (ir_measures.Judged, False),
}
_SHORT_RE = re.compile(r"^([a-z]+)(?:@(\d+))?$")


class EvalError(ValueError):
    """A run, qrels or metric request that cannot be evaluated."""


@dataclass(frozen=True)
class MetricSpec:
    """A requested metric: the user's label, the measure pytrec_eval computes, the run depth it sees."""

    label: str
    measure: ir_measures.Measure
    depth: int | None = None  # truncate each query's ranking to its top `depth` first (trec_eval -M)


def _provider(measure: ir_measures.Measure):
    """pytrec_eval (trec_eval itself) for everything it computes; ir_measures' own `judged` provider for the
    share of judged passages, which trec_eval lacks (pyserini's `judged.k`)."""
    return ir_measures.providers.registry["judged" if measure.NAME == "Judged" else "pytrec_eval"]


def _spec(label: str, measure: ir_measures.Measure) -> MetricSpec:
    if measure.NAME == "Judged" and measure["cutoff"] is not NOT_PROVIDED:
        # ranked here in trec_eval's order (score, then docid) and cut at k before the judged provider sees it
        return MetricSpec(label, measure, int(measure["cutoff"]))
    if measure.NAME == "RR" and measure["cutoff"] is not NOT_PROVIDED:
        # pytrec_eval's recip_rank has no cutoff: cut the run instead, which is what `trec_eval -M k` does
        params = {k: v for k, v in measure.params.items() if k != "cutoff"}
        return MetricSpec(label, ir_measures.RR(**params), int(measure["cutoff"]))
    return MetricSpec(label, measure)


def parse_metrics(names: str | Sequence[str], rel_level: int = 1) -> list[MetricSpec]:
    """Parse `ndcg@10,mrr@10,r@100,p@5,map` (case-insensitive) or ir_measures names like `R(rel=2)@1000`.

    `rel_level` is the lowest grade a short-named binary measure counts as relevant (trec_eval `-l`).
    """
    tokens = [t.strip() for t in (names.split(",") if isinstance(names, str) else names) if t.strip()]
    if not tokens:
        raise EvalError("no metrics requested")
    out: list[MetricSpec] = []
    for token in tokens:
        m = _SHORT_RE.match(token.lower())
        if m and m.group(1) in _SHORT:
            family, binary = _SHORT[m.group(1)]
            params = {"rel": rel_level} if binary else {}
            measure = family(**params) if m.group(2) is None else family(**params) @ int(m.group(2))
        else:
            try:
                measure = ir_measures.parse_measure(token)
            except (ValueError, NameError, SyntaxError, TypeError) as e:
                raise EvalError(f"unknown metric {token!r} (short names: {', '.join(sorted(_SHORT))}, "
                                f"with @k; or an ir_measures name such as nDCG@10): {e}") from None
        cutoff = measure.params.get("cutoff", NOT_PROVIDED)
        if cutoff is not NOT_PROVIDED and int(cutoff) < 1:
            # trec_eval aborts the whole process on a cutoff of 0 (an assertion in pytrec_eval)
            raise EvalError(f"metric {token!r}: the cutoff after @ must be at least 1")
        spec = _spec(token, measure)
        if not _provider(spec.measure).supports(spec.measure):
            raise EvalError(f"metric {token!r} ({measure}) is not computed by trec_eval/pytrec_eval (or judged@k)")
        if token in {s.label for s in out}:
            raise EvalError(f"metric {token!r} requested twice")
        out.append(spec)
    return out


@dataclass
class EvalResult:
    """Means over the evaluated queries, per-query values, and the qids left out (with the reason)."""

    metrics: list[str]
    means: dict[str, float]
    per_query: dict[str, dict[str, float]]  # metric label -> qid -> value
    qids: list[str]  # evaluated: in the run and in the qrels
    run_only_qids: list[str] = field(default_factory=list)  # no judgements: ignored
    qrels_only_qids: list[str] = field(default_factory=list)  # judged but not retrieved: not in the means

    def warnings(self) -> list[str]:
        out = []
        if self.run_only_qids:
            out.append(f"{len(self.run_only_qids)} run queries have no qrels and are ignored, "
                       f"e.g. {self.run_only_qids[:5]}")
        if self.qrels_only_qids:
            out.append(f"{len(self.qrels_only_qids)} judged queries are missing from the run and are left out "
                       f"of the means, e.g. {self.qrels_only_qids[:5]}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    def means_above(self, threshold: float) -> dict[str, tuple[float, int]]:
        """NON-STANDARD, the R2R authors' evaluation: per metric, the mean over only the queries whose own
        value exceeds `threshold`, and how many those are. It drops exactly the queries a ranker does worst
        on, so it is reported beside the standard means, never instead of them."""
        out = {}
        for metric in self.metrics:
            kept = [v for v in self.per_query[metric].values() if v > threshold]
            out[metric] = (sum(kept) / len(kept) if kept else float("nan"), len(kept))
        return out


def _scores(run: Mapping) -> dict[str, dict[str, float]]:
    out = {}
    for qid, hits in run.items():
        scores = dict(hits.items() if isinstance(hits, Mapping) else hits)
        out[str(qid)] = {str(d): float(s) for d, s in scores.items()}
    return out


def _sorted_qids(qids) -> list[str]:
    return sorted(qids, key=lambda q: (0, int(q), q) if q.isdigit() else (1, 0, q))


def evaluate(run: Mapping, qrels: Mapping[str, Mapping[str, int]],
             metrics: str | Sequence[str] | Sequence[MetricSpec] = DEFAULT_METRICS, rel_level: int = 1) -> EvalResult:
    """Evaluate `run` (`{qid: [(docid, score)]}` or `{qid: {docid: score}}`) against `qrels`.

    Raises `EvalError` for an empty run or qrels, queries with no hits, or no query in common.
    """
    specs = metrics if metrics and isinstance(metrics[0], MetricSpec) else parse_metrics(metrics, rel_level)
    scores = _scores(run)
    if not scores:
        raise EvalError("empty run: no queries")
    if not qrels:
        raise EvalError("empty qrels: no judged queries")
    empty = [q for q, hits in scores.items() if not hits]
    if empty:
        raise EvalError(f"{len(empty)} run queries have no hits, e.g. {empty[:5]}")
    common = scores.keys() & qrels.keys()
    if not common:
        raise EvalError(f"run and qrels share no query: run qids e.g. {_sorted_qids(scores)[:5]}, "
                        f"qrels qids e.g. {_sorted_qids(qrels)[:5]} (wrong qrels file?)")
    run_only = set(scores) - common
    scores = {q: scores[q] for q in common}
    judged = {str(q): {str(d): int(g) for d, g in j.items()} for q, j in qrels.items() if q in common}
    per_query: dict[str, dict[str, float]] = {s.label: {} for s in specs}
    groups: dict[tuple, list[MetricSpec]] = {}  # one evaluator per (run depth, provider)
    for spec in specs:
        groups.setdefault((spec.depth, _provider(spec.measure)), []).append(spec)
    for (depth, provider), group in groups.items():
        view = scores if depth is None else {q: dict(trec_order(h.items())[:depth]) for q, h in scores.items()}
        labels: dict[ir_measures.Measure, list[str]] = {}
        for s in group:  # `mrr@10` and `RR@10` are one measure under two labels
            labels.setdefault(s.measure, []).append(s.label)
        for metric in provider.evaluator(list(labels), judged).iter_calc(view):
            for label in labels[metric.measure]:
                per_query[label][metric.query_id] = float(metric.value)
    qids = _sorted_qids(common)
    means = {}
    for label, values in per_query.items():
        if values.keys() != set(qids):
            raise EvalError(f"ir_measures returned {label} for {len(values)} of {len(qids)} queries")
        per_query[label] = {q: values[q] for q in qids}
        means[label] = sum(values.values()) / len(qids)
    return EvalResult([s.label for s in specs], means, per_query, qids, _sorted_qids(run_only),
                      _sorted_qids(set(qrels) - common))
