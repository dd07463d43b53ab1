"""The durable response cache: every teacher answer, keyed by the hash of its request, in SQLite.

A response is committed (WAL, `synchronous=FULL`) before anything uses it, so a crash, SIGKILL or Ctrl-C
loses no answer that was paid for, and a rerun replays instead of asking again. Batch-mode jobs are recorded
too, so a rerun resumes polling a batch that was submitted before the interruption. Only request hashes and
responses are stored: never request headers, so never the API key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, response TEXT NOT NULL, model TEXT, via TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, keys TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL);
"""


def request_key(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a request body (model, messages, sampling and format fields)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Thread-safe: one connection guarded by a lock (writes are short; calls take seconds)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def has(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, response: dict[str, Any], model: str | None, via: str) -> None:
        """Commit one response (autocommit: durable when this returns)."""
        text = json.dumps(response, ensure_ascii=False, sort_keys=True)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses (key, response, model, via, created) "
                             "VALUES (?, ?, ?, ?, ?)", (key, text, model, via, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # batch jobs: submitted -> ingested (or abandoned)
    def add_batch(self, batch_id: str, keys: list[str]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO batches (id, keys, state, created) VALUES (?, ?, ?, ?)",
                             (batch_id, json.dumps(keys), "submitted", time.time()))

    def open_batches(self) -> list[tuple[str, list[str]]]:
        with self._lock:
            rows = self._db.execute("SELECT id, keys FROM batches WHERE state = 'submitted' "
                                    "ORDER BY created").fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]

    def close_batch(self, batch_id: str, state: str) -> None:
        with self._lock:
            self._db.execute("UPDATE batches SET state = ? WHERE id = ?", (state, batch_id))

    def close(self) -> None:
        with self._lock:
            self._db.close()
