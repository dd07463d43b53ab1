"""A synthetic ranking task with a known answer, for learning tests.

Each query names one key word. Passages are filler words; a passage's relevance grade is the number of
times it contains the query's key word (2, 1 or 0). Non-relevant passages usually contain a *different* key
word, so "contains some key word" is no shortcut: the student has to match the query. Teacher rankings
follow the grades, and direct and comparison reasons are templated from the same facts.

`synthetic_tokenizer()` is a word-level tokenizer over the task's whole vocabulary (a few hundred ids, so a
tiny model's embedding table holds it) with the Llama-3 special tokens, and `synthetic_data_config()` gives
shapes that fit the task. Held-out dev queries reuse the key vocabulary with new passages and qids.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from r2r_jax.config import DataConfig
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, write_candidates
from r2r_jax.data.records import Candidate, Comparison, TeacherRecord, write_records
from r2r_jax.data.templates import BOS_TOKEN, EOT_TOKEN, PAD_TOKEN

KEYS = ("apple", "river", "engine", "garden", "violin", "planet", "castle", "forest", "rocket", "tiger",
        "island", "candle", "bridge", "mirror", "harbor", "desert", "piano", "lantern", "falcon", "glacier",
        "orchard", "compass", "meadow", "volcano")
FILLER = ("the", "a", "of", "and", "in", "on", "with", "near", "over", "under", "old", "new", "small", "large",
          "quiet", "bright", "dark", "warm", "cold", "green", "blue", "red", "simple", "strange", "every",
          "some", "many", "few", "was", "is", "seen", "found", "made", "kept", "left", "built", "told", "moved",
          "day", "night", "road", "town", "story", "people", "water", "stone", "window", "morning")
QUERY_TEMPLATES = ("{key}", "passages about {key}", "find {key}", "where is {key} mentioned")
_COUNT = {1: "once", 2: "twice"}
# Share of non-relevant passages that mention another key word. With distractors the student must match
# the query's key against the passage (an induction-style, same-token comparison that a LoRA on a *random*
# base does not learn in a CPU budget); at 0 "mentions the key word" can be read from the passage.
DISTRACTOR_RATE = 0.75
UNK = "<unk>"


def _direct_reason(key: str, grade: int, other: str | None) -> str:
    if grade:
        how = "so it is about" if grade == 2 else "so it is related to"
        return f"The passage mentions {key} {_COUNT[grade]}, {how} {key}."
    if other:
        return f"The passage does not mention {key}; it mentions {other} instead."
    return f"The passage does not mention {key}."


def _comparison_reason(key: str, first: int, second: int) -> str:
    def says(grade: int) -> str:
        return f"mentions {key} {_COUNT[grade]}" if grade else f"does not mention {key}"

    better = 1 if first > second else 2
    return (f"Passage [1] {says(first)} and passage [2] {says(second)}, "
            f"so passage [{better}] is more relevant.")


def _passage(rng: np.random.Generator, key: str, grade: int, distractor_rate: float) -> tuple[str, str | None]:
    words = list(rng.choice(FILLER, size=int(rng.integers(9, 14))))
    inserts = [key] * grade
    other = None
    if grade == 0 and rng.random() < distractor_rate:  # a distractor: some other key word, once or twice
        other = str(rng.choice([k for k in KEYS if k != key]))
        inserts = [other] * int(rng.integers(1, 3))
    for word in inserts:
        words.insert(int(rng.integers(0, len(words) + 1)), word)
    return " ".join(words), other


def _query(rng: np.random.Generator, n_candidates: int) -> tuple[str, str, list[int]]:
    key = str(rng.choice(KEYS))
    query = str(rng.choice(QUERY_TEMPLATES)).format(key=key)
    n_rel = int(rng.integers(1, max(2, n_candidates // 2)))  # >= 1 relevant, >= half non-relevant
    grades = [int(rng.integers(1, 3)) for _ in range(n_rel)] + [0] * (n_candidates - n_rel)
    return key, query, [int(g) for g in rng.permutation(grades)]


def make_synthetic_records(n_queries: int, seed: int = 0, n_candidates: int = 8,
                           distractor_rate: float = DISTRACTOR_RATE) -> list[TeacherRecord]:
    """Training records: candidates in random order, teacher ranking by grade (ties in random order),
    a direct reason per passage and one or two pairwise comparison reasons."""
    if n_candidates < 2:
        raise ValueError(f"n_candidates must be >= 2, got {n_candidates}")
    rng = np.random.default_rng([seed, 0])
    records = []
    for i in range(n_queries):
        qid = f"syn-train-{i}"
        key, query, grades = _query(rng, n_candidates)
        cands, reasons, grade_of = [], {}, {}
        for j, g in enumerate(grades):
            text, other = _passage(rng, key, g, distractor_rate)
            docid = f"{qid}-{j}"
            cands.append(Candidate(docid, text, float(-j)))
            reasons[docid] = _direct_reason(key, g, other)
            grade_of[docid] = g
        tiebreak = rng.permutation(len(cands))
        ranking = [cands[j].docid for j in sorted(range(len(cands)), key=lambda j: (-grades[j], tiebreak[j]))]
        # the top against a random worse passage, and the boundary pair (last relevant, first non-relevant)
        n_rel = sum(g > 0 for g in grades)
        lower = [d for d in ranking if grade_of[d] < grade_of[ranking[0]]]
        pairs = [(ranking[0], lower[int(rng.integers(0, len(lower)))]), (ranking[n_rel - 1], ranking[n_rel])]
        comparisons = []
        for better, worse in dict.fromkeys(pairs):
            a, b = (better, worse) if rng.random() < 0.5 else (worse, better)
            comparisons.append(Comparison([a, b], better, _comparison_reason(key, grade_of[a], grade_of[b])))
        teacher: dict[str, Any] = {"model": "synthetic", "prompt_version": "synthetic/1", "grades": grade_of}
        records.append(TeacherRecord(qid, query, cands, ranking, reasons, comparisons, teacher))
    return records


def make_synthetic_dev(n_queries: int, seed: int = 0, n_candidates: int = 8,
                       distractor_rate: float = DISTRACTOR_RATE,
                       ) -> tuple[list[QueryCandidates], dict[str, dict[str, int]]]:
    """Held-out queries (their own random stream and qids) in random candidate order, and their qrels
    {qid: {docid: grade}}."""
    if n_candidates < 2:
        raise ValueError(f"n_candidates must be >= 2, got {n_candidates}")
    rng = np.random.default_rng([seed, 1])
    queries, qrels = [], {}
    for i in range(n_queries):
        qid = f"syn-dev-{i}"
        key, query, grades = _query(rng, n_candidates)
        passages = []
        for j, g in enumerate(grades):
            passages.append(ScoredPassage(f"{qid}-{j}", _passage(rng, key, g, distractor_rate)[0], float(-j)))
        queries.append(QueryCandidates(qid, query, passages))
        qrels[qid] = {p.docid: g for p, g in zip(passages, grades, strict=True)}
    return queries, qrels


def synthetic_data_config(**overrides: Any) -> DataConfig:
    """Shapes that hold the task without truncation: G = 8, P = 40, T = 24, one comparison of Pc = 80."""
    base = DataConfig(group_size=8, max_prompt_len=40, max_target_len=24, comparisons_per_query=1,
                      max_comparison_prompt_len=80)
    return dataclasses.replace(base, **overrides)


def _vocabulary() -> list[str]:
    from tokenizers.pre_tokenizers import Whitespace

    cfg = DataConfig()
    texts = [cfg.prompt_template, cfg.comparison_template, *QUERY_TEMPLATES, *KEYS, *FILLER,
             _direct_reason("x", 1, None), _direct_reason("x", 2, None), _direct_reason("x", 0, "y"),
             _comparison_reason("x", 2, 1), _comparison_reason("x", 0, 1), " ".join("0123456789")]
    words = {w for t in texts for w, _ in Whitespace().pre_tokenize_str(t.replace("{", " ").replace("}", " "))}
    return sorted(words)


def synthetic_tokenizer():
    """Word-level `PreTrainedTokenizerFast`: specials first (BOS 0, eot 1, pad 2, unk 3), then the words;
    adds BOS itself like Llama-3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [BOS_TOKEN, EOT_TOKEN, PAD_TOKEN, UNK]
    vocab = {w: i for i, w in enumerate(specials + [w for w in _vocabulary() if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B",
                                                       special_tokens=[(BOS_TOKEN, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOT_TOKEN,
                                   pad_token=PAD_TOKEN, unk_token=UNK)


def write_synthetic_task(folder: Path, n_records: int, n_dev: int, seed: int = 0,
                         distractor_rate: float = DISTRACTOR_RATE) -> dict[str, dict[str, int]]:
    """The task as `r2r train` reads it: `teacher.jsonl`, the dev set `dev.jsonl` with its `qrels.txt`, and the
    tokenizer folder `tok/`, all in `folder`; returns the dev qrels."""
    folder.mkdir(parents=True, exist_ok=True)
    write_records(folder / "teacher.jsonl", make_synthetic_records(n_records, seed, distractor_rate=distractor_rate))
    items, qrels = make_synthetic_dev(n_dev, seed, distractor_rate=distractor_rate)
    write_candidates(folder / "dev.jsonl", items)
    (folder / "qrels.txt").write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in qrels.items() for d, g in docs.items()))
    synthetic_tokenizer().save_pretrained(folder / "tok")
    return qrels
