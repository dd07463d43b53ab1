"""Explanation quality as the Reason-to-Rank paper measures it: BLEU and ROUGE-L of generated reasons against
the teacher's, computed by the reference libraries (sacrebleu, rouge-score) rather than re-implemented, so the
numbers are comparable with published ones.

Scales are the libraries' own: ROUGE-L is an F1 in [0, 1], BLEU is in [0, 100]. Sentence BLEU uses sacrebleu's
defaults for single sentences (exponential smoothing, effective order, so a short exact match scores 100);
corpus BLEU pools n-gram counts over all pairs (the usual headline figure). An empty generation is a real
outcome, not missing data: it scores 0 on both, is counted in `n` and reported as `empty`.
No jax here: these are pure functions of strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

ROUGE_DESCRIPTION = "rougeL F1 (rouge-score, Porter stemmer, its default lower-case alphanumeric tokenizer)"


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@lru_cache(maxsize=1)
def _sentence_bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)  # what sacrebleu.sentence_bleu uses


@lru_cache(maxsize=1)
def _corpus_bleu():
    from sacrebleu.metrics import BLEU

    return BLEU()


def rouge_l(reference: str, generated: str) -> float:
    """Sentence-level ROUGE-L F1 in [0, 1]; 0 when either side has no word."""
    return float(_rouge().score(reference, generated)["rougeL"].fmeasure)


def sentence_bleu(reference: str, generated: str) -> float:
    """sacrebleu's sentence BLEU in [0, 100]; 0 for an empty generation."""
    if not generated.strip():
        return 0.0
    return float(_sentence_bleu().sentence_score(generated, [reference]).score)


def corpus_bleu(references: Sequence[str], generated: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU over aligned pairs, in [0, 100]; 0 for no pairs."""
    if len(references) != len(generated):
        raise ValueError(f"{len(references)} references but {len(generated)} generations")
    if not references:
        return 0.0
    return float(_corpus_bleu().corpus_score(list(generated), [list(references)]).score)


def bleu_signatures() -> dict[str, str]:
    """sacrebleu's signatures (tokenizer, smoothing, version): what a reader needs to reproduce the figures.
    sacrebleu only knows the reference count after scoring, so fresh metrics score one placeholder pair (one
    reference per generation, as here) and the shared ones stay untouched."""
    from sacrebleu.metrics import BLEU

    sentence, corpus = BLEU(effective_order=True), BLEU()
    sentence.sentence_score("a", ["a"])
    corpus.corpus_score(["a"], [["a"]])
    return {"sentence": str(sentence.get_signature()), "corpus": str(corpus.get_signature())}


@dataclass(frozen=True)
class PairScore:
    rouge_l: float
    bleu: float  # sentence BLEU


def score_pair(reference: str, generated: str) -> PairScore:
    return PairScore(rouge_l(reference, generated), sentence_bleu(reference, generated))


@dataclass(frozen=True)
class Summary:
    """Aggregate over a set of (reference, generated) pairs; the means are None when there are no pairs."""

    n: int
    empty: int  # generations with no text (scored 0)
    rouge_l: float | None  # mean sentence ROUGE-L F1
    bleu: float | None  # corpus BLEU
    sentence_bleu: float | None  # mean sentence BLEU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(references: Sequence[str], generated: Sequence[str],
              scores: Sequence[PairScore] | None = None) -> Summary:
    """n, empty count, mean ROUGE-L, corpus BLEU and mean sentence BLEU; `scores` (from `score_pair`) avoids
    scoring the pairs twice."""
    if len(references) != len(generated):
        raise ValueError(f"{len(references)} references but {len(generated)} generations")
    n = len(references)
    if n == 0:
        return Summary(0, 0, None, None, None)
    scores = list(scores) if scores is not None else [score_pair(r, g) for r, g in zip(references, generated,
                                                                                          strict=True)]
    if len(scores) != n:
        raise ValueError(f"{n} pairs but {len(scores)} scores")
    return Summary(
        n=n,
        empty=sum(1 for g in generated if not g.strip()),
        rouge_l=sum(s.rouge_l for s in scores) / n,
        bleu=corpus_bleu(references, generated),
        sentence_bleu=sum(s.bleu for s in scores) / n,
    )
