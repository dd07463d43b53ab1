"""The Batch API driver: the same conversations as online mode, answered a round at a time at batch prices.

Each round gathers the next unanswered requests of every query, uploads them as one JSONL file (split at the
API's limits), creates a batch, polls it, and ingests the results into the same response cache; then every
conversation advances as far as the cache answers it. Windows are sequential within a query, so a query
needs one round per window plus one for its comparisons (and one per re-ask). Submitted batches are recorded
in the cache database: a rerun after a kill resumes polling them instead of paying again.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.teacher.client import FatalError, Stopped, TeacherClient
from r2r_jax.teacher.cost import BudgetExceeded
from r2r_jax.teacher.generate import ChatRequest, QueryFailed, Teacher
from r2r_jax.teacher.online import RunOutcome
from r2r_jax.teacher.output import OrderedAppender

log = logging.getLogger("r2r_jax.teacher")
ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
MAX_FILE_BYTES = 190_000_000  # the API takes up to 200 MB per input file


class BatchRunner:
    def __init__(self, teacher: Teacher, client: TeacherClient, poll_interval: float, max_requests: int,
                 progress: bool):
        self.teacher, self.client, self.cache = teacher, client, client.cache
        self.poll_interval, self.max_requests, self.progress = poll_interval, max_requests, progress
        self.fresh: set[str] = set()  # answers ingested by this run (the rest are cache hits)
        self.reservations: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.error_counts: Counter = Counter()

    # -- the API -------------------------------------------------------------------------------------------
    def _submit(self, requests: list[ChatRequest]) -> str:
        lines = [json.dumps({"custom_id": r.key, "method": "POST", "url": ENDPOINT, "body": r.body},
                            ensure_ascii=False) for r in requests]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        api = self.client.api
        uploaded = self.client.with_retries(
            lambda: api.files.create(file=("r2r-teacher-requests.jsonl", data, "application/jsonl"),
                                     purpose="batch"), what="batch upload")
        batch = self.client.with_retries(
            lambda: api.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
                                       metadata={"tool": "r2r-jax teach"}), what="batch create")
        self.cache.add_batch(batch.id, [r.key for r in requests])
        log.debug("batch %s: %d requests submitted", batch.id, len(requests))
        return batch.id

    def _wait(self, batch_id: str, total: int) -> Any:
        from tqdm import tqdm

        api = self.client.api
        with tqdm(total=total, desc=f"batch {batch_id}", unit="req", disable=None if self.progress else True) as bar:
            while True:
                batch = self.client.with_retries(lambda: api.batches.retrieve(batch_id), what="batch status")
                counts = batch.request_counts
                if counts is not None:
                    bar.update(max(0, counts.completed + counts.failed - bar.n))
                if batch.status in TERMINAL:
                    return batch
                if self.client.stop.wait(self.poll_interval):
                    raise Stopped("the run is stopping")

    def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        api = self.client.api
        text = self.client.with_retries(lambda: api.files.content(file_id).text, what="batch download")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _finish(self, batch_id: str, keys: list[str]) -> None:
        """Wait for a batch, put every good answer into the cache, remember the errors of the others."""
        batch = self._wait(batch_id, len(keys))
        if batch.status == "failed":
            self.cache.close_batch(batch_id, "failed")
            details = "; ".join(e.message or "" for e in (batch.errors.data or [])) if batch.errors else ""
            raise FatalError(self.client.redact(f"batch {batch_id} failed: {details or 'no details'}"))
        got = set()
        for line in self._lines(batch.output_file_id) + self._lines(batch.error_file_id):
            key = line.get("custom_id")
            response = line.get("response") or {}
            body = response.get("body")
            if response.get("status_code") == 200 and isinstance(body, dict) and body.get("choices"):
                self.cache.put(key, body, body.get("model"), via="batch")
                self.client.meter.settle(self.reservations.pop(key, 0.0), body.get("usage"))
                self.client.stats.add("calls")
                self.fresh.add(key)
                got.add(key)
            else:
                error = line.get("error") or (body or {}).get("error") or {}
                self.errors[key] = self.client.redact(
                    f"HTTP {response.get('status_code')}: {error.get('message', 'no message')}"
                    if isinstance(error, dict) else str(error))
        for key in keys:
            if key not in got:
                self.errors.setdefault(key, f"no result (batch {batch.status})")
                self.error_counts[key] += 1
                self.client.stats.add("retry.batch_error")
                self.client.meter.release(self.reservations.pop(key, 0.0))
        self.cache.close_batch(batch_id, "ingested")

    # -- the rounds ----------------------------------------------------------------------------------------
    def _answer(self, key: str) -> dict[str, Any]:
        if key not in self.fresh:
            self.client.stats.add("cache_hits")
        response = self.cache.get(key)
        assert response is not None
        return response

    def run(self, todo: list[QueryCandidates], appender: OrderedAppender) -> RunOutcome:
        outcome = RunOutcome()
        try:
            for batch_id, keys in self.cache.open_batches():
                log.debug("resuming batch %s from an earlier run", batch_id)
                self._finish(batch_id, keys)
            self._rounds(todo, appender, outcome)
        except KeyboardInterrupt:
            self.client.stop.set()
            outcome.interrupted = True
            outcome.stop("interrupted (Ctrl-C); submitted batches are resumed by a rerun")
        except (Stopped, FatalError) as e:
            outcome.stop(f"fatal: {e}" if isinstance(e, FatalError) else str(e), fatal=isinstance(e, FatalError))
        for i in range(len(todo)):
            if not appender.is_resolved(i):
                outcome.count("stopped")
                appender.resolve(i, None)
        return outcome

    def _rounds(self, todo: list[QueryCandidates], appender: OrderedAppender, outcome: RunOutcome) -> None:
        convs = {i: self.teacher.teach_query(qc) for i, qc in enumerate(todo)}
        asked: dict[int, list[ChatRequest] | None] = dict.fromkeys(convs)
        while convs:
            for i in list(convs):  # advance every conversation as far as the cache answers it
                try:
                    reqs = asked[i] if asked[i] is not None else next(convs[i])
                    while all(self.cache.has(r.key) for r in reqs):
                        reqs = convs[i].send([self._answer(r.key) for r in reqs])
                    stuck = [r for r in reqs if self.error_counts[r.key] > self.client.policy.max_retries]
                    if stuck:
                        raise QueryFailed(f"{stuck[0].stage}: batch request failed {self.error_counts[stuck[0].key]} "
                                          f"times; last: {self.errors[stuck[0].key]}")
                    asked[i] = reqs
                except StopIteration as done:
                    outcome.count("completed")
                    appender.resolve(i, done.value)
                    del convs[i]
                except QueryFailed as e:
                    outcome.fail(todo[i].qid, str(e))
                    appender.resolve(i, None)
                    del convs[i]
            if not convs or outcome.stopped:
                return
            missing: dict[str, ChatRequest] = {}
            for i in convs:
                for r in asked[i] or []:
                    if not self.cache.has(r.key):
                        missing.setdefault(r.key, r)
            submit = []
            for key, r in missing.items():
                try:
                    self.reservations[key] = self.client.meter.reserve(r.body)
                except BudgetExceeded as e:
                    outcome.stop(f"budget: {e}")
                    break
                submit.append(r)
            batches = []
            chunk: list[ChatRequest] = []
            size = 0
            for r in submit:
                n = len(json.dumps(r.body, ensure_ascii=False).encode("utf-8")) + 200
                if chunk and (len(chunk) >= self.max_requests or size + n > MAX_FILE_BYTES):
                    batches.append(chunk)
                    chunk, size = [], 0
                chunk.append(r)
                size += n
            if chunk:
                batches.append(chunk)
            ids = [(self._submit(b), [r.key for r in b]) for b in batches]
            for batch_id, keys in ids:
                self._finish(batch_id, keys)

