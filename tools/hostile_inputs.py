"""Every `r2r` command against hostile but fair input: a sweep that classifies how each case is handled.

    nice -n 19 .venv/bin/python tools/hostile_inputs.py [--only rerank/] [--report FILE] [--keep]

Each case (tools/hostile_cases*.py) is a command line run in a folder of its own holding its inputs: a bad
file (missing, empty, cut, re-encoded, a folder), a bad flag, an output that is an input, a broken checkpoint
or model, an interrupt, a second job in the same folder. The folder is hashed before and after. A case is

- GOOD: exit 2 for bad input (1 for a runtime failure), one line `r2r <command>: error: ...` naming what
  the case expects (the file, line, field or flag), every input byte-identical, nothing left half-written
  (for a fair input the case accepts: exit 0 and the output it checks);
- ROUGH: safe, but more lines than the one, another exit code, a line that does not name the culprit, a
  leftover empty folder, or a fair input refused;
- BAD: an input changed or removed, a file left behind by a failed job, a traceback, a crash or a hang, a
  signal, or exit 0 on bad input.

Most cases run in one long-lived worker process through `r2r_jax.cli.main` (what the `r2r` executable runs;
jax and the model code are imported once), with stdout and stderr captured at the file-descriptor level;
cases whose outcome depends on the process (interrupts, two jobs at once, a checkpoint restore that fails)
run the `r2r` executable itself. A table by command goes to stdout and every case to a JSON report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(TOOLS)]

from hostile_case import DIR, Case, Result, classify  # noqa: E402
from hostile_special import default_signals  # noqa: E402

R2R = ROOT / ".venv" / "bin" / "r2r"
PYTHON = Path(sys.executable)


# --- the worker: many cases in one process ----------------------------------------------------------------------

def worker() -> int:
    """Read jobs (JSON lines) from stdin, run each through `cli.main` with fds 1 and 2 on its own files, answer
    {"code", "seconds"} on the original stdout. fd 0 is /dev/null."""
    import logging

    from r2r_jax import cli

    logging.getLogger("r2r_jax").propagate = False  # as the `r2r` executable has it (cli.main, as a program)
    jobs = os.fdopen(os.dup(0), "r")
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)  # between cases fd 1 is the log too: a late print must not reach the answers
    base_env = dict(os.environ)
    for line in jobs:
        job = json.loads(line)
        os.environ.clear()
        os.environ.update({**base_env, **job.get("env", {})})
        os.chdir(job["cwd"])
        start = time.perf_counter()
        code = _captured(cli.main, job["argv"], job["stdout"], job["stderr"])
        _forget()
        answers.write(json.dumps({"code": code, "seconds": time.perf_counter() - start}) + "\n")
    return 0


def _forget() -> None:
    """Clear the project's memoised loaders (a tokenizer per path, ...), as a new process would start without
    them: a relative path such as `model` names another folder in the next case."""
    for name, module in list(sys.modules.items()):
        if name.startswith("r2r_jax"):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def _captured(main, argv: list[str], stdout: str, stderr: str):
    """main(argv) with fds 1 and 2 (C libraries too) written to the two files; its exit code, or "exception"
    when something escaped it (the executable would have printed a traceback, as this does)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    out = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - the executable would show this traceback: so does the capture
        traceback.print_exc()
        code = "exception"
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, out, err):
            os.close(fd)
    return code


