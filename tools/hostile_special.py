"""Sweep cases that need more than one command line: interrupts, two jobs on one output, inputs from a pipe.

An interrupt case starts the `r2r` executable, waits until the job is under way (a file it writes appears),
sends SIGINT or SIGTERM, and checks what is left (a consistent run folder, no half-written output) and, where
the command promises it, that running it again finishes the job. A second-job case starts one job, waits until
it holds its output, runs the same command again (it must be refused naming the holder's PID) and then stops
or finishes the first, whose output must be its own alone. A pipe case gives a file flag a named pipe, as
`--run <(sort run.trec)` does in a shell: a command must read it or refuse it, never hang on it."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hostile_case import Case, Result
from hostile_cases import RUN, goods
from hostile_fixtures import train_argv

R2R = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "r2r"
Check = Callable[[Path], "tuple[str, str] | None"]
SLOW_STOP = 60.0  # seconds from the signal to the exit past which a user would reach for kill -9


def _start(argv: list[str], folder: Path, env: dict, tag: str) -> subprocess.Popen:
    out = open(folder.parent / f"{folder.name}.{tag}stdout", "w")  # noqa: SIM115 - closed with the process
    err = open(folder.parent / f"{folder.name}.{tag}stderr", "w")  # noqa: SIM115
    return subprocess.Popen(["nice", "-n", "19", str(R2R), *argv], cwd=folder, env=env, stdout=out, stderr=err,
                            stdin=subprocess.DEVNULL, preexec_fn=default_signals)


def default_signals() -> None:
    """Ctrl-C as in a terminal: a sweep started in the background (`&`, nohup) ignores SIGINT, and its children
    would inherit that, so the job would never see the interrupt the case sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _read(folder: Path, tag: str) -> tuple[str, str]:
    return tuple((folder.parent / f"{folder.name}.{tag}{s}").read_text(errors="replace") for s in ("stdout", "stderr"))


