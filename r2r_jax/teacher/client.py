"""The teacher endpoint: any OpenAI-compatible server through the official `openai` client.

The client's own retries are off; ours are explicit so that they can be counted, honour `Retry-After`,
stop promptly on Ctrl-C or a budget stop, and classify errors: transient (429, 5xx, timeout, dropped
connection, an unreadable body) are retried with exponential backoff and full jitter — a timeout or a 429
also halves the calls in flight (`pacing.InFlightLimit`) and waits at least half the backoff; a request the server
rejects (400, 422, ...) fails that query; authentication and missing-model errors stop the run. The API key
lives only inside the `openai` client; every message that leaves this module is scrubbed of it.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import openai

from r2r_jax.teacher.cache import ResponseCache
from r2r_jax.teacher.cost import CostMeter
from r2r_jax.teacher.pacing import InFlightLimit
from r2r_jax.teacher.summary import Stats

log = logging.getLogger("r2r_jax.teacher")
T = TypeVar("T")
MAX_RETRY_AFTER = 600.0
BUSY = ("timeout", "rate_limited")  # error kinds that mean the server is overloaded: fewer calls in flight, a real wait


class CallFailed(RuntimeError):
    """This request cannot succeed (rejected, or retries exhausted); its query fails, the run goes on."""


class FatalError(RuntimeError):
    """Nothing can succeed (bad key, unknown model or endpoint); the run stops."""


class Stopped(RuntimeError):
    """The run is stopping (Ctrl-C, budget, a fatal error elsewhere); no new calls start."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 120.0

    def delay(self, attempt: int, retry_after: float | None, busy: bool = False) -> float:
        """Full jitter in [0, cap]; a busy server (timeout, 429) gets at least half the cap, never an
        immediate re-send."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER) * random.uniform(1.0, 1.1)
        cap = min(self.backoff_max, self.backoff_base * 2 ** attempt)
        return random.uniform(cap / 2 if busy else 0.0, cap)


def retry_after_seconds(headers: Any) -> float | None:
    """`retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _classify(e: Exception) -> tuple[str, str]:
    """-> (kind, description). kind: a retry counter name, 'rejected' or 'fatal'."""
    if isinstance(e, openai.APITimeoutError):
        return "timeout", "the call timed out"
    if isinstance(e, openai.APIConnectionError):
        return "connection", f"connection error ({type(e.__cause__ or e).__name__})"
    if isinstance(e, openai.APIStatusError):
        desc = e.message if str(e.status_code) in e.message else f"HTTP {e.status_code}: {e.message}"
        if e.status_code == 429:
            return "rate_limited", desc
        if e.status_code >= 500 or e.status_code in (408, 409):
            return "server_error", desc
        if e.status_code in (401, 403, 404):
            return "fatal", desc
        return "rejected", desc
    if isinstance(e, (openai.APIResponseValidationError, ValueError)):
        return "bad_response", f"unreadable response ({type(e).__name__})"
    raise e


class TeacherClient:
    """Cache-first chat completions with retries, a cost meter and a stop flag shared by all workers."""

    def __init__(self, base_url: str | None, api_key: str, cache: ResponseCache, meter: CostMeter,
                 stats: Stats, policy: RetryPolicy, stop: threading.Event | None = None, max_in_flight: int = 64):
        self._secret = api_key
        self._openai = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=policy.timeout)
        self.cache, self.meter, self.stats, self.policy = cache, meter, stats, policy
        self.stop = stop or threading.Event()
        self.in_flight = InFlightLimit(max_in_flight)

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def complete(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """The response to `body`: from the cache, else from the endpoint (committed to the cache first)."""
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.add("cache_hits")
            return cached
        if self.stop.is_set():
            raise Stopped("the run is stopping")
        reservation = self.meter.reserve(body)
        try:
            response = self.with_retries(lambda: self._chat(body), what="chat completion")
        except BaseException:
            self.meter.release(reservation)
            raise
        self.cache.put(key, response, body.get("model"), via="online")
        self.meter.settle(reservation, response.get("usage"))
        self.stats.add("calls")
        return response

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.in_flight:
            completion = self._openai.chat.completions.create(**body)
        self.in_flight.succeeded()
        if not isinstance(completion, openai.BaseModel) or not getattr(completion, "choices", None):
            raise ValueError("the response is not a chat completion")
        return completion.model_dump(mode="json", exclude_unset=True)

    def with_retries(self, call: Callable[[], T], what: str) -> T:
        """Run `call`, retrying transient errors; raise CallFailed, FatalError or Stopped otherwise."""
        for attempt in range(self.policy.max_retries + 1):
            try:
                return call()
            except Exception as e:  # noqa: BLE001  classified below; unknown kinds are re-raised
                kind, desc = _classify(e)
                desc = self.redact(desc)
                if kind == "fatal":
                    raise FatalError(f"{what}: {desc}") from None
                if kind == "rejected":
                    raise CallFailed(f"{what} rejected: {desc}") from None
                self.stats.add(f"retry.{kind}")
                if attempt == self.policy.max_retries:
                    raise CallFailed(f"{what}: gave up after {attempt + 1} attempts; last: {desc}") from None
                busy = kind in BUSY
                if busy:
                    self.in_flight.busy()
                headers = getattr(getattr(e, "response", None), "headers", None)
                wait = self.policy.delay(attempt, retry_after_seconds(headers), busy)
                log.debug("%s: %s; retry %d in %.2fs", what, desc, attempt + 1, wait)
                if self.stop.wait(wait):
                    raise Stopped("the run is stopping") from None
        raise AssertionError("unreachable")

    @property
    def api(self) -> openai.OpenAI:
        """The underlying client, for the Batch API driver (files, batches)."""
        return self._openai
