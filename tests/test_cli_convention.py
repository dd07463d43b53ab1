"""One CLI convention: docs/cli.md's flag table agrees with every command's `--help`, renamed flags keep their
old spelling (hidden from help), every help shows its defaults and ends with an example that parses, and
`--help` loads no heavy library (jax, torch, ...), so it answers at once."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from r2r_jax import cli
from r2r_jax.cli_types import old_spellings, shows_default

REPO = Path(__file__).resolve().parents[1]
DATA_ACTIONS = ("list", "add", "fetch", "path")
# every `r2r ... --help` there is: the commands, and the actions of `r2r data`
HELPS = [*cli.COMMANDS, *(f"data {a}" for a in DATA_ACTIONS)]
OWN_MAIN = ("train", "demo")  # commands that parse their own arguments (`main(argv)`)
# what `--help` must not import: each costs from a few tenths of a second (openai, scipy) to seconds (jax, torch)
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "torch", "transformers", "tokenizers", "safetensors", "scipy",
         "matplotlib", "ir_measures", "pytrec_eval", "pyserini", "datasets", "pyarrow", "pandas", "openai", "bm25s",
         "sacrebleu", "rouge_score", "gguf", "tensorboardX")
OPTION_LINE = re.compile(r"^  (?:-\w, )?(--[A-Za-z][\w.-]*)")  # an option as argparse and config_help list it


def help_text(name: str) -> str:
    """What `r2r <name> --help` prints."""
    parts = name.split()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main([*parts, "--help"]) == 0
    return out.getvalue()


def parser_of(name: str):
    """The argparse parser behind `r2r <name>` (a `data` action: its sub-parser)."""
    command, *action = name.split()
    parser = cli.build_parser(command)
    if action:
        sub = next(a for a in parser._actions if a.choices and action[0] in a.choices)  # the subparsers action
        parser = sub.choices[action[0]]
    return parser


def listed_flags(text: str) -> set[str]:
    """The options a help text lists (not the placeholder `--section.field` of the config overrides)."""
    found = {m.group(1) for line in text.splitlines() if (m := OPTION_LINE.match(line))}
    return found - {"--help", "--section.field"}


def flags_by_command() -> dict[str, set[str]]:
    return {name: listed_flags(help_text(name)) for name in HELPS}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def doc_table() -> list[dict]:
    """docs/cli.md's flag table: one row per concept, with its flags, commands and old spellings."""
    lines = (REPO / "docs" / "cli.md").read_text().splitlines()
    start = lines.index("| concept | flag | commands | old spellings |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        concept, flags, commands, old = _cells(line)
        names = set(cli.COMMANDS) if commands == "every command" else {c.strip() for c in commands.split(",")}
        renamed = []  # (old spelling, commands it is accepted by)
        for item in filter(None, (o.strip() for o in re.split(r",\s*(?=`)", old))):
            match = re.fullmatch(r"`(--[\w.-]+)`(?: \(([^)]*)\))?", item)
            assert match, f"docs/cli.md: cannot read old spelling {item!r} of {flags}"
            where = {c.strip() for c in match.group(2).split(",")} if match.group(2) else names
            renamed.append((match.group(1), where))
        rows.append({"concept": concept, "flags": re.findall(r"`(--[\w.-]+)`", flags), "commands": names,
                     "old": renamed})
    return rows


def test_flag_table_matches_every_help():
    rows, helps = doc_table(), flags_by_command()
    assert len({r["concept"] for r in rows}) == len(rows), "a concept has two rows"
    documented = [f for r in rows for f in r["flags"]]
    assert len(set(documented)) == len(documented), "a flag has two rows (two concepts)"
    for row in rows:
        for flag in row["flags"]:
            taking = {name for name, flags in helps.items() if flag in flags}
            assert taking == row["commands"], f"docs/cli.md lists {flag} for {sorted(row['commands'])}, " \
                                              f"but --help shows it for {sorted(taking)}"
    shared = {f for f in set().union(*helps.values()) if sum(f in flags for flags in helps.values()) > 1}
    missing = sorted(shared - set(documented))
    assert not missing, f"flags shared by commands but not in docs/cli.md: {missing}"


def test_old_spellings_work_hidden_and_are_all_documented():
    documented = {(command, old, row["flags"][0]) for row in doc_table() for old, where in row["old"]
                  for command in where}
    found = set()
    for name in HELPS:
        if name.split()[0] in OWN_MAIN:
            continue
        parser, text = parser_of(name), help_text(name)
        shown = set(re.split(r"[\s\[\]|,()]+", text))
        for action in parser._actions:
            for old in old_spellings(action):
                new = action.option_strings[0]
                found.add((name, old, new))
                assert old not in shown, f"r2r {name} --help shows the old spelling {old}"
                assert parser._option_string_actions[old] is action  # parsed exactly as the new spelling
    assert found == documented


@pytest.mark.parametrize("name", [h for h in HELPS if h.split()[0] not in OWN_MAIN])
def test_every_default_is_shown(name):
    parser = parser_of(name)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if shows_default(action):
            text = formatter._expand_help(action)
            flag = action.option_strings[0]
            assert "default" in text and str(action.default) in text, \
                f"r2r {name} {flag}: help does not show its default {action.default!r}"


def test_config_commands_show_every_default():
    """`train` and `demo` print their own help: every option that takes a value (`--flag METAVAR`, not a
    switch such as --debug) states its default; `--config` has none and the override placeholder is not one."""
    for name in OWN_MAIN:
        text = help_text(name).split("\nexample:")[0]
        blocks = [b for b in re.split(r"\n(?=  --)", text) if b.startswith("  --")]
        valued = [b for b in blocks if re.match(r"  --[\w.-]+ (?:[A-Z][A-Z_]*|\{)", b)
                  and not b.startswith(("  --config ", "  --section.field "))]
        assert len(valued) >= 2, f"r2r {name} --help lists no options"
        for block in valued:
            assert "default" in block, f"r2r {name} --help: no default in {block.strip()!r}"


def _example(text: str, name: str) -> list[str]:
    tail = text.split("\nexample:\n", 1)
    assert len(tail) == 2, f"r2r {name} --help has no example"
    words = shlex.split(tail[1].strip().splitlines()[0])
    assert words[: 1 + len(name.split())] == ["r2r", *name.split()], f"r2r {name}'s example runs {words[:3]}"
    return words[1 + len(name.split()):]


@pytest.mark.parametrize("name", HELPS)
def test_every_help_has_an_example_that_parses_with_current_flags(name):
    args = _example(help_text(name), name)
    if name == "train":
        from r2r_jax.config import TrainConfig
        from r2r_jax.config_io import load_config

        load_config(TrainConfig, args, prog="r2r train")
        return
    if name == "demo":
        from pathlib import Path as P

        from r2r_jax.demo import _split_flags, demo_config

        own, rest = _split_flags(args)
        demo_config(rest, P(own["output-dir"]), P(own["base-dir"]))
        return
    parser = parser_of(name)
    parser.parse_args(args)
    old = {o for a in parser._actions for o in old_spellings(a)}
    assert not old & {a.split("=")[0] for a in args}, f"r2r {name}'s example uses an old spelling"


HELP_PROBE = """
import contextlib, io, json, os, sys, time
from r2r_jax import cli
for name in sys.argv[1:]:  # each help in a fork of this interpreter, which has loaded only r2r_jax.cli
    read, write = os.pipe()
    if os.fork() == 0:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(name.split() + ["--help"])
        report = {"name": name, "code": code, "seconds": time.perf_counter() - start, "modules": sorted(sys.modules)}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        print(f.read())
    os.wait()
"""


def test_help_loads_no_heavy_library(capsys):
    """Each `r2r ... --help` in a fresh fork of an interpreter that has loaded only the `r2r` entry point, timed
    (shown with -s) but judged by what it imported: wall time on a shared host varies, an import of jax or
    torch does not."""
    proc = subprocess.run([sys.executable, "-c", HELP_PROBE, *HELPS], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["name"] for r in reports] == HELPS
    heavy = {}
    for r in reports:
        assert r["code"] == 0, r["name"]
        loaded = {m.split(".")[0] for m in r["modules"]} & set(HEAVY)
        if loaded:
            heavy[r["name"]] = sorted(loaded)
        with capsys.disabled():
            print(f"r2r {r['name']} --help: {r['seconds']:.3f} s")
    assert not heavy, f"--help imports heavy libraries: {heavy}"


START = r"(?<![\w/.-])"  # `r2r` as a word of its own, not the end of a path such as runs/r2r


def _command_lines(text: str) -> list[tuple[str, list[str]]]:
    """(command, its words) for every `r2r <command> ...` written in a document (backslash continuations
    joined; a line may hold several, as in `a && b`)."""
    text = text.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        for match in re.finditer(rf"{START}r2r ([a-z][a-z-]*)((?:(?!{START}r2r |`|&&| \| |\"|\)$).)*)", line):
            out.append((match.group(1), match.group(2).split()))
    return out


def test_docs_and_docstrings_use_the_current_spellings():
    renamed = [(command.split()[0], old) for row in doc_table() for old, where in row["old"] for command in where]
    files = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "benchmarks").glob("*.sh")), *sorted((REPO / "benchmarks").glob("*.py")),
             *sorted((REPO / "launch").glob("*")), *sorted((REPO / "configs").glob("*.yaml")),
             *sorted((REPO / "r2r_jax").rglob("*.py"))]
    stale = []
    for path in files:
        if not path.is_file() or path.name == "cli.md":
            continue
        for command, words in _command_lines(path.read_text()):
            for name, old in renamed:
                if command == name and any(w == old or w.startswith(old + "=") for w in words):
                    stale.append(f"{path.relative_to(REPO)}: r2r {command} ... {old}")
    assert not stale, "old flag spellings in the docs:\n" + "\n".join(sorted(set(stale)))