def _wait_until(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float) -> bool:
    """Whether `ready()` came true while the process ran (False: it ended first, or the time ran out)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ready():
            return True
        time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen, sig: int, timeout: float) -> tuple[object, str]:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout), ""
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, f"hung after the signal: killed after {timeout:.0f} s"


class SlowEndpoint:
    """An OpenAI-compatible endpoint that takes every request and answers none (until closed)."""

    def __init__(self):
        closing = self.closing = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                closing.wait(600)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def _with_endpoint(argv: list[str], endpoint: SlowEndpoint | None) -> list[str]:
    return [a.replace("{URL}", endpoint.url) if endpoint else a for a in argv]


def interrupted(ready: Callable[[Path], bool], sig: int, check: Check | None = None,
                resume: Callable[[Path], list[str]] | None = None, endpoint: bool = False, settle: float = 1.0):
    """A runner: start the case's command, send `sig` `settle` seconds after `ready(folder)`, check the folder,
    run `resume`."""
    def run(case: Case, folder: Path, ctx) -> Result:
        server = SlowEndpoint() if endpoint else None
        try:
            start = time.perf_counter()
            proc = _start(ctx.expand(_with_endpoint(case.argv, server)), folder, ctx.env, "")
            reached = _wait_until(proc, lambda: ready(folder), ctx.timeout)
            if not reached:
                code = proc.wait(timeout=ctx.timeout) if proc.poll() is None else proc.returncode
                out, err = _read(folder, "")
                return Result(case, code, time.perf_counter() - start, "not reached: the job ended before it was "
                              f"under way (exit {code})", out, err)
            time.sleep(settle)
            if proc.poll() is not None:
                return Result(case, proc.returncode, time.perf_counter() - start, "not reached: the job ended "
                              f"before the signal (exit {proc.returncode})", *_read(folder, ""))
            signalled = time.perf_counter()
            code, note = _stop(proc, sig, ctx.timeout)
            stopping = time.perf_counter() - signalled
        finally:
            if server:
                server.close()
        out, err = _read(folder, "")
        result = Result(case, code, time.perf_counter() - start, note, out, err)
        if stopping > SLOW_STOP:
            result.problems.append(("ROUGH", f"took {stopping:.0f} s to stop after the signal"))
        if check and (problem := check(folder)):
            result.problems.append(problem)
        if resume and not note:
            again, _, why = ctx.worker.run(ctx.expand(resume(folder)), folder, {}, ctx.timeout)
            if again != 0:
                tail = (ctx.cases_dir / f"{folder.name}.stderr").read_text(errors="replace")[-300:]
                result.problems.append(("BAD", f"running it again did not finish the job (exit {again}{why}): "
                                               f"{tail!r}"))
        return result
    return run


def second_job(ready: Callable[[Path], bool], then: int | None, check: Check | None = None, endpoint: bool = False):
    """A runner: while the case's command runs (once `ready`), the same command again must be refused; then
    the first gets `then` (a signal) or, with None, finishes. The result is the second job's."""
    def run(case: Case, folder: Path, ctx) -> Result:
        server = SlowEndpoint() if endpoint else None
        try:
            argv = ctx.expand(_with_endpoint(case.argv, server))
            first = _start(argv, folder, ctx.env, "first.")
            if not _wait_until(first, lambda: ready(folder), ctx.timeout):
                code = first.wait(timeout=ctx.timeout) if first.poll() is None else first.returncode
                return Result(case, code, 0.0, f"not reached: the first job ended before it held its output "
                              f"(exit {code})", *_read(folder, "first."))
            code, seconds, note = ctx.worker.run(argv, folder, dict(case.env), ctx.timeout)
            result = Result(case, code, seconds, note, (ctx.cases_dir / f"{folder.name}.stdout").read_text(),
                            (ctx.cases_dir / f"{folder.name}.stderr").read_text())
            if first.poll() is not None and "in use by another r2r job" not in result.stderr:
                result.note = f"not reached: the first job ended (exit {first.returncode}) before the second ran"
                return result
            if f"pid {first.pid}" not in result.stderr:
                result.problems.append(("ROUGH", f"the refusal does not name the first job's pid {first.pid}"))
            if then is None:
                first_code, why = first.wait(timeout=ctx.timeout), ""
            else:
                first_code, why = _stop(first, then, ctx.timeout)
        finally:
            if server:
                server.close()
        first_err = _read(folder, "first.")[1]
        expected = (0,) if then is None else (128 + then, -then)
        if first_code not in expected or "Traceback" in first_err:
            result.problems.append(("BAD", f"the first job ended with exit {first_code}{why}: {first_err[-300:]!r}"))
        if check and (problem := check(folder)):
            result.problems.append(problem)
        return result
    return run


def piped(good: str):
    """A runner: the case's "pipe" argument is a named pipe a thread fills with the fixture `good` once."""
    def run(case: Case, folder: Path, ctx) -> Result:
        fifo = folder / "pipe"
        os.mkfifo(fifo)

        def fill() -> None:
            try:
                with open(fifo, "wb") as f:
                    f.write((ctx.fixtures / good).read_bytes())
            except OSError:
                pass

        writer = threading.Thread(target=fill, daemon=True)
        writer.start()
        code, seconds, note = ctx.worker.run(ctx.expand(case.argv), folder, dict(case.env),
                                             case.timeout or ctx.timeout)
        if writer.is_alive():  # never opened: open the other end so the writer's open returns
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            writer.join(5)
            os.close(fd)
        return Result(case, code, seconds, note, (ctx.cases_dir / f"{folder.name}.stdout").read_text(),
                      (ctx.cases_dir / f"{folder.name}.stderr").read_text())
    return run


# --- what an interrupted job must leave ------------------------------------------------------------------------

def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def train_left_a_resumable_run(folder: Path) -> tuple[str, str] | None:
    report = _json(folder / "run" / "report.json")
    if not report.get("interrupted"):
        return "BAD", "no report.json saying the run was interrupted"
    steps = [json.loads(line).get("step") for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()
             if line.strip()] if (folder / "run" / "metrics.jsonl").is_file() else []
    if steps != sorted(steps) or len(steps) != len(set(steps)):
        return "BAD", f"metrics.jsonl steps out of order or repeated: {steps[:12]}"
    return None