class Worker:
    """The parent's handle on a worker process: started on first use, restarted after a case killed it."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log, self.proc = env, log, None
        self.lock = threading.Lock()  # one case at a time, whichever thread asks

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(["nice", "-n", "19", str(PYTHON), __file__, "--worker"], cwd=ROOT,
                                         env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         text=True, bufsize=1)

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[object, float, str]:
        with self.lock:
            return self._run(argv, cwd, env, timeout)

    def _run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[object, float, str]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        job = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(cwd.parent / f"{cwd.name}.stdout"),
               "stderr": str(cwd.parent / f"{cwd.name}.stderr")}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return None, timeout, f"hung: killed after {timeout:.0f} s"
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return None, 0.0, f"the process died (exit {code})"
        answer = json.loads(line)
        return answer["code"], answer["seconds"], ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def run_fresh(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[object, float, str]:
    """The `r2r` executable itself, niced, with its own stdout and stderr files beside the case folder."""
    start = time.perf_counter()
    with open(cwd.parent / f"{cwd.name}.stdout", "w") as out, open(cwd.parent / f"{cwd.name}.stderr", "w") as err:
        proc = subprocess.Popen(["nice", "-n", "19", str(R2R), *argv], cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, preexec_fn=default_signals)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None, timeout, f"hung: killed after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    return code, seconds, (f"killed by signal {-code}" if code < 0 else "")


# --- folders: set up, hashed -------------------------------------------------------------------------------------

def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder` (links not followed): (kind, size, SHA-256) by relative path."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path), "")
            elif path.is_dir():
                out[rel] = ("dir", 0, "")
            elif path.is_file():
                out[rel] = ("file", path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[rel] = ("other", 0, "")
    return out


def set_up(case: Case, folder: Path, fixtures: Path) -> None:
    """The case's folder with its inputs: copies of fixtures ("@name"), literal text or bytes, made folders,
    or whatever a callable makes (called with the path and the fixtures folder)."""
    folder.mkdir(parents=True)
    for name, source in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if source is DIR:
            path.mkdir(exist_ok=True)
        elif isinstance(source, str) and source.startswith("@"):
            src = fixtures / source[1:]
            if src.is_dir():
                shutil.copytree(src, path, symlinks=True)
            else:
                shutil.copyfile(src, path)
        elif isinstance(source, bytes):
            path.write_bytes(source)
        elif isinstance(source, str):
            path.write_text(source, encoding="utf-8")
        else:
            source(path, fixtures)


def expand(argv: list[str], fixtures: Path) -> list[str]:
    return [a.replace("{F}", str(fixtures)) for a in argv]


# --- the sweep ---------------------------------------------------------------------------------------------------

def environment(work: Path) -> dict[str, str]:
    """What every case runs with: CPU jax, its own data and cache folders, no debug tracebacks."""
    env = {k: v for k, v in os.environ.items() if k not in ("R2R_DEBUG", "JAX_PLATFORMS", "XLA_FLAGS")}
    env.update(JAX_PLATFORMS="cpu", R2R_DATA=str(work / "data"), R2R_CACHE_DIR=str(work / "cache"),
               JAX_COMPILATION_CACHE_DIR=str(work / "jax_cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               PYTHONPATH=str(ROOT))
    return env


def build_fixtures(fixtures: Path, worker: Worker) -> None:
    """The good inputs, unless a kept scratch folder has them already (the trained ones take minutes)."""
    from hostile_fixtures import TEXT_FILES, build_text_fixtures, trained

    if not all((fixtures / name).is_file() for name in TEXT_FILES):
        build_text_fixtures(fixtures)
    for name, argv in trained(fixtures):
        if (fixtures / name).is_dir():
            continue
        print(f"fixture {name}: r2r {argv[0]} ...", flush=True)
        code, seconds, note = worker.run(argv, fixtures, {}, timeout=3600)
        if code != 0:
            err = (fixtures.parent / f"{fixtures.name}.stderr").read_text()[-3000:]
            raise SystemExit(f"fixture {name} failed ({code}, {note}):\n{err}")
        print(f"fixture {name}: {seconds:.0f} s", flush=True)


@dataclass
class Context:
    """What a case's own runner (interrupts, two jobs at once) gets: hostile_special.py."""

    fixtures: Path
    env: dict[str, str]
    timeout: float
    worker: Worker
    fresh: Callable[..., tuple[object, float, str]]
    cases_dir: Path
    expand: Callable[[list[str]], list[str]]


def run_case(case: Case, cases_dir: Path, fixtures: Path, worker: Worker, env: dict[str, str],
             timeout: float) -> Result:
    folder = cases_dir / case.id.replace("/", "__")
    set_up(case, folder, fixtures)
    before = snapshot(folder)
    argv = expand(case.argv, fixtures)
    case_env = {k: expand([v], fixtures)[0] for k, v in case.env.items()}
    timeout = case.timeout or timeout
    if case.runner is not None:
        ctx = Context(fixtures, {**env, **case_env}, timeout, worker, run_fresh, cases_dir,
                      lambda a: expand(a, fixtures))
        result = case.runner(case, folder, ctx)
    else:
        if case.mode == "fresh":
            code, seconds, note = run_fresh(argv, folder, {**env, **case_env}, timeout)
        else:
            code, seconds, note = worker.run(argv, folder, case_env, timeout)
        result = Result(case, code, seconds, note, (cases_dir / f"{folder.name}.stdout").read_text(errors="replace"),
                        (cases_dir / f"{folder.name}.stderr").read_text(errors="replace"))
    result.argv = argv
    classify(case, result, before, snapshot(folder), folder)
    return result


