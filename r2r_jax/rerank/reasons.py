"""The student's reasons for held-out teacher records, aligned with the teacher's, for BLEU / ROUGE-L.

Each reason is decoded from exactly the prompt training attached it to, so the comparison is like for like:
a direct reason continues the candidate's scoring prompt, a comparison reason continues the comparison prompt
listing the comparison's passages in its own docid order (the teacher's order, as in training). Templates and
lengths are the student's (`RerankStudent.prompts`). Prompts of all queries are pooled and decoded greedily
in length-sorted batches (`decode_prompts`), so each (batch, length) shape compiles once and the text does
not depend on the batch size.

Only teacher reasons with text are evaluated: a candidate without a direct reason (or with an empty one) has
nothing to compare against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import groupby
from typing import TYPE_CHECKING

import numpy as np

from r2r_jax.data.records import Comparison, TeacherRecord
from r2r_jax.eval.explanations import KINDS  # one list of reason kinds

if TYPE_CHECKING:  # jax loads only when decoding starts: input errors are reported in a second, not ten
    from jax.sharding import Mesh

    from r2r_jax.trained.loading import RerankStudent


def parse_kinds(spec: str) -> tuple[str, ...]:
    """'direct,comparison' -> ('direct', 'comparison'), in KINDS order; unknown or no kinds raise ValueError."""
    names = [k.strip() for k in spec.split(",") if k.strip()]
    unknown = [k for k in names if k not in KINDS]
    if unknown or not names:
        raise ValueError(f"--kinds takes a comma-separated subset of {', '.join(KINDS)}, got {spec!r}")
    return tuple(k for k in KINDS if k in names)


@dataclass(frozen=True)
class ReasonItem:
    """One teacher reason and (once decoded) the student's for the same prompt."""

    qid: str
    kind: str  # "direct" | "comparison"
    docids: tuple[str, ...]  # direct: (docid,); comparison: the passages in prompt order
    preferred: str | None  # comparison: the teacher's choice (None for direct or no preference)
    reference: str
    generated: str = ""
    about: str | None = None  # comparison: the passage a listwise reason explains


def collect_reasons(records: Sequence[TeacherRecord], kinds: Sequence[str] = KINDS,
                    max_queries: int | None = None) -> list[ReasonItem]:
    """The teacher reasons to evaluate, in record order: per query its direct reasons in candidate order, then
    its comparisons in record order. `max_queries` keeps the first N records; a qid in two of them raises
    ValueError (the per-query results are keyed by qid)."""
    chosen = records if max_queries is None else records[:max_queries]
    seen: set[str] = set()
    for rec in chosen:
        if rec.qid in seen:
            raise ValueError(f"qid {rec.qid!r} appears in more than one record")
        seen.add(rec.qid)
    items: list[ReasonItem] = []
    for rec in chosen:
        if "direct" in kinds:
            items += [ReasonItem(rec.qid, "direct", (c.docid,), None, rec.direct_reasons[c.docid])
                      for c in rec.candidates if rec.direct_reasons.get(c.docid, "").strip()]
        if "comparison" in kinds:
            items += [ReasonItem(rec.qid, "comparison", tuple(cmp.docids), cmp.preferred, cmp.reason, about=cmp.about)
                      for cmp in rec.comparisons if cmp.reason.strip()]
    return items


def _prompts(student: RerankStudent, records: Sequence[TeacherRecord], items: Sequence[ReasonItem],
             kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompts [len(items of kind), L] in item order, encoded query by query."""
    from r2r_jax.data.features import encode_comparison_prompts, encode_prompts  # jax: only once decoding starts

    tok, pr = student.tokenizer, student.prompts
    by_qid = {rec.qid: rec for rec in records}
    ids, mask = [], []
    for qid, group in groupby((it for it in items if it.kind == kind), key=lambda it: it.qid):
        rec, mine = by_qid[qid], list(group)
        text = {c.docid: c.text for c in rec.candidates}
        if kind == "direct":
            i, m = encode_prompts(tok, rec.query, [text[it.docids[0]] for it in mine], pr.prompt_template,
                                  pr.max_prompt_len)
        else:
            cmps = [Comparison(list(it.docids), it.preferred, it.reference, it.about) for it in mine]
            i, m = encode_comparison_prompts(tok, rec.query, text, cmps, pr.comparison_template,
                                             pr.max_comparison_prompt_len)
        ids.append(i)
        mask.append(m)
    return np.concatenate(ids), np.concatenate(mask)


def generate_reasons(student: RerankStudent, records: Sequence[TeacherRecord], items: Sequence[ReasonItem],
                     max_new_tokens: int, batch_size: int, mesh: Mesh | None = None,
                     progress: Callable[[int], None] | None = None) -> list[ReasonItem]:
    """`items` (from `collect_reasons` over `records`) with `generated` filled by greedy decoding."""
    import jax

    from r2r_jax.data.templates import special_ids  # transformers: only once decoding starts
    from r2r_jax.rerank.explain import decode_prompts, reason_text, stop_ids  # jax: only once decoding starts

    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens} and {batch_size}")
    if not student.has_lm_head:
        raise ValueError(f"{student.source} has no LM head: generating reasons needs the causal-lm head")
    tok = student.tokenizer
    stop = stop_ids(tok)
    generate = student.generate_fn(max_new_tokens, stop, special_ids(tok).pad)
    mesh = student.mesh if mesh is None else mesh
    rng = jax.random.key(0)  # unused by greedy decoding; the decoder's signature takes one
    out = list(items)
    for n, kind in enumerate(KINDS):
        rows = [i for i, it in enumerate(items) if it.kind == kind]
        if not rows:
            continue
        input_ids, attention_mask = _prompts(student, records, items, kind)
        tokens = decode_prompts(generate, student.variables, input_ids, attention_mask, batch_size, mesh,
                                jax.random.fold_in(rng, n), 0.0, progress)
        for i, t in zip(rows, tokens, strict=True):
            out[i] = replace(items[i], generated=reason_text(tok, t, stop))
    return out
