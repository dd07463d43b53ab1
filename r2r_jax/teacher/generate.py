"""One query's teacher conversation, as a generator of requests: sliding windows, then comparisons.

`teach_query` yields lists of `ChatRequest`s and is sent the list of responses back; it returns the
`TeacherRecord`. Requests depend only on the candidates, the settings and earlier responses, so a rerun
that replays cached responses asks exactly the same requests again (same hashes: nothing is paid twice).
The same generator serves the online driver (answers one call at a time) and the Batch API driver (answers
the next requests of every query in one batch per round).

Ranking follows RankGPT: windows of `window` passages slide from the bottom of the top-k to the top by
`step`, each window's answer reorders those positions; a passage's direct reason comes from the last window
that showed it. Comparison reasons are asked per pair, for adjacent pairs of the final top-m or for pairs
sampled from it (seeded by the qid).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.data.records import Candidate, Comparison, TeacherRecord
from r2r_jax.teacher.cache import request_key
from r2r_jax.teacher.parse import Unusable, message_of, parse_comparison, parse_ranking
from r2r_jax.teacher.prompts import Prompt, format_passage, load_prompt
from r2r_jax.teacher.summary import Stats

PAIR_ORDERS = ("first-stage", "ranking")


@dataclass(frozen=True)
class TeachSettings:
    model: str
    prompt_version: str = "v1"
    top_k: int = 20
    window: int = 20
    step: int = 10
    top_m: int = 5
    pairs: str = "adjacent"  # or "sampled"
    # how a compared pair is shown: in first-stage order, so [1] says nothing about the teacher's ranking, or
    # (records before this setting existed) in the ranking's order, the better-ranked passage as [1]
    pair_order: str = "first-stage"
    num_pairs: int = 5  # sampled pairs per query
    seed: int = 0
    max_words: int = 300
    temperature: float = 0.0
    max_tokens: int = 4096
    response_format: str = "json_schema"
    max_reasks: int = 2

    def check(self) -> None:
        if self.top_k < 1 or self.window < 2 or not 1 <= self.step <= self.window:
            raise ValueError("need --top-k >= 1, --window >= 2 and 1 <= --step <= --window")
        if self.top_m < 0 or self.max_reasks < 0 or self.max_tokens < 1:
            raise ValueError("need --top-m >= 0, --max-reasks >= 0 and --max-tokens >= 1")
        if self.pairs not in ("adjacent", "sampled"):
            raise ValueError(f"--pairs must be adjacent or sampled, not {self.pairs!r}")
        if self.pair_order not in PAIR_ORDERS:
            raise ValueError(f"--pair-order must be one of {', '.join(PAIR_ORDERS)}, not {self.pair_order!r}")


@dataclass(frozen=True)
class ChatRequest:
    key: str
    body: dict[str, Any]
    qid: str
    stage: str  # "rank" or "compare"


class QueryFailed(RuntimeError):
    """No usable answer for a query even after re-asking."""


Conversation = Generator[list[ChatRequest], list[dict[str, Any]], Any]


def windows(k: int, window: int, step: int) -> list[tuple[int, int]]:
    """(start, end) spans from the bottom of the top-k to the top; the last one always starts at 0."""
    spans, end = [], k
    while True:
        start = max(0, end - window)
        spans.append((start, end))
        if start == 0:
            return spans
        end -= step


def comparison_pairs(n: int, settings: TeachSettings, qid: str) -> list[tuple[int, int]]:
    """Rank positions (i < j) to compare among the first min(n, top_m) of the final ranking."""
    m = min(n, settings.top_m)
    if settings.pairs == "adjacent":
        return [(i, i + 1) for i in range(m - 1)]
    every = [(i, j) for i in range(m) for j in range(i + 1, m)]
    rng = random.Random(f"{settings.seed}:{qid}")
    return sorted(rng.sample(every, min(settings.num_pairs, len(every))))


class Teacher:
    """Builds requests and records for one run's settings (prompts loaded once)."""

    def __init__(self, settings: TeachSettings, stats: Stats):
        settings.check()
        self.settings, self.stats = settings, stats
        self.rank_prompt = load_prompt("rank", settings.prompt_version)
        # the pairwise stage only when it runs: a version may have no compare prompt (the authors' preset)
        self.compare_prompt = load_prompt("compare", settings.prompt_version) if settings.top_m > 1 else None
        self.rank_prompt.response_format(settings.response_format)  # fail early on an unknown format

    def request(self, prompt: Prompt, messages: list[dict[str, str]], qid: str, stage: str) -> ChatRequest:
        s = self.settings
        body: dict[str, Any] = {"model": s.model, "messages": messages, "temperature": s.temperature,
                                "max_completion_tokens": s.max_tokens}
        fmt = prompt.response_format(s.response_format)
        if fmt is not None:
            body["response_format"] = fmt
        return ChatRequest(request_key(body), body, qid, stage)

    def rank_messages(self, query: str, texts: list[str]) -> list[dict[str, str]]:
        passages = "\n".join(f"[{i + 1}] {format_passage(t, self.settings.max_words)}" for i, t in enumerate(texts))
        return self.rank_prompt.messages(query=query, num=len(texts), passages=passages)

    def compare_messages(self, query: str, first: str, second: str) -> list[dict[str, str]]:
        w = self.settings.max_words
        return self.compare_prompt.messages(query=query, passage_1=format_passage(first, w),
                                            passage_2=format_passage(second, w))

    def _ask(self, prompt: Prompt, convs: list[list[dict[str, str]]], parse: Callable[[str | None, str | None], Any],
             qid: str, stage: str, trace: Counter) -> Conversation:
        """Ask every conversation; re-ask those with unusable answers, up to `max_reasks` times each.
        `trace` collects calls, tokens and re-asks for the record."""
        results: list[Any] = [None] * len(convs)
        pending = list(range(len(convs)))
        problem = ""
        for attempt in range(self.settings.max_reasks + 1):
            responses = yield [self.request(prompt, convs[i], qid, stage) for i in pending]
            still = []
            for i, response in zip(pending, responses, strict=True):
                u = response.get("usage") or {}
                trace.update(calls=1, prompt_tokens=int(u.get("prompt_tokens") or 0),
                             completion_tokens=int(u.get("completion_tokens") or 0))
                content = None
                try:
                    content, finish = message_of(response)
                    results[i] = parse(content, finish)
                except Unusable as e:
                    self.stats.add(f"unusable.{e.kind}")
                    problem = str(e)
                    convs[i] = convs[i] + [{"role": "assistant", "content": content or ""},
                                           prompt.reask_message(problem)]
                    still.append(i)
            pending = still
            if not pending:
                return results
            if attempt < self.settings.max_reasks:
                self.stats.add("reasks", len(pending))
                trace["reasks"] += len(pending)
        raise QueryFailed(f"{stage}: no usable answer after {self.settings.max_reasks} re-asks ({problem})")

    def teach_query(self, qc: QueryCandidates) -> Conversation:
        """The conversation for one query; returns its `TeacherRecord`."""
        s = self.settings
        cands = qc.candidates[:s.top_k]
        if not cands:
            raise QueryFailed("rank: the query has no candidates")
        trace: Counter = Counter()
        repairs: Counter = Counter()
        order = list(range(len(cands)))
        reasons: dict[int, str] = {}
        comparisons = []
        for start, end in windows(len(cands), s.window, s.step):
            shown = order[start:end]
            conv = self.rank_messages(qc.query, [cands[i].text for i in shown])
            n = len(shown)
            [answer] = yield from self._ask(self.rank_prompt, [conv], lambda c, f, n=n: parse_ranking(c, f, n),
                                            qc.qid, "rank", trace)
            repairs.update(answer.repairs)
            order[start:end] = [shown[p] for p in answer.order]
            reasons.update({shown[p]: r for p, r in answer.reasons.items()})
            # listwise reasons judge a passage against the window as the teacher saw it (its [1]..[n])
            window_docids = [cands[i].docid for i in shown]
            comparisons += [Comparison(window_docids, None, r, about=cands[shown[p]].docid)
                            for p, r in sorted(answer.listwise.items()) if n > 1]
        for kind, n in repairs.items():
            self.stats.add(f"repair.{kind}", n)

        shown_pairs = [(order[i], order[j]) if s.pair_order == "ranking" else tuple(sorted((order[i], order[j])))
                       for i, j in comparison_pairs(len(order), s, qc.qid)]  # candidate indices, as shown
        convs = [self.compare_messages(qc.query, cands[a].text, cands[b].text) for a, b in shown_pairs]
        verdicts = (yield from self._ask(self.compare_prompt, convs, parse_comparison, qc.qid, "compare", trace)
                    ) if convs else []
        for (first, second), (preferred, reason) in zip(shown_pairs, verdicts, strict=True):
            a, b = cands[first].docid, cands[second].docid
            comparisons.append(Comparison([a, b], {1: a, 2: b}.get(preferred), reason))

        teacher = {"model": s.model, "prompt_version": s.prompt_version, "top_k": s.top_k, "window": s.window,
                   "step": s.step, "pair_order": s.pair_order,
                   "usage": {k: trace[k] for k in ("calls", "prompt_tokens", "completion_tokens")}}
        if repairs:
            teacher["repairs"] = dict(sorted(repairs.items()))
        if trace["reasks"]:
            teacher["reasks"] = trace["reasks"]
        return TeacherRecord(
            qid=qc.qid, query=qc.query,
            candidates=[Candidate(c.docid, c.text, c.score) for c in cands],
            ranking=[cands[i].docid for i in order],
            direct_reasons={cands[i].docid: reasons[i] for i in order if i in reasons},
            comparisons=comparisons, teacher=teacher)


def drive(conversation: Conversation, answer: Callable[[ChatRequest], dict[str, Any]]) -> Any:
    """Run a conversation to its end, answering each request with `answer` in order."""
    try:
        requests = next(conversation)
        while True:
            requests = conversation.send([answer(r) for r in requests])
    except StopIteration as done:
        return done.value
