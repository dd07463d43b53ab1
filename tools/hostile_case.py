"""One case of the hostile-input sweep and the rules that classify its outcome (GOOD, ROUGH, BAD)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIR = object()  # a `files` value: make an empty folder there

# what no user should see: Python tracebacks and the interpreter's or the kernel's last words
CRASH_MARKERS = ("Traceback (most recent call last)", "Exception ignored", "Fatal Python error", "Segmentation fault",
                 "core dumped", "Aborted", "terminate called")
# files a job may leave after failing: its lock (named with its PID, blocks no one) and nothing else
HARMLESS = (".r2r.lock", "*.r2r-lock")
# lines a command prints on stderr by design besides its own `r2r <command>: ` ones: the rows an import left out
# and the summary `r2r teach` prints when it stops (indented under its `r2r teach: <output>` line)
OWN_LINES = {"import-teacher": ("rejected: ", "repaired: ", "... "), "teach": ("  ",)}
ERROR_LINE = re.compile(r"r2r [a-z-]+( [a-z-]+)?: error: ")  # `r2r data fetch: error:` is `r2r data`'s too
PROGRESS = re.compile(r"\d+%\|.*\| *[\d?]+/[\d?]+ \[")  # a progress bar's line: "score:  50%|##   | 2/4 ["
HALF_WRITTEN = re.compile(r"(^|/)\.[^/]+\.(partial-|old-)?[a-z0-9_]{8}[^/]*$")  # atomic.py's temporary names


@dataclass
class Case:
    """A command line run in a folder of its own that holds `files` (see hostile_inputs.set_up).

    expect: "fail" (bad input: exit `code`, one error line naming one of `names`), "ok" (a fair input: exit 0,
    and `check(folder)` returns None or what is wrong), "either" (a clean refusal or an accepted run).
    `changes`: existing paths (globs) the command may rewrite; `leaves`: new paths a failed run may leave.
    `runner(case, folder, ctx) -> Result` replaces the plain run (interrupts, two jobs at once)."""

    id: str
    argv: list[str]
    files: Mapping[str, Any] = field(default_factory=dict)
    expect: str = "fail"
    code: int = 2
    names: tuple[str, ...] = ()
    mode: str = "inproc"
    kind: str = ""
    changes: tuple[str, ...] = ()
    leaves: tuple[str, ...] = ()
    check: Callable[[Path], str | None] | None = None
    runner: Callable[..., Result] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    says: str | None = None  # an accepted run must say this (e.g. "rejected" for rows it left out)

    @property
    def command(self) -> str:
        return self.id.split("/")[0]


@dataclass
class Result:
    case: Case
    code: object
    seconds: float
    note: str
    stdout: str
    stderr: str
    argv: list[str] = field(default_factory=list)
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (BAD or ROUGH, why): a runner's own findings

    def to_dict(self) -> dict:
        return {"id": self.case.id, "command": self.case.command, "kind": self.case.kind, "mode": self.case.mode,
                "expect": self.case.expect, "argv": self.argv, "exit": self.code, "seconds": round(self.seconds, 1),
                "class": self.verdict, "reasons": self.reasons, "note": self.note,
                "stderr": _tail(self.stderr), "stdout": _tail(self.stdout)}


def _tail(text: str, n: int = 2000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(Path(path).name, p) for p in patterns)


def stderr_lines(command: str, stderr: str) -> tuple[list[str], list[str]]:
    """(the `r2r <command>: error:` lines, every other line a user would read as output). Blank lines, progress
    bars (redrawn with carriage returns) and the command's own warnings (`r2r <command>: ...`) are not noise."""
    errors, noise = [], []
    for line in stderr.splitlines():
        if not line.strip() or "\r" in line or PROGRESS.search(line):
            continue
        if ERROR_LINE.match(line) and line.split(":")[0].split()[1] == command:
            errors.append(line)
        elif not line.startswith((f"r2r {command}: ", *OWN_LINES.get(command, ()))):
            noise.append(line)
    return errors, noise


