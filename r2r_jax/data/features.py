"""The batch contract between teacher records and the train step (fixed shapes, numpy int32).

For B queries, group size G, prompt length P, target length T, C comparisons, comparison prompt length Pc:

| key                  | shape          | meaning                                                          |
|----------------------|----------------|------------------------------------------------------------------|
| `input_ids`          | [B, G+N+H, P+T]| scoring prompt left-padded to P (last prompt token at P-1), then |
|                      |                | the target " {direct_reason}<|eot_id|>" right-padded to T        |
| `attention_mask`     | [B, G, P+T]    | 1 = real token                                                   |
| `target_ids`         | [B, G, T]      | `input_ids[..., P:]`                                             |
| `target_mask`        | [B, G, T]      | 1 = reason token (eot included); all 0 without a reason          |
| `candidate_mask`     | [B, G+N+H]     | 1 = real candidate                                               |
| `teacher_rank`       | [B, G+N+H]     | 1 = teacher's best in the group, 0 = padding                     |
| `cmp_input_ids`      | [B, C, Pc+T]   | comparison prompt left-padded to Pc, reason right-padded to T    |
| `cmp_attention_mask` | [B, C, Pc+T]   |                                                                  |
| `cmp_target_ids`     | [B, C, T]      |                                                                  |
| `cmp_target_mask`    | [B, C, T]      | all 0 for a padding comparison                                   |

The last N + H rows of a group are negatives under this record's query: N passages of other records drawn
at random (`random_negatives`), then H of the record's own mined `negatives` (`hard_negatives`), ranked after
all of its candidates (tied among themselves) and without a reason target.
Padding positions hold the pad id. Fully padded rows (padding candidates, missing comparisons) have an
all-zero attention mask: the model must not turn a row without keys into NaN.
Records are tokenized once (`tokenize_records`); a batch is then only array copies.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from r2r_jax.config import DataConfig
from r2r_jax.config_io import ConfigError
from r2r_jax.data.negatives import NEGATIVE_POOL, ListPassages, PassageTable, negative_pool, negative_pools
from r2r_jax.data.records import Comparison, TeacherRecord
from r2r_jax.data.templates import (
    Render,
    TruncationStats,
    check_template,
    encode_targets,
    fit_prompts,
    render_comparison,
    render_prompt,
    special_ids,
)
from r2r_jax.data.verdict import with_verdict

DTYPE = np.int32
HARD_FILL_STREAM = 7_919  # seeds the random passages that fill hard-negative slots a record cannot fill


@dataclass(frozen=True)
class BatchShapes:
    group_size: int  # G
    prompt_len: int  # P
    target_len: int  # T
    comparisons: int  # C
    comparison_prompt_len: int  # Pc
    negatives: int = 0  # N: other records' passages per group, drawn at random
    hard_negatives: int = 0  # H: the record's mined negatives per group

    @property
    def rows(self) -> int:
        """Scored rows per query in a training batch: the teacher group plus the negatives, G + N + H."""
        return self.group_size + self.negatives + self.hard_negatives

    @classmethod
    def from_config(cls, cfg: DataConfig) -> BatchShapes:
        """The shapes `cfg` asks for; `DataConfig.validate` is the one check of its counts and lengths."""
        cfg.validate()
        return cls(cfg.group_size, cfg.max_prompt_len, cfg.max_target_len, cfg.comparisons_per_query,
                   cfg.max_comparison_prompt_len, cfg.random_negatives, cfg.hard_negatives)


def batch_spec(shapes: BatchShapes, batch_size: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every batch key, e.g. for shardings or ahead-of-time compilation."""
    b, g, p, t, c, pc = (batch_size, shapes.rows, shapes.prompt_len, shapes.target_len,
                         shapes.comparisons, shapes.comparison_prompt_len)
    dims = {
        "input_ids": (b, g, p + t), "attention_mask": (b, g, p + t), "target_ids": (b, g, t),
        "target_mask": (b, g, t), "candidate_mask": (b, g), "teacher_rank": (b, g),
        "cmp_input_ids": (b, c, pc + t), "cmp_attention_mask": (b, c, pc + t), "cmp_target_ids": (b, c, t),
        "cmp_target_mask": (b, c, t),
    }
    return {k: (v, np.dtype(DTYPE)) for k, v in dims.items()}


