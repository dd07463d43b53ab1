"""Explanations for a reranked list, decoded with the KV-cache decoder: a direct reason for each explained
rank, and comparison reasons in the format the student trained on (`explain_plan`: listwise windows or pairs).

Direct reasons continue the scoring prompt itself (training put " {reason}<|eot_id|>" right after it).
Comparison reasons continue the prompt `data.features.comparison_item` renders for the plan's `Comparison`s,
the function that renders every teacher comparison in training. Prompts of all queries are pooled and batched
by length like scoring, so each (batch, length) shape compiles once. Greedy decoding (the default) is
deterministic; sampling is seeded per batch, so it is reproducible for the same inputs and batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import jax
import numpy as np
from jax.sharding import Mesh

from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.data.features import encode_comparison_prompts, encode_prompts
from r2r_jax.data.templates import special_ids
from r2r_jax.inference.batches import length_sorted_batches
from r2r_jax.parallel.batch import to_host
from r2r_jax.rerank.explain_plan import ExplainPlan, comparisons_for
from r2r_jax.trained.loading import RerankStudent


@dataclass(frozen=True)
class DirectReason:
    rank: int
    docid: str
    reason: str


@dataclass(frozen=True)
class ComparisonReason:
    """One comparison reason; `docids` and their final `ranks` in prompt order ([1], [2], ...), and for a
    listwise reason the passage it explains (`about`)."""

    ranks: tuple[int, ...]
    docids: tuple[str, ...]
    reason: str
    about: str | None = None

    def to_dict(self) -> dict:
        out = {"ranks": list(self.ranks), "docids": list(self.docids), "reason": self.reason}
        return out if self.about is None else {**out, "about": self.about}

    @classmethod
    def from_dict(cls, d: dict) -> ComparisonReason:
        return cls(tuple(d["ranks"]), tuple(d["docids"]), d["reason"], d.get("about"))


@dataclass(frozen=True)
class QueryExplanation:
    direct: list[DirectReason]
    comparisons: list[ComparisonReason]

    def to_dict(self) -> dict:
        return {"direct_reasons": [asdict(d) for d in self.direct],
                "comparisons": [c.to_dict() for c in self.comparisons]}

    @classmethod
    def from_dict(cls, d: dict) -> QueryExplanation:
        return cls([DirectReason(**r) for r in d["direct_reasons"]],
                   [ComparisonReason.from_dict(c) for c in d["comparisons"]])


def decode_prompts(generate: Callable, variables, input_ids: np.ndarray, attention_mask: np.ndarray,
                   batch_size: int, mesh: Mesh | None, rng: jax.Array, temperature: float = 0.0,
                   progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Generated ids (end token excluded) for each left-padded prompt row, in row order."""
    out: list[np.ndarray] = [np.zeros((0,), np.int32)] * input_ids.shape[0]
    batches = length_sorted_batches(input_ids, attention_mask, batch_size, mesh)
    for calls, (chunk, ids, mask) in enumerate(batches):
        tokens, lengths = generate(variables, ids, mask, jax.random.fold_in(rng, calls), temperature)
        tokens, lengths = to_host(tokens), to_host(lengths)
        for j, row in enumerate(chunk):
            out[row] = tokens[j, : int(lengths[j])]
        if progress is not None:
            progress(len(chunk))
    return out


def stop_ids(tokenizer) -> set[int]:
    """The ids that end a generated reason: the targets' end token (<|eot_id|>, else eos) and eos itself."""
    eos = tokenizer.eos_token_id
    return {special_ids(tokenizer).eot} | ({eos} if eos is not None else set())


def reason_text(tokenizer, ids: np.ndarray, stop: set[int]) -> str:
    """A generated reason's text: stop ids and special tokens dropped, whitespace trimmed."""
    return tokenizer.decode([int(t) for t in ids if int(t) not in stop], skip_special_tokens=True).strip()


def explain_rankings(student: RerankStudent, ranked: Sequence[tuple[QueryCandidates, Sequence[str]]],
                     plan: ExplainPlan, max_new_tokens: int, batch_size: int, mesh: Mesh | None = None,
                     temperature: float = 0.0, seed: int = 0,
                     progress: Callable[[int], None] | None = None) -> dict[str, QueryExplanation]:
    """qid -> reasons for the ranks `plan` names in each query's final ranking (`ranked`: candidates in
    first-stage order + docids best first); ranks past a list's end are skipped. `rerank` has checked that the
    student has an LM head."""
    tok, pr = student.tokenizer, student.prompts
    ids = special_ids(tok)
    stop = stop_ids(tok)
    direct_rows, cmp_rows, direct_ids, direct_mask, cmp_ids, cmp_mask = [], [], [], [], [], []
    for qc, order in ranked:
        text = {c.docid: c.text for c in qc.candidates}
        rank_of = {d: r for r, d in enumerate(order, start=1)}
        explained = [r for block in plan.blocks(len(order)) for r in block]
        if not explained:
            continue
        i, m = encode_prompts(tok, qc.query, [text[order[r - 1]] for r in explained], pr.prompt_template,
                              pr.max_prompt_len)
        direct_ids.append(i)
        direct_mask.append(m)
        direct_rows.extend((qc.qid, r, order[r - 1]) for r in explained)
        cmps = comparisons_for(plan, order, {c.docid: k for k, c in enumerate(qc.candidates)})
        if cmps:
            i, m = encode_comparison_prompts(tok, qc.query, text, cmps, pr.comparison_template,
                                             pr.max_comparison_prompt_len)
            cmp_ids.append(i)
            cmp_mask.append(m)
            cmp_rows.extend((qc.qid, tuple(rank_of[d] for d in c.docids), tuple(c.docids), c.about) for c in cmps)
    generate = student.generate_fn(max_new_tokens, stop, ids.pad)
    rng = jax.random.key(seed)
    out = {qc.qid: QueryExplanation([], []) for qc, _ in ranked}
    if direct_rows:
        texts = decode_prompts(generate, student.variables, np.concatenate(direct_ids), np.concatenate(direct_mask),
                               batch_size, mesh, jax.random.fold_in(rng, 0), temperature, progress)
        for (qid, rank, docid), t in zip(direct_rows, texts, strict=True):
            out[qid].direct.append(DirectReason(rank, docid, reason_text(tok, t, stop)))
    if cmp_rows:
        texts = decode_prompts(generate, student.variables, np.concatenate(cmp_ids), np.concatenate(cmp_mask),
                               batch_size, mesh, jax.random.fold_in(rng, 1), temperature, progress)
        for (qid, ranks, docids, about), t in zip(cmp_rows, texts, strict=True):
            out[qid].comparisons.append(ComparisonReason(ranks, docids, reason_text(tok, t, stop), about))
    return out
