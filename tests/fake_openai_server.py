"""A real HTTP server on 127.0.0.1 speaking enough of the OpenAI API for `r2r teach`, with fault injection.

Endpoints: POST /v1/chat/completions, POST /v1/files (multipart), GET /v1/files/{id}/content,
POST /v1/batches, GET /v1/batches/{id}. Answers are a deterministic function of the request: passages are
read from the prompt's "[i] text" lines and ranked by a `grade=N` marker in their text, so an interrupted
run, a resumed run and a batch run can be compared with an uninterrupted one.

Faults are rules `{"query": substring of the query, "stage": "rank"|"compare"|None, "fault": kind,
"times": n}`, consumed by the first n matching chat requests (a query's requests are sequential, so which
request gets a fault is deterministic). Kinds: 429 (with Retry-After), 500, 503, 400, 401 (echoing the key,
as a careless server might), slow (never answered: held until the client gives up on it, which its timeout
decides, not the host's speed), drop (closes the connection), malformed_body,
bad_json, bad_ids (a duplicate, an unknown and a missing identifier), length (finish_reason "length"),
batch_error (batch mode: that request fails inside the batch).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_LIMIT = 300.0  # seconds a held request waits for its client to hang up before the server drops it
TRANSPORT = {"429", "500", "503", "400", "401", "slow", "drop", "malformed_body"}
_PASSAGE = re.compile(r"^\[(\d+)\] (.*)$", re.M)
_QUERY = re.compile(r"^Query: (.*)$", re.M)
_GRADE = re.compile(r"grade=(\d+)")


def body_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class FakeOpenAI:
    def __init__(self, api_key: str, faults: list[dict] | None = None, batch_polls: int = 1):
        self.api_key = api_key
        self.faults = [dict(f, times=f.get("times", 1)) for f in (faults or [])]
        self.batch_polls = batch_polls
        self.answered: Counter = Counter()  # request hash -> chat answers sent (online and batch)
        self.events: list[tuple[float, str, str, str]] = []  # (time, hash, stage, outcome)
        self.fault_counts: Counter = Counter()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self._allowed: int | None = None  # answers left before freezing; None = no freeze
        self._released = threading.Event()
        self.frozen = 0
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def freeze_after(self, n: int) -> None:
        """Answer n more chat requests, then hold every later one (never answered; dropped on release)."""
        with self.lock:
            self._allowed = n

    def release(self) -> None:
        """Stop freezing; requests held so far are dropped without an answer."""
        with self.lock:
            self._allowed = None
        self._released.set()

    @property
    def total_answered(self) -> int:
        with self.lock:
            return sum(self.answered.values())

    # -- answers -------------------------------------------------------------------------------------------
    def _take_fault(self, query: str, stage: str, batch: bool) -> str | None:
        with self.lock:
            for rule in self.faults:
                if rule["times"] <= 0 or rule["query"] not in query:
                    continue
                if rule.get("stage") not in (None, stage) or (batch and rule["fault"] in TRANSPORT):
                    continue
                if not batch and rule["fault"] == "batch_error":
                    continue
                rule["times"] -= 1
                self.fault_counts[rule["fault"]] += 1
                return rule["fault"]
        return None

    @staticmethod
    def parse(body: dict) -> tuple[str, str, list[tuple[int, str]]]:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        fmt = (body.get("response_format") or {}).get("json_schema", {}).get("name")
        stage = {"ranking": "rank", "ranking_with_listwise_reasons": "rank", "comparison": "compare"}.get(fmt) or (
            "rank" if "ranked_passages" in user else "compare")
        query = _QUERY.search(user).group(1)
        return query, stage, [(int(i), t) for i, t in _PASSAGE.findall(user)]

    def completion(self, body: dict, fault: str | None) -> dict:
        query, stage, passages = self.parse(body)
        grade = {i: int(m.group(1)) if (m := _GRADE.search(t)) else 0 for i, t in passages}
        ranked = sorted(grade, key=lambda i: (-grade[i], i))
        finish = "stop"
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if stage == "rank" and "listwise_reason" in user:  # the authors' protocol: both reasons per passage
            items = [{"identifier": i, "direct_reason": f"passage {i} has grade {grade[i]} for '{query}'",
                      "listwise_reason": f"ranked {r} of {len(ranked)}; the best is passage {ranked[0]}"}
                     for r, i in enumerate(ranked, start=1)]
            content = json.dumps({"ranked_passages": items})
        elif stage == "rank":
            items = [{"id": i, "reason": f"passage {i} has grade {grade[i]} for '{query}'"} for i in ranked]
            if fault == "bad_ids" and len(items) >= 3:
                items = [items[0], items[0], {"id": 99, "reason": "no such passage"}] + items[1:-1]
            content = json.dumps({"ranked_passages": items})
        else:
            preferred = 0 if grade[1] == grade[2] else ranked[0]
            content = json.dumps({"preferred": preferred,
                                  "reason": f"grade {grade[1]} against {grade[2]} for '{query}'"})
        if fault == "bad_json":
            content = "Sure! The most relevant passage is [1], then the others."
        elif fault == "length":
            content, finish = content[: len(content) // 2], "length"
        prompt = sum(_tokens(m["content"]) for m in body["messages"])
        return {"id": "chatcmpl-" + body_hash(body)[:12], "object": "chat.completion", "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": _tokens(content),
                          "total_tokens": prompt + _tokens(content)}}

    def _run_batch(self, batch: dict) -> None:
        out, err = [], []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            req = json.loads(line)
            query, stage, _ = self.parse(req["body"])
            fault = self._take_fault(query, stage, batch=True)
            if fault == "batch_error":
                err.append({"id": "r", "custom_id": req["custom_id"], "error": None,
                            "response": {"status_code": 500, "body": {"error": {"message": "server error"}}}})
                continue
            answer = self.completion(req["body"], fault)
            with self.lock:
                self.answered[body_hash(req["body"])] += 1
            out.append({"id": "r", "custom_id": req["custom_id"], "error": None,
                        "response": {"status_code": 200, "request_id": "x", "body": answer}})
        for name, lines in (("output_file_id", out), ("error_file_id", err)):
            if lines:
                fid = f"file-{len(self.files)}"
                self.files[fid] = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
                batch[name] = fid
        batch["status"] = "completed"
        batch["request_counts"] = {"total": len(out) + len(err), "completed": len(out), "failed": len(err)}

    # -- HTTP ----------------------------------------------------------------------------------------------
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, obj: Any = None, raw: bytes | None = None,
                      headers: dict | None = None) -> bool:
                data = raw if raw is not None else json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    return True
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True
                    return False

            def _error(self, status: int, message: str, headers: dict | None = None) -> None:
                self._send(status, {"error": {"message": message, "type": "error", "code": str(status)}},
                           headers=headers)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._error(401, "missing or wrong API key")
                return False

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                m = re.fullmatch(r"/v1/files/([\w-]+)/content", self.path)
                if m and m.group(1) in server.files:
                    return self._send(200, raw=server.files[m.group(1)])
                m = re.fullmatch(r"/v1/batches/([\w-]+)", self.path)
                if m and m.group(1) in server.batches:
                    batch = server.batches[m.group(1)]
                    batch["_polls"] += 1
                    if batch["status"] != "completed":
                        if batch["_polls"] > server.batch_polls:
                            server._run_batch(batch)
                        else:
                            batch["status"] = "in_progress"
                    return self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})
                self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:
                raw = self._body()
                if not self._authorized():
                    return
                if self.path == "/v1/chat/completions":
                    return self._chat(json.loads(raw))
                if self.path == "/v1/files":
                    head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                    msg = BytesParser(policy=policy.default).parsebytes(head + raw)
                    part = next(p for p in msg.iter_parts() if p.get_param("name", header="content-disposition")
                                == "file")
                    fid = f"file-{len(server.files)}"
                    server.files[fid] = part.get_content() if part.get_content_maintype() == "text" \
                        else part.get_payload(decode=True)
                    if isinstance(server.files[fid], str):
                        server.files[fid] = server.files[fid].encode()
                    return self._send(200, {"id": fid, "object": "file", "bytes": len(server.files[fid]),
                                            "created_at": 0, "filename": "requests.jsonl", "purpose": "batch",
                                            "status": "processed"})
                if self.path == "/v1/batches":
                    req = json.loads(raw)
                    bid = f"batch_{len(server.batches)}"
                    server.batches[bid] = {
                        "id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                        "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
                        "status": "validating", "created_at": 0, "output_file_id": None, "error_file_id": None,
                        "request_counts": {"total": 0, "completed": 0, "failed": 0}, "_polls": 0}
                    return self._send(200, {k: v for k, v in server.batches[bid].items() if k != "_polls"})
                self._error(404, f"no route {self.path}")

            def _hold_until_the_client_hangs_up(self) -> None:
                """Read until the client closes the connection (its timeout fired); nothing is answered."""
                self.close_connection = True
                self.connection.settimeout(HOLD_LIMIT)
                try:
                    while self.rfile.read1(1 << 16):
                        pass
                except OSError:  # a reset, or HOLD_LIMIT passed: the client is gone or never will be
                    pass

            def _chat(self, body: dict) -> None:
                h = body_hash(body)
                query, stage, _ = server.parse(body)
                with server.lock:
                    frozen = server._allowed is not None and server._allowed <= 0
                    if frozen:
                        server.frozen += 1
                    elif server._allowed is not None:
                        server._allowed -= 1
                if frozen:
                    server._released.wait()
                    self.close_connection = True
                    return
                fault = server._take_fault(query, stage, batch=False)
                server.events.append((time.monotonic(), h, stage, fault or "ok"))
                if fault == "429":
                    return self._error(429, "rate limited", headers={"Retry-After": "1"})
                if fault in ("500", "503", "400"):
                    return self._error(int(fault), f"injected {fault}")
                if fault == "401":
                    return self._error(401, f"Incorrect API key provided: {self.headers['Authorization'][7:]}")
                if fault == "drop":
                    self.close_connection = True
                    return
                if fault == "malformed_body":
                    return self._send(200, raw=b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess')
                if fault == "slow":
                    return self._hold_until_the_client_hangs_up()
                answer = server.completion(body, fault)
                if self._send(200, answer):
                    with server.lock:
                        server.answered[h] += 1

        return Handler