@dataclass
class TokenizedRecord:
    """One teacher record, tokenized: prompts and targets per candidate and per comparison."""

    qid: str
    prompts: list[np.ndarray]  # per candidate: <= P ids, BOS first
    targets: list[np.ndarray]  # per candidate: <= T ids, eot last; empty without a reason
    ranks: np.ndarray  # per candidate: teacher rank, 1 = best
    cmp_prompts: list[np.ndarray]
    cmp_targets: list[np.ndarray]
    # prompts of negatives under this query: the random pool (NEGATIVE_POOL x N other records' passages), then
    # every mined negative of the record when H > 0
    negatives: list[np.ndarray] = dataclasses.field(default_factory=list)


def _fit_all(tokenizer, args: list[tuple[str, list[str]]], render: Render | Sequence[Render], max_len: int,
             stats: TruncationStats | None = None) -> list[np.ndarray]:
    """Prompts for (query, passages) pairs (`render`: one function, or one per pair): rendered once,
    tokenized in one batch call, and refitted (batched) only where too long (`fit_prompts`)."""
    return [np.asarray(i, DTYPE) for i in fit_prompts(tokenizer, render, args, max_len, stats=stats)]


def tokenize_records(records: Sequence[TeacherRecord], tokenizer, cfg: DataConfig, *,
                     passages: PassageTable | None = None, start: int = 0) -> list[TokenizedRecord]:
    """Tokenize every prompt and target once, up front: one list of (record, prompt, target) items per kind,
    tokenized in a batch and handed back to the record that owns each item.

    `records` may be a slice of a larger record set (`record_store` streams them in chunks): `start` is the
    index of its first record and `passages` the whole set's passages, which random negatives draw from."""
    shapes = BatchShapes.from_config(cfg)
    check_template(cfg.prompt_template, ("query", "passage"), tokenizer)
    check_template(cfg.comparison_template, ("query", "passages"), tokenizer)
    eot = special_ids(tokenizer).eot

    def render(q, ps):
        return render_prompt(cfg.prompt_template, q, ps[0])

    pools = negative_pools(records, NEGATIVE_POOL * shapes.negatives, cfg.seed, passages=passages, start=start)
    if shapes.hard_negatives:
        if not any(rec.negatives for rec in records):
            raise ConfigError(f"data.hard_negatives={shapes.hard_negatives} but no record has mined `negatives`; "
                              "add them with `r2r mine-negatives`")
        for r, (rec, pool) in enumerate(zip(records, pools, strict=True)):
            pool.extend(c.text for c in rec.negatives)
            missing = shapes.hard_negatives - len(rec.negatives)
            if missing > 0:  # a query that matched too few passages: random passages fill its hard slots
                passages = ListPassages(records) if passages is None else passages
                pool.extend(negative_pool(rec, start + r, passages, missing, cfg.seed + HARD_FILL_STREAM))
    candidates, comparisons, negatives = [], [], []  # (owner record, (query, passages), reason, render)
    for r, (rec, pool) in enumerate(zip(records, pools, strict=True)):
        text_of = {c.docid: c.text for c in rec.candidates}
        candidates += [(r, (rec.query, [c.text]), direct_target(rec.direct_reasons.get(c.docid), cfg), render)
                       for c in rec.candidates]
        if shapes.comparisons:  # C = 0: no comparison rows at all
            for cmp in rec.comparisons:
                args, render_cmp = comparison_item(rec.query, text_of, cmp, cfg.comparison_template)
                comparisons.append((r, args, cmp.reason, render_cmp))
        negatives += [(r, (rec.query, [text]), None, render) for text in pool]

    out = [TokenizedRecord(rec.qid, [], [], np.asarray([rec.rank_of()[c.docid] for c in rec.candidates], DTYPE),
                           [], []) for rec in records]
    kinds = ((candidates, shapes.prompt_len, "prompts", "targets"),
             (comparisons, shapes.comparison_prompt_len, "cmp_prompts", "cmp_targets"),
             (negatives, shapes.prompt_len, "negatives", None))
    for items, max_len, prompt_field, target_field in kinds:
        prompts = _fit_all(tokenizer, [args for _, args, _, _ in items], [r for *_, r in items], max_len)
        targets = (encode_targets(tokenizer, [reason for _, _, reason, _ in items], shapes.target_len, eot)
                   if target_field else [None] * len(items))
        for (owner, *_), prompt, target in zip(items, prompts, targets, strict=True):
            getattr(out[owner], prompt_field).append(prompt)
            if target_field:
                getattr(out[owner], target_field).append(np.asarray(target, DTYPE))
    return out


