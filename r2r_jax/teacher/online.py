"""The online driver: one worker per query in flight (bounded by --concurrency), calls one at a time.

A query's calls are sequential (each window depends on the one before); queries run in parallel. A query that
fails is listed and skipped; a budget stop, a fatal error or Ctrl-C sets the shared stop flag: calls in flight
finish and are cached, nothing new starts, and answers already cached still complete their queries.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.teacher.client import CallFailed, FatalError, Stopped, TeacherClient
from r2r_jax.teacher.cost import BudgetExceeded
from r2r_jax.teacher.generate import ChatRequest, QueryFailed, Teacher, drive
from r2r_jax.teacher.output import Failure, OrderedAppender

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    counts: Counter = field(default_factory=Counter)  # completed / failed / stopped
    failures: list[Failure] = field(default_factory=list)
    stopped: str | None = None  # why the run stopped early: budget, fatal error, interrupted
    fatal: bool = False
    interrupted: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, qid: str, error: str) -> None:
        with self._lock:
            self.failures.append(Failure(qid, error))
            self.counts["failed"] += 1

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def stop(self, reason: str, fatal: bool = False) -> None:
        with self._lock:
            if self.stopped is None:
                self.stopped, self.fatal = reason, fatal


def _answerer(client: TeacherClient):
    def answer(request: ChatRequest) -> dict:
        try:
            return client.complete(request.key, request.body)
        except CallFailed as e:
            raise QueryFailed(f"{request.stage}: {e}") from None
    return answer


def run_online(teacher: Teacher, client: TeacherClient, todo: list[QueryCandidates], appender: OrderedAppender,
               concurrency: int, progress: bool) -> RunOutcome:
    from tqdm import tqdm

    outcome = RunOutcome()
    answer = _answerer(client)

    def work(i: int, qc: QueryCandidates) -> None:
        record = None
        try:
            record = drive(teacher.teach_query(qc), answer)
            outcome.count("completed")
        except QueryFailed as e:
            outcome.fail(qc.qid, str(e))
        except BudgetExceeded as e:
            client.stop.set()
            outcome.stop(f"budget: {e}")
            outcome.count("stopped")
        except FatalError as e:
            client.stop.set()
            outcome.stop(f"fatal: {e}", fatal=True)
            outcome.count("stopped")
        except Stopped:
            outcome.count("stopped")
        finally:
            appender.resolve(i, record)

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="teach") as pool, \
            tqdm(total=len(todo), desc="teaching", unit="query", disable=None if progress else True) as bar:
        slots = {pool.submit(work, i, qc): i for i, qc in enumerate(todo)}
        pending = set(slots)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()  # a bug in a worker surfaces here, with its traceback
                bar.update(len(done))
        except KeyboardInterrupt:
            client.stop.set()
            log.warning("interrupted: waiting for the calls in flight to end (each within --timeout), so that "
                        "answers already paid for are kept")
            outcome.interrupted = True
            outcome.stop("interrupted (Ctrl-C)")
            for f in pending:
                if f.cancel():
                    outcome.count("stopped")
                    appender.resolve(slots[f], None)
    return outcome