def no_output(*names: str) -> Check:
    def check(folder: Path) -> tuple[str, str] | None:
        there = [n for n in names if (folder / n).exists()]
        staged = [p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name]
        if staged:
            return "BAD", f"staged folders left: {staged}"
        return ("BAD", f"an interrupted job left {there}") if there else None
    return check


def complete_export(folder: Path) -> tuple[str, str] | None:
    return None if (folder / "out" / "r2r_student.json").is_file() else ("BAD", "the first export is incomplete")


def _candidates(n: int):
    """`n` queries (the good three, renamed), so a rerank is still running when it is interrupted."""
    def make(path: Path, fixtures: Path) -> None:
        lines = (fixtures / "candidates.jsonl").read_text().splitlines()
        out = []
        for i in range(n):
            obj = json.loads(lines[i % len(lines)])
            obj["query"]["qid"] = f"q{i}"
            out.append(json.dumps(obj))
        path.write_text("\n".join(out) + "\n")
    return make


def _shards(folder: Path) -> bool:
    shards = folder / "out.trec.shards"
    return shards.is_dir() and any(p.name != ".r2r.lock" and not p.name.startswith(".") for p in shards.iterdir())


def _swap_many(argv: list[str]) -> list[str]:
    """The rerank of 4000 queries, each explained: still running when the second job comes, whenever it comes."""
    return [a.replace("many.jsonl", "more.jsonl") for a in argv] + ["--explain-top", "2"]