def direct_target(reason: str | None, cfg: DataConfig) -> str | None:
    """The text a direct reason is trained as: the teacher's, opened with its verdict under
    `data.verdict_first`."""
    return with_verdict(reason) if cfg.verdict_first and reason else reason


class Fingerprint:
    """Hash of every token id and rank, fed record by record: a resumed loader checks it sees the same data."""

    def __init__(self):
        self._hash = hashlib.sha256()

    def update(self, rec: TokenizedRecord) -> None:
        self._hash.update(rec.qid.encode() + b"\0")
        for arr in (*rec.prompts, *rec.targets, rec.ranks, *rec.cmp_prompts, *rec.cmp_targets, *rec.negatives):
            self._hash.update(np.int64(arr.size).tobytes() + np.asarray(arr, DTYPE).tobytes())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:16]


def fingerprint(tokenized: Sequence[TokenizedRecord]) -> str:
    """`Fingerprint` of a whole tokenized record set."""
    h = Fingerprint()
    for rec in tokenized:
        h.update(rec)
    return h.hexdigest()


def select_group(ranks: np.ndarray, group_size: int, rng: np.random.Generator) -> np.ndarray:
    """Candidate indices for one group, in shuffled slot order.

    With more candidates than G: the teacher's top max(1, G // 4) always, plus one candidate drawn from
    each of the remaining G - top equal-width strata of the rest of the ranking (a spread of ranks).
    """
    order = np.argsort(ranks, kind="stable")  # candidate indices, best first
    n = len(order)
    if n <= group_size:
        chosen = order
    else:
        top = max(1, group_size // 4)
        rest = n - top
        bounds = np.linspace(0, rest, group_size - top + 1).astype(np.int64)
        picks = [top + int(rng.integers(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        chosen = np.concatenate([order[:top], order[picks]])
    return rng.permutation(chosen)


def _place(row_ids: np.ndarray, row_mask: np.ndarray, prompt: np.ndarray, target: np.ndarray, p: int) -> None:
    """Prompt left-padded to end at p - 1, target right-padded after it (rows arrive pad-filled)."""
    row_ids[p - len(prompt):p] = prompt
    row_mask[p - len(prompt):p] = 1
    row_ids[p:p + len(target)] = target
    row_mask[p:p + len(target)] = 1


def build_batch(tokenized: Sequence[TokenizedRecord], items: Sequence[tuple[int, int]], shapes: BatchShapes,
                pad_id: int, seed: int) -> dict[str, np.ndarray]:
    """The batch for `items` = [(record index, epoch), ...]; a pure function of its arguments."""
    spec = batch_spec(shapes, len(items))
    batch = {k: np.zeros(shape, dtype) for k, (shape, dtype) in spec.items()}
    for k in ("input_ids", "target_ids", "cmp_input_ids", "cmp_target_ids"):
        batch[k][...] = pad_id
    p, pc = shapes.prompt_len, shapes.comparison_prompt_len
    for b, (index, epoch) in enumerate(items):
        rec = tokenized[index]
        rng = np.random.default_rng([seed, index, epoch])
        chosen = select_group(rec.ranks, shapes.group_size, rng)
        group_rank = np.empty(len(chosen), DTYPE)
        group_rank[np.argsort(rec.ranks[chosen], kind="stable")] = np.arange(1, len(chosen) + 1)
        for g, (ci, r) in enumerate(zip(chosen, group_rank, strict=True)):
            _place(batch["input_ids"][b, g], batch["attention_mask"][b, g], rec.prompts[ci], rec.targets[ci], p)
            batch["target_mask"][b, g, :len(rec.targets[ci])] = 1
            batch["candidate_mask"][b, g] = 1
            batch["teacher_rank"][b, g] = r
        m = len(rec.cmp_prompts)
        picked = rng.permutation(m)[:shapes.comparisons] if m > shapes.comparisons else np.arange(m)
        for c, k in enumerate(picked):
            _place(batch["cmp_input_ids"][b, c], batch["cmp_attention_mask"][b, c], rec.cmp_prompts[k],
                   rec.cmp_targets[k], pc)
            batch["cmp_target_mask"][b, c, :len(rec.cmp_targets[k])] = 1
        # negatives are drawn after the comparisons, so a run without them keeps its batches
        if shapes.negatives or shapes.hard_negatives:
            empty = np.zeros((0,), DTYPE)
            n_random = NEGATIVE_POOL * shapes.negatives  # the pool's random part comes first
            picks = [*rng.choice(n_random, size=shapes.negatives, replace=False)] if shapes.negatives else []
            if shapes.hard_negatives:  # drawn after the random ones, so adding them keeps those
                mined = len(rec.negatives) - n_random
                picks += [n_random + k for k in rng.choice(mined, size=shapes.hard_negatives, replace=False)]
            for n, k in enumerate(picks):
                g = shapes.group_size + n
                _place(batch["input_ids"][b, g], batch["attention_mask"][b, g], rec.negatives[k], empty, p)
                batch["candidate_mask"][b, g] = 1
                batch["teacher_rank"][b, g] = len(chosen) + 1
    batch["target_ids"][...] = batch["input_ids"][..., p:]
    batch["cmp_target_ids"][...] = batch["cmp_input_ids"][..., pc:]
    return batch


def about_index(docids: Sequence[str], about: str | None) -> int | None:
    """1-based position of the passage a listwise reason explains, as its comparison prompt numbers it."""
    return None if about is None else list(docids).index(about) + 1


def comparison_item(query: str, text_of: Mapping[str, str], cmp: Comparison,
                    template: str) -> tuple[tuple[str, list[str]], Render]:
    """The one comparison prompt of training and serving, as ((query, passages), render) for `fit_prompts`:
    `cmp`'s passages listed as [1], [2], ... in `cmp.docids` order, and for a listwise reason (`about` set)
    the closing line that names the passage it explains. Training renders every teacher comparison through
    it and `r2r rerank` every comparison it explains (rerank/explain_plan.py builds those `Comparison`s), so
    a prompt the student answers at serve time is, token for token, one it could have met in training."""
    about = about_index(cmp.docids, cmp.about)
    return (query, [text_of[d] for d in cmp.docids]), lambda q, ps: render_comparison(template, q, ps, about)


def left_pad(rows: Sequence[Sequence[int]], max_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) [len(rows), max_len]: each row right-aligned after `pad_id`s (scoring prompts' layout)."""
    ids = np.full((len(rows), max_len), pad_id, DTYPE)
    mask = np.zeros((len(rows), max_len), DTYPE)
    for i, row in enumerate(rows):
        ids[i, max_len - len(row):] = row
        mask[i, max_len - len(row):] = 1
    return ids, mask


def encode_prompts(tokenizer, query: str, passages: Sequence[str], template: str,
                   max_len: int, stats: TruncationStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inference scoring prompts: (input_ids [N, P], attention_mask [N, P]), left-padded, the same tokens as
    the prompt part of a training row, so the score is read at index P - 1."""
    check_template(template, ("query", "passage"), tokenizer)

    def render(q, ps):
        return render_prompt(template, q, ps[0])

    rows = _fit_all(tokenizer, [(query, [p]) for p in passages], render, max_len, stats)
    return left_pad([r.tolist() for r in rows], max_len, special_ids(tokenizer).pad)


def encode_comparison_prompts(tokenizer, query: str, text_of: Mapping[str, str], comparisons: Sequence[Comparison],
                              template: str, max_len: int,
                              stats: TruncationStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Comparison prompts for decoding (`comparison_item`, fitted as training fits them), left-padded to
    `max_len`; decoding continues at index max_len. `text_of` maps each docid to its passage text."""
    check_template(template, ("query", "passages"), tokenizer)
    items = [comparison_item(query, text_of, cmp, template) for cmp in comparisons]
    rows = _fit_all(tokenizer, [args for args, _ in items], [render for _, render in items], max_len, stats)
    return left_pad([r.tolist() for r in rows], max_len, special_ids(tokenizer).pad)