def table(results: list[Result]) -> str:
    """Cases by command and class (SKIP: an interrupt that came too late to test anything; TOOL: the sweep's
    own failure)."""
    classes = ["GOOD", "ROUGH", "BAD"] + sorted({r.verdict for r in results} - {"GOOD", "ROUGH", "BAD"})
    by_command: dict[str, Counter] = {}
    for r in results:
        by_command.setdefault(r.case.command, Counter())[r.verdict] += 1
    by_command["all"] = Counter(r.verdict for r in results)
    rows = [("command", "cases", *classes)]
    rows += [(command, str(sum(c.values())), *(str(c[k]) for k in classes)) for command, c in by_command.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths,
                                                                                                   strict=True)))
                     for row in rows)


def machine() -> dict:
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE")
                                                                  * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run only the cases whose id contains TEXT (repeatable), e.g. rerank/ or /bom")
    p.add_argument("--report", default="runs/hostile_inputs/report.json", help="the JSON report to write")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (case folders, outputs, logs)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per case before it counts as hung")
    p.add_argument("--jobs", type=int, default=2,
                   help="cases that run the r2r executable itself, run at once beside the worker's")
    p.add_argument("--list", action="store_true", help="print the case ids and exit")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker()
    from hostile_cases import all_cases

    cases = [c for c in all_cases() if not args.only or any(t in c.id for t in args.only)]
    if args.list:
        print("\n".join(f"{c.id}  [{c.mode}]" for c in cases))
        print(f"{len(cases)} cases")
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="r2r_hostile_")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "cache"):
        (work / sub).mkdir(exist_ok=True)
    env = environment(work)
    worker_ = Worker(env, work / "worker.log")
    fixtures = work / "fixtures"
    start = time.time()
    results: list[Result] = []
    try:
        build_fixtures(fixtures, worker_)
        pristine = snapshot(fixtures)
        cases_dir = work / "cases"
        shutil.rmtree(cases_dir, ignore_errors=True)
        cases_dir.mkdir()
        done = threading.Lock()

        def one(case: Case) -> None:
            try:
                r = run_case(case, cases_dir, fixtures, worker_, env, args.timeout)
            except Exception:  # noqa: BLE001 - the sweep's own fault: recorded, and the sweep goes on
                r = Result(case, None, 0.0, "", "", traceback.format_exc(), verdict="TOOL", reasons=[
                    "the sweep itself failed on this case: " + traceback.format_exc().splitlines()[-1]])
            if not args.keep and r.verdict == "GOOD":
                shutil.rmtree(cases_dir / case.id.replace("/", "__"), ignore_errors=True)
            why = "; ".join(r.reasons)
            with done:
                results.append(r)
                print(f"[{len(results)}/{len(cases)}] {r.verdict:5} {case.id} ({r.seconds:.0f} s)"
                      f"{': ' + why if why else ''}", flush=True)
                write_report(args.report, results, start)

        # the worker runs one case at a time; processes of their own (interrupts, restores) run beside it
        own = [c for c in cases if c.mode == "fresh"]
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            futures = [pool.submit(one, c) for c in own]
            for case in cases:
                if case.mode != "fresh":
                    one(case)
            for f in futures:
                f.result()
        if snapshot(fixtures) != pristine:
            print("WARNING: a case changed the shared fixtures", flush=True)
    finally:
        worker_.stop()
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results.sort(key=lambda r: (r.case.command, r.case.id))
    print()
    print(table(results))
    write_report(args.report, results, start)
    print(f"\nreport: {args.report}" + (f"; scratch folder kept: {work}" if args.keep or args.work else ""))
    return 0


def write_report(path: str, results: list[Result], start: float) -> None:
    """The JSON report (rewritten after every case, so a long sweep can be read while it runs)."""
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start)),
              "seconds": round(time.time() - start), "machine": machine(),
              "counts": dict(Counter(r.verdict for r in results)),
              "by_command": {c: dict(Counter(r.verdict for r in results if r.case.command == c))
                             for c in sorted({r.case.command for r in results})},
              "cases": [r.to_dict() for r in results]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
