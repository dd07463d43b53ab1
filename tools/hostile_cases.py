"""The sweep's cases: every file a command reads, spoiled in every way a fair user could spoil it.

Each file flag (`FILE_FLAGS`) meets each kind of bad file its format can have (`KINDS`): missing, empty, a
folder, Latin-1, UTF-16, gzip, NUL bytes, cut mid-line, an 8 MB line, another layout, wrong JSON types,
links that lead nowhere, /dev/null, and inputs that are fair and must be accepted (a byte-order mark, CRLF
line ends). Each case folder holds a copy of every good text file, so a command that writes over any of them
is caught. The other case families: hostile_cases_flags.py (options and outputs), hostile_cases_models.py
(checkpoints, exports, GGUFs, data sets), hostile_special.py (interrupts, two jobs at once, pipes)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path

from hostile_case import DIR, Case
from hostile_fixtures import TEXT_FILES

HUGE_LINE = 8 << 20  # bytes of one line: far past any record, small enough to hold in memory


def goods(*skip: str) -> dict:
    """Copies of every good text file (the case checks them all unchanged), less `skip`."""
    return {name: f"@{name}" for name in TEXT_FILES if name not in skip}


def _maker(make: Callable[[bytes], bytes], good: str):
    def write(path: Path, fixtures: Path) -> None:
        path.write_bytes(make((fixtures / good).read_bytes()))
    return write


def _line2(data: bytes, change: Callable[[bytes], bytes]) -> bytes:
    lines = data.split(b"\n")
    lines[1] = change(lines[1])
    return b"\n".join(lines)


def _field(data: bytes, index: int, value: bytes) -> bytes:
    def change(line: bytes) -> bytes:
        parts = line.split()
        parts[index] = value
        return b" ".join(parts)
    return _line2(data, change)


def _json_types(data: bytes) -> bytes:
    first, _, rest = data.partition(b"\n")
    obj = json.loads(first)
    return json.dumps({k: [] for k in obj}).encode() + b"\n" + rest


def _link(target: str):
    def write(path: Path, fixtures: Path) -> None:
        os.symlink(target if target != "self" else path.name, path)
    return write


# kind -> (formats it applies to, what to write given the good file's name (None: nothing), expectation)
ALL = ("jsonl", "tsv", "trec", "qrels", "yaml")
KINDS: dict[str, tuple[tuple[str, ...], Callable[[str], object], str]] = {
    "missing": (ALL, lambda g: None, "fail"),
    "empty": (ALL, lambda g: b"", "fail"),
    "blank": (ALL, lambda g: b"\n  \n\t\n", "fail"),
    "folder": (ALL, lambda g: DIR, "fail"),
    "latin1": (ALL, lambda g: _maker(lambda d: _line2(d, lambda line: b"caf\xe9 " + line), g), "fail"),
    "utf16": (ALL, lambda g: _maker(lambda d: d.decode().encode("utf-16"), g), "fail"),
    "gzip": (ALL, lambda g: _maker(gzip.compress, g), "fail"),
    "nul": (("jsonl", "yaml"), lambda g: _maker(lambda d: _line2(d, lambda line: b"\x00" + line), g), "fail"),
    "nul-in-text": (("tsv", "trec", "qrels"), lambda g: _maker(lambda d: _line2(d, lambda line: line + b"\x00"), g),
                    "either"),
    "cut": (ALL, lambda g: _maker(lambda d: d[: int(len(d) * 0.6)], g), "fail"),
    "huge-line": (("jsonl", "tsv", "trec", "qrels"), lambda g: _maker(lambda d: d + b"x" * HUGE_LINE + b"\n", g),
                  "fail"),
    "json-array": (("jsonl",), lambda g: _maker(lambda d: json.dumps([json.loads(x) for x in d.splitlines()
                                                                       if x.strip()]).encode() + b"\n", g), "fail"),
    "json-types": (("jsonl",), lambda g: _maker(_json_types, g), "fail"),
    "columns": (("trec", "qrels"), lambda g: _maker(lambda d: _line2(d, lambda line: line.rsplit(b" ", 1)[0]), g),
                "fail"),
    "not-a-number": (("trec",), lambda g: _maker(lambda d: _field(d, 4, b"high"), g), "fail"),
    "not-a-grade": (("qrels",), lambda g: _maker(lambda d: _field(d, 3, b"x"), g), "fail"),
    "nan-score": (("trec",), lambda g: _maker(lambda d: _field(d, 4, b"nan"), g), "fail"),
    "twice": (("jsonl", "tsv", "trec"), lambda g: _maker(lambda d: d + d, g), "either"),
    "dangling-link": (ALL, lambda g: _link("nowhere/at/all"), "fail"),
    "link-loop": (("jsonl", "trec"), lambda g: _link("self"), "fail"),
    "bom": (ALL, lambda g: _maker(lambda d: b"\xef\xbb\xbf" + d, g), "ok"),
    "crlf": (("jsonl", "tsv", "trec", "qrels", "yaml"), lambda g: _maker(lambda d: d.replace(b"\n", b"\r\n"), g), "ok"),
    "tabs": (("trec", "qrels"), lambda g: _maker(lambda d: d.replace(b" ", b"\t"), g), "ok"),
    "yaml-broken": (("yaml",), lambda g: b"steps: [1, 2\nbatch_size: : 3\n", "fail"),
    "yaml-list": (("yaml",), lambda g: b"- steps\n- 1\n", "fail"),
    "yaml-unknown-key": (("yaml",), lambda g: b"steps: 1\nno_such_field: 3\n", "fail"),
    "yaml-wrong-type": (("yaml",), lambda g: b"log_every: ten\n", "fail"),
    "yaml-tabs": (("yaml",), lambda g: b"model:\n\tvocab_size: 128\n", "fail"),
    "yaml-includes-itself": (("yaml",), lambda g: b"include: bad.yaml\nsteps: 1\n", "fail"),
    "yaml-include-missing": (("yaml",), lambda g: b"include: nowhere.yaml\nsteps: 1\n", "fail"),
}
SWAPPED = {"jsonl": "qrels.txt", "tsv": "candidates.jsonl", "trec": "candidates.jsonl", "qrels": "run.trec",
           "yaml": "teacher.jsonl"}
EXTENSION = {"jsonl": ".jsonl", "tsv": ".tsv", "trec": ".trec", "qrels": ".txt", "yaml": ".yaml"}

TINY = ["--model.vocab-size=128", "--model.hidden-size=32", "--model.intermediate-size=64",
        "--model.num-attention-heads=4", "--model.num-key-value-heads=2", "--model.head-dim=8",
        "--data.max-prompt-len=48", "--data.max-target-len=16", "--data.max-comparison-prompt-len=96",
        "--data.group-size=4", "--batch-size=8", "--steps=1", "--data.tokenizer={F}/tok", "--output-dir=out"]
RUN = "{F}/tiny_run"


def _train(**paths: str) -> list[str]:
    flags = {"data.train-path": "teacher.jsonl", **paths}
    return ["train", *(f"--{k}={v}" for k, v in flags.items() if k != "config"), *TINY] + (
        ["--config", paths["config"]] if "config" in paths else [])


# (case id prefix, format, good file, argv given the bad file's name, extra files, which fair kinds to try)
FILE_FLAGS: list[tuple[str, str, str, Callable[[str], list[str]], dict, tuple[str, ...]]] = [
    ("import-teacher/--input", "jsonl", "release.jsonl",
     lambda p: ["import-teacher", "--input", p, "--format", "r2r", "--output", "out.jsonl"], {}, ("bom", "crlf")),
    ("retrieve/--queries", "jsonl", "queries.jsonl",
     lambda p: ["retrieve", "--queries", p, "--corpus", "corpus.jsonl", "--output", "out.jsonl", "--no-progress"], {},
     ("bom", "crlf")),
    ("retrieve/--queries(tsv)", "tsv", "queries.tsv",
     lambda p: ["retrieve", "--queries", p, "--corpus", "corpus.jsonl", "--output", "out.jsonl", "--no-progress"], {},
     ("bom", "crlf")),
    ("retrieve/--corpus", "jsonl", "corpus.jsonl",
     lambda p: ["retrieve", "--queries", "queries.tsv", "--corpus", p, "--output", "out.jsonl", "--no-progress"], {},
     ("bom", "crlf")),
    ("retrieve/--corpus(tsv)", "tsv", "corpus.tsv",
     lambda p: ["retrieve", "--queries", "queries.tsv", "--corpus", p, "--output", "out.jsonl", "--no-progress"], {},
     ("bom", "crlf")),
    ("mine-negatives/--teacher", "jsonl", "teacher.jsonl",
     lambda p: ["mine-negatives", "--teacher", p, "--output", "out.jsonl", "--count", "2", "--no-progress"], {},
     ("bom", "crlf")),
    ("teach/--candidates", "jsonl", "candidates.jsonl",
     lambda p: ["teach", "--candidates", p, "--output", "out.jsonl", "--teacher-model", "gpt-4o", "--dry-run"], {},
     ("bom", "crlf")),
    ("rerank/--candidates", "jsonl", "candidates.jsonl",
     lambda p: ["rerank", "--checkpoint", RUN, "--candidates", p, "--output", "out.trec"], {}, ("bom",)),
    ("rerank/--run", "trec", "run.trec",
     lambda p: ["rerank", "--checkpoint", RUN, "--run", p, "--corpus", "corpus.jsonl", "--queries", "queries.tsv",
                "--output", "out.trec"], {}, ("crlf",)),
    ("rerank/--corpus", "jsonl", "corpus.jsonl",
     lambda p: ["rerank", "--checkpoint", RUN, "--run", "run.trec", "--corpus", p, "--queries", "queries.tsv",
                "--output", "out.trec"], {}, ()),
    ("rerank/--queries", "tsv", "queries.tsv",
     lambda p: ["rerank", "--checkpoint", RUN, "--run", "run.trec", "--corpus", "corpus.jsonl", "--queries", p,
                "--output", "out.trec"], {}, ()),
    ("tune-fusion/--student-run", "trec", "run.trec",
     lambda p: ["tune-fusion", "--checkpoint", "student", "--student-run", p, "--candidates", "candidates.jsonl",
                "--qrels", "qrels.txt"], {"student": DIR}, ("bom", "tabs")),
    ("tune-fusion/--candidates", "jsonl", "candidates.jsonl",
     lambda p: ["tune-fusion", "--checkpoint", "student", "--student-run", "run.trec", "--candidates", p,
                "--qrels", "qrels.txt"], {"student": DIR}, ("bom",)),
    ("tune-fusion/--qrels", "qrels", "qrels.txt",
     lambda p: ["tune-fusion", "--checkpoint", "student", "--student-run", "run.trec", "--candidates",
                "candidates.jsonl", "--qrels", p], {"student": DIR}, ("crlf",)),
    ("evaluate/--run", "trec", "run.trec",
     lambda p: ["evaluate", "--run", p, "--qrels", "qrels.txt", "--report", "out.json"], {}, ("bom", "crlf", "tabs")),
    ("evaluate/--qrels", "qrels", "qrels.txt",
     lambda p: ["evaluate", "--run", "run.trec", "--qrels", p, "--report", "out.json"], {}, ("bom", "crlf", "tabs")),
    ("evaluate/--compare", "trec", "run_b.trec",
     lambda p: ["evaluate", "--run", "run.trec", "--qrels", "qrels.txt", "--compare", p, "--report", "out.json"], {},
     ("bom",)),
    ("evaluate-reasons/--teacher", "jsonl", "teacher.jsonl",
     lambda p: ["evaluate-reasons", "--explanations", "explanations.jsonl", "--teacher", p, "--output", "out.json"],
     {}, ("bom", "crlf")),
    ("evaluate-reasons/--explanations", "jsonl", "explanations.jsonl",
     lambda p: ["evaluate-reasons", "--explanations", p, "--teacher", "teacher.jsonl", "--output", "out.json"], {},
     ("bom", "crlf")),
    ("train/--data.train-path", "jsonl", "teacher.jsonl", lambda p: _train(**{"data.train-path": p}), {}, ("bom",)),
    ("train/--data.dev-candidates", "jsonl", "candidates.jsonl",
     lambda p: _train(**{"data.dev-candidates": p, "data.dev-qrels": "qrels.txt"}), {}, ()),
    ("train/--data.dev-qrels", "qrels", "qrels.txt",
     lambda p: _train(**{"data.dev-candidates": "candidates.jsonl", "data.dev-qrels": p}), {}, ()),
    ("train/--config", "yaml", "config.yaml", lambda p: _train(config=p), {}, ("bom",)),
    ("compile/--config", "yaml", "config.yaml",
     lambda p: ["compile", "--config", p, "--topology", "h100:1", "--skip-flops", "--skip-score", "--report",
                "out.json"], {}, ()),
    ("demo/--config", "yaml", "config.yaml", lambda p: ["demo", "--config", p, "--output-dir", "out"], {}, ()),
    ("check-parity/--prompts", "jsonl", "candidates.jsonl",
     lambda p: ["check-parity", "--model", "{F}/export", "--checkpoint", RUN, "--prompts", p], {}, ()),
]


def outputs_written(folder: Path) -> str | None:
    """What an accepted fair input must leave: an output (named out*), with no byte-order mark or carriage return
    carried into it from the input."""
    outs = [p for p in folder.iterdir() if p.name.startswith("out")]
    files = [f for p in outs for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    for f in files:
        data = f.read_bytes()[: 1 << 20]
        if b"\xef\xbb\xbf" in data or "\ufeff".encode("unicode_escape") in data:
            return f"byte-order mark carried into {f.relative_to(folder)}"
        if f.suffix in (".jsonl", ".trec", ".txt") and b"\r" in data:
            return f"carriage return carried into {f.relative_to(folder)}"
    return None


# kinds tests/test_bad_inputs.py already tries on the flags it covers: here only on the flags it does not
CLASSIC = ("missing", "empty", "folder", "latin1", "cut")
COVERED = ("import-teacher/--input", "retrieve/--queries", "retrieve/--corpus", "teach/--candidates",
           "rerank/--candidates", "evaluate/--run", "evaluate/--qrels", "evaluate-reasons/--teacher", "train/--config",
           "train/--data.train-path")


def tried(kind: str, prefix: str, index: int, fair: tuple[str, ...]) -> bool:
    """Whether flag number `index` meets `kind`: every fair kind it lists, the classic kinds where the tests do
    not try them, the kinds of TREC, TSV and YAML files on every such flag, and each other kind on every second
    flag (alternating, so every command meets half of them and every kind half of the commands)."""
    if KINDS[kind][2] == "ok":
        return kind in fair
    if kind in CLASSIC:
        return prefix not in COVERED
    if "jsonl" not in KINDS[kind][0]:  # a kind of the few TREC, TSV or YAML flags meets every one of them
        return True
    return (index + sum(map(ord, kind))) % 2 == 0


# commands that import row by row by design: a bad row is rejected and named, the good ones are written (exit 0;
# --strict makes a rejected row fatal)
ROW_BY_ROW = ("import-teacher/--input",)


def _spellings(flag: str) -> tuple[str, ...]:
    """How an error line may name a flag: --data.dev-qrels, or the config field data.dev_qrels."""
    return (flag, flag.lstrip("-").replace("-", "_")) if "." in flag else (flag,)


def file_cases() -> list[Case]:
    cases = []
    for index, (prefix, fmt, good, argv, extra, fair) in enumerate(FILE_FLAGS):
        flag = prefix.split("/")[1].split("(")[0]
        for kind, (formats, make, expect) in KINDS.items():
            if fmt not in formats or not tried(kind, prefix, index, fair):
                continue
            name = "bad" + EXTENSION[fmt]
            files = {**goods(), **extra}
            value = make(good)
            if kind == "swapped":
                value = f"@{SWAPPED[fmt]}"
            if value is not None:
                files[name] = value
            case_argv = argv("/dev/null" if kind == "dev-null" else name)
            names = (name, *_spellings(flag), *(("/dev/null",) if kind == "dev-null" else ()))
            says = None
            if prefix in ROW_BY_ROW and expect == "fail":  # a bad row is left out and named; the rest is kept
                expect, says = "either", "rejected"
            cases.append(Case(f"{prefix}/{kind}", case_argv, files, expect=expect, names=names, kind=f"file:{kind}",
                              check=outputs_written if expect != "fail" else None, says=says))
        for kind, target in (("swapped", f"@{SWAPPED[fmt]}"), ("dev-null", None))[index % 2:][:1]:
            name = "bad" + EXTENSION[fmt]
            files = {**goods(), **extra, **({name: target} if target else {})}
            case_argv = argv("/dev/null" if target is None else name)
            cases.append(Case(f"{prefix}/{kind}", case_argv, files, names=(name, *_spellings(flag), "/dev/null"),
                              kind=f"file:{kind}"))
    return cases


def all_cases() -> list[Case]:
    from hostile_cases_flags import flag_cases
    from hostile_cases_models import model_cases
    from hostile_special import special_cases

    return file_cases() + flag_cases() + model_cases() + special_cases()