def classify(case: Case, r: Result, before: dict, after: dict, folder: Path) -> None:
    """Set r.verdict and r.reasons from the exit, the output and the folder before and after."""
    if r.note.startswith("not reached"):  # an interrupt that came after the job had finished: nothing tested
        r.verdict, r.reasons = "SKIP", [r.note]
        return
    bad = [why for verdict, why in r.problems if verdict == "BAD"]
    rough = [why for verdict, why in r.problems if verdict == "ROUGH"]
    text = r.stdout + r.stderr
    if isinstance(r.code, int) and r.code < 0 and case.expect == "interrupt" and -r.code == case.code - 128:
        rough.append(f"died of the signal (exit {r.code}, {case.code} in a shell) without a word")
        r.code = case.code
    if r.note:
        bad.append(r.note)
    elif not isinstance(r.code, int):
        bad.append("an exception escaped the command (traceback)")
    elif r.code < 0 or r.code > 150:
        bad.append(f"exit {r.code}: killed or crashed")
    marker = next((m for m in CRASH_MARKERS if m in text), None)
    if marker:
        bad.append(f"output holds {marker!r}")
    changed = [p for p in before if not _matches(p, case.changes) and after.get(p) != before[p]]
    if changed:
        bad.append("input changed or removed: " + ", ".join(changed[:4]))
    new = [p for p in after if p not in before and not _matches(p, case.leaves)]
    half = [p for p in new if HALF_WRITTEN.search(p) and not _matches(p, HARMLESS)]
    if half:
        bad.append("half-written file left: " + ", ".join(half[:3]))
    errors, noise = stderr_lines(case.command, r.stderr)
    refused = isinstance(r.code, int) and r.code != 0
    if case.expect == "fail" or (case.expect == "either" and refused):
        if r.code == 0:
            bad.append("exit 0 on bad input")
        elif refused:
            left = [p for p in new if p not in half and not _matches(p, HARMLESS)]
            files = [p for p in left if after[p][0] == "file"]
            if files:
                bad.append("a failed run left " + ", ".join(files[:4]))
            elif left:
                rough.append("a failed run left " + ", ".join(left[:4]))
            locks = [p for p in new if _matches(p, HARMLESS)]
            if locks:
                rough.append("lock file left: " + ", ".join(locks[:2]))
            _judge_message(case, r, errors, noise, rough)
    elif case.expect == "interrupt":
        if r.code != case.code:
            rough.append(f"exit {r.code}, expected {case.code}")
        if noise:
            rough.append(f"{len(noise)} line(s) beside the command's own, e.g. {noise[0][:120]!r}")
    if r.code == 0 and case.says and case.says not in text:
        (bad if case.expect == "fail" else rough).append(f"accepted without saying {case.says!r}")
    if case.expect == "ok":
        if refused:
            rough.append(f"a fair input refused (exit {r.code}): " + (errors[0] if errors else _last(r.stderr)))
        elif r.code == 0 and case.check is not None:
            problem = case.check(folder)
            if problem:
                rough.append(problem)
    r.reasons = bad + rough
    r.verdict = "BAD" if bad else "ROUGH" if rough else "GOOD"


def _judge_message(case: Case, r: Result, errors: list[str], noise: list[str], rough: list[str]) -> None:
    if r.code != case.code:
        rough.append(f"exit {r.code}, expected {case.code}")
    if not errors:
        rough.append(f"no `r2r {case.command}: error:` line (last line: {_last(r.stderr)!r})")
    elif len(errors) > 1:
        rough.append(f"{len(errors)} error lines")
    if noise:
        rough.append(f"{len(noise)} more line(s) on stderr, e.g. {noise[0][:120]!r}")
    if errors and case.names and not any(n in errors[0] for n in case.names):
        rough.append(f"the error names none of {list(case.names)}: {errors[0][:200]!r}")


def _last(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