def special_cases() -> list[Case]:
    def fixtures_train(steps: int) -> list[str]:
        return train_argv(Path("{F}"), "run", steps, save_every=1000)  # {F}: the fixtures folder, when run

    train = fixtures_train(100000)
    rerank = ["rerank", "--checkpoint", RUN, "--candidates", "many.jsonl", "--output", "out.trec", "--shard-size",
              "1", "--student-only"]
    export = ["export", "--checkpoint", RUN, "--format", "seq-cls", "--dtype", "float32", "--output-dir", "out"]
    teach = ["teach", "--candidates", "candidates.jsonl", "--output", "out.jsonl", "--teacher-model", "m",
             "--base-url", "{URL}", "--timeout", "600", "--max-retries", "0", "--no-progress"]
    key = {"OPENAI_API_KEY": "sk-test"}
    logged = lambda f: (f / "run" / "metrics.jsonl").is_file() and (f / "run" / "metrics.jsonl").stat().st_size > 0

    def resume(folder: Path) -> list[str]:
        step = _json(folder / "run" / "report.json").get("final_step", 0)
        return fixtures_train(int(step) + 2)

    files = {**goods(), "many.jsonl": _candidates(400), "more.jsonl": _candidates(4000)}
    kw = {"mode": "fresh", "kind": "interrupt"}
    cases = [
        Case("train/interrupt-sigint", train, files, expect="interrupt", code=130, changes=("run/**",),
             leaves=("run", "run/**"), runner=interrupted(logged, signal.SIGINT, train_left_a_resumable_run, resume),
             **kw),
        Case("train/interrupt-sigterm", train, files, expect="interrupt", code=143, changes=("run/**",),
             leaves=("run", "run/**"), runner=interrupted(logged, signal.SIGTERM, train_left_a_resumable_run), **kw),
        Case("rerank/interrupt-sigint", rerank, files, expect="interrupt", code=130, leaves=("out.trec.shards*",),
             runner=interrupted(_shards, signal.SIGINT, no_output("out.trec"), lambda f: rerank), **kw),
        Case("rerank/interrupt-sigterm", rerank, files, expect="interrupt", code=143, leaves=("out.trec.shards*",),
             runner=interrupted(_shards, signal.SIGTERM, no_output("out.trec")), **kw),
        Case("export/interrupt-sigint", export, files, expect="interrupt", code=130,
             runner=interrupted(lambda f: any(".partial-" in p.name for p in f.iterdir()), signal.SIGINT,
                                no_output("out"), settle=0.0), **kw),
        Case("export/interrupt-sigterm", export, files, expect="interrupt", code=143,
             runner=interrupted(lambda f: any(".partial-" in p.name for p in f.iterdir()), signal.SIGTERM,
                                no_output("out"), settle=0.0), **kw),
        Case("teach/interrupt-sigterm", teach, files, expect="interrupt", code=143, env=key,
             leaves=("out.jsonl*",), runner=interrupted(lambda f: (f / "out.jsonl.cache.sqlite").exists(),
                                                        signal.SIGTERM, endpoint=True), **kw),
        Case("train/second-job-same-folder", train, files, names=("is in use by another r2r job",),
             changes=("run/**",), leaves=("run", "run/**"),
             runner=second_job(lambda f: (f / "run" / ".r2r.lock").exists() and logged(f), signal.SIGTERM,
                               train_left_a_resumable_run), mode="fresh", kind="two-jobs"),
        Case("rerank/second-job-same-output", _swap_many(rerank), files, names=("is in use by another r2r job",),
             leaves=("out.trec.shards*",), runner=second_job(_shards, signal.SIGINT, no_output("out.trec")),
             mode="fresh", kind="two-jobs"),
        Case("export/second-job-same-output", export, files, names=("is in use by another r2r job", "already exists"),
             leaves=("out", "out/*"), runner=second_job(lambda f: (f / ".out.r2r-lock").exists(), None,
                                                        complete_export), mode="fresh", kind="two-jobs"),
        Case("teach/second-job-same-output", teach, files, names=("is in use by another r2r job",), env=key,
             leaves=("out.jsonl*",), runner=second_job(lambda f: (f / ".out.jsonl.r2r-lock").exists(),
                                                       signal.SIGTERM, endpoint=True), mode="fresh",
             kind="two-jobs"),
    ]
    pipes = [
        ("evaluate/--run-from-a-pipe", ["evaluate", "--run", "pipe", "--qrels", "qrels.txt"], "run.trec"),
        ("evaluate/--qrels-from-a-pipe", ["evaluate", "--run", "run.trec", "--qrels", "pipe"], "qrels.txt"),
        ("retrieve/--queries-from-a-pipe", ["retrieve", "--queries", "pipe", "--corpus", "corpus.jsonl", "--output",
                                            "out.jsonl", "--no-progress"], "queries.tsv"),
        ("retrieve/--corpus-from-a-pipe", ["retrieve", "--queries", "queries.tsv", "--corpus", "pipe", "--output",
                                           "out.jsonl", "--no-progress"], "corpus.jsonl"),
        ("import-teacher/--input-from-a-pipe", ["import-teacher", "--input", "pipe", "--format", "r2r", "--output",
                                                "out.jsonl"], "release.jsonl"),
        ("mine-negatives/--teacher-from-a-pipe", ["mine-negatives", "--teacher", "pipe", "--output", "out.jsonl",
                                                  "--count", "2", "--no-progress"], "teacher.jsonl"),
        ("teach/--candidates-from-a-pipe", ["teach", "--candidates", "pipe", "--output", "out.jsonl",
                                            "--teacher-model", "gpt-4o", "--dry-run"], "candidates.jsonl"),
        ("tune-fusion/--qrels-from-a-pipe", ["tune-fusion", "--checkpoint", "student", "--student-run", "run.trec",
                                             "--candidates", "candidates.jsonl", "--qrels", "pipe", "--dry-run"],
         "qrels.txt"),
        ("rerank/--candidates-from-a-pipe", ["rerank", "--checkpoint", RUN, "--candidates", "pipe", "--output",
                                             "out.trec"], "candidates.jsonl"),
        ("evaluate-reasons/--explanations-from-a-pipe", ["evaluate-reasons", "--explanations", "pipe", "--output",
                                                         "out.json"], "explanations.jsonl"),
    ]
    for id, argv, good in pipes:
        cases.append(Case(id, argv, {**goods(), "student": lambda p, f: p.mkdir()}, expect="either",
                          names=("pipe",), runner=piped(good), kind="pipe", timeout=600, leaves=("pipe",),
                          check=lambda f: None))
    return cases
