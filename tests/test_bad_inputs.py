"""Every command against bad input: one line `r2r <command>: error: ...` naming the file or flag, exit 2, no
traceback, and no output written. The table is commands x kinds of bad input (missing, empty, truncated
mid-line, wrong format, a directory for a file, non-UTF-8, out-of-range numbers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from r2r_jax import cli
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, write_candidates
from r2r_jax.data.records import write_records
from r2r_jax.data.synthetic import make_synthetic_records, synthetic_tokenizer

BAD_FILES = ("missing", "empty", "truncated", "wrong_format", "directory", "not_utf8")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("good")
    queries = [QueryCandidates(f"q{i}", f"query {i}", [ScoredPassage(f"d{i}-{j}", f"passage {j} of {i}", 9.0 - j)
                                                        for j in range(3)]) for i in range(2)]
    write_candidates(d / "candidates.jsonl", queries)
    write_records(d / "teacher.jsonl", make_synthetic_records(2, seed=0))
    (d / "queries.jsonl").write_text('{"qid": "q0", "text": "query zero"}\n{"qid": "q1", "text": "query one"}\n')
    (d / "corpus.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "contents": f"text {i}"}) + "\n"
                                            for i in range(3)))
    (d / "qrels.txt").write_text("q0 0 d0-0 1\nq1 0 d1-1 2\n")
    (d / "run.trec").write_text("q0 Q0 d0-0 1 3.0 t\nq1 Q0 d1-1 1 2.0 t\n")
    (d / "config.yaml").write_text("steps: 1\nbatch_size: 2\n")
    synthetic_tokenizer().save_pretrained(d / "tok")
    return d


def make_bad(kind: str, good_file: Path, where: Path) -> Path:
    """A bad version of `good_file` (its wrong-format twin is a file of another layout)."""
    path = where / f"bad_{kind}{good_file.suffix}"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_text("")
    elif kind == "truncated":
        first, second = good_file.read_text().splitlines()[:2]
        path.write_text(f"{first}\n{second[: len(second) // 2]}")  # the second line cut in the middle
    elif kind == "wrong_format":
        path.write_text("this is not the layout this flag reads\x00{[\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "not_utf8":
        path.write_bytes(good_file.read_bytes()[:20] + b"\xff\xfe\xfa caf\xe9\n")
    return path


# command -> (the flag under test, the good file it reads, argv built from (bad path, good files, output))
Argv = Callable[[Path, dict[str, Path], Path], list[str]]
FILE_FLAGS: dict[str, tuple[str, str, Argv]] = {
    "import-teacher": ("--input", "teacher.jsonl", lambda p, g, o: [
        "import-teacher", "--input", str(p), "--format", "r2r", "--output", str(o)]),
    "retrieve --queries": ("--queries", "queries.jsonl", lambda p, g, o: [
        "retrieve", "--queries", str(p), "--corpus", str(g["corpus.jsonl"]), "--output", str(o), "--no-progress"]),
    "retrieve --corpus": ("--corpus", "corpus.jsonl", lambda p, g, o: [
        "retrieve", "--queries", str(g["queries.jsonl"]), "--corpus", str(p), "--output", str(o), "--no-progress"]),
    "teach": ("--candidates", "candidates.jsonl", lambda p, g, o: [
        "teach", "--candidates", str(p), "--output", str(o), "--model", "gpt-4o", "--dry-run"]),
    "rerank": ("--candidates", "candidates.jsonl", lambda p, g, o: [
        "rerank", "--candidates", str(p), "--checkpoint", str(o.parent / "no_run"), "--output", str(o)]),
    "evaluate --run": ("--run", "run.trec", lambda p, g, o: [
        "evaluate", "--run", str(p), "--qrels", str(g["qrels.txt"]), "--json", str(o)]),
    "evaluate --qrels": ("--qrels", "qrels.txt", lambda p, g, o: [
        "evaluate", "--run", str(g["run.trec"]), "--qrels", str(p), "--json", str(o)]),
    "evaluate-reasons": ("--teacher", "teacher.jsonl", lambda p, g, o: [
        "evaluate-reasons", "--teacher", str(p), "--checkpoint", str(o.parent / "no_run"), "--output", str(o)]),
    "train --config": ("--config", "config.yaml", lambda p, g, o: [
        "train", "--config", str(p), f"--output_dir={o}"]),
    "train --data.train_path": ("data.train_path", "teacher.jsonl", lambda p, g, o: [
        "train", f"--data.train_path={p}", f"--data.tokenizer={g['tok']}", f"--output_dir={o}"]),
}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse exits
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(code: int, err: str, command: str, names: tuple[str, ...]) -> None:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"r2r {command}: error: "), err
    assert any(n in lines[0] for n in names), f"{names} not named in: {lines[0]}"


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("case", sorted(FILE_FLAGS))
def test_bad_input_files(case, kind, good, tmp_path, capsys):
    flag, good_name, argv = FILE_FLAGS[case]
    bad = make_bad(kind, good / good_name, tmp_path)
    out = tmp_path / "out" / "result"
    files = {name: good / name for name in ("corpus.jsonl", "queries.jsonl", "run.trec", "qrels.txt", "tok")}
    code, err = run_cli(argv(bad, files, out), capsys)
    assert_one_line_error(code, err, case.split()[0], (bad.name, flag))
    assert not out.exists() and not list(out.parent.glob("*")) if out.parent.exists() else True


NUMBERS = [
    (["teach", "--candidates", "{c}", "--output", "{o}", "--model", "m", "--limit", "-3"], "--limit"),
    (["teach", "--candidates", "{c}", "--output", "{o}", "--model", "m", "--temperature", "-1"], "--temperature"),
    (["teach", "--candidates", "{c}", "--output", "{o}", "--model", "m", "--max-cost", "-1"], "--max-cost"),
    (["teach", "--candidates", "{c}", "--output", "{o}", "--model", "m", "--concurrency", "0"], "--concurrency"),
    (["teach", "--candidates", "{c}", "--output", "{o}", "--model", "m", "--timeout", "nan"], "--timeout"),
    (["evaluate", "--run", "{r}", "--qrels", "{q}", "--rel-level", "-3"], "--rel-level"),
    (["evaluate", "--run", "{r}", "--qrels", "{q}", "--permutations", "-5"], "--permutations"),
    (["check-parity", "--hf", "{o}", "--tol", "-1"], "--tol"),
    (["import-teacher", "--input", "{t}", "--format", "r2r", "--output", "{o}", "--show", "-1"], "--show"),
    (["retrieve", "--queries", "{qs}", "--corpus", "{k}", "--output", "{o}", "--top-k", "0"], "--top-k"),
    (["retrieve", "--queries", "{qs}", "--corpus", "{k}", "--output", "{o}", "--b", "1.5"], "--b"),
    (["rerank", "--candidates", "{c}", "--checkpoint", "{o}", "--output", "{o}", "--batch-size", "0"], "--batch-size"),
    (["rerank", "--candidates", "{c}", "--checkpoint", "{o}", "--output", "{o}", "--explain-top", "-1"],
     "--explain-top"),
    (["rerank", "--candidates", "{c}", "--checkpoint", "{o}", "--output", "{o}", "--temperature", "-1"],
     "--temperature"),
    (["evaluate-reasons", "--teacher", "{t}", "--checkpoint", "{o}", "--output", "{o}", "--max-queries", "0"],
     "--max-queries"),
    (["train", "--steps=0", "--output_dir={o}"], "steps"),
    (["train", "--optim.learning_rate=-1", "--output_dir={o}"], "learning_rate"),
    (["train", "--data.random_negatives=-2", "--output_dir={o}"], "random_negatives"),
    (["train", "--data.hard-negatives=-1", "--output_dir={o}"], "hard_negatives"),
    (["train", "--data.pack-length=512", "--output_dir={o}"], "pack_rows"),
    (["train", "--data.pack-length=16", "--data.pack-rows=2", "--output_dir={o}"], "pack_length"),
    (["train", "--batch_size=3", "--micro_batches=2", "--output_dir={o}"], "micro_batches"),
    (["train", "--loss.gamma-comparison=-0.5", "--output-dir={o}"], "gamma_comparison"),
]


@pytest.mark.parametrize("argv,flag", NUMBERS, ids=[f"{a[0]} {f}" for a, f in NUMBERS])
def test_out_of_range_numbers_name_the_flag(argv, flag, good, tmp_path, capsys):
    out = tmp_path / "out"
    values = {"c": good / "candidates.jsonl", "o": out, "r": good / "run.trec", "q": good / "qrels.txt",
              "t": good / "teacher.jsonl", "qs": good / "queries.jsonl", "k": good / "corpus.jsonl"}
    code, err = run_cli([a.format(**{k: str(v) for k, v in values.items()}) for a in argv], capsys)
    assert_one_line_error(code, err, argv[0], (flag,))
    assert not out.exists()


def test_unknown_command_and_bare_help(capsys):
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name}" in text and "(" not in text.split("\n")[0]


def test_a_torn_checkpoint_is_named_with_its_step(good, tmp_path, capsys):
    """Truncated array files in the latest checkpoint: resuming, reranking and exporting each print one line
    naming the checkpoint and step (exit 2), and leave the run as it was."""
    run = tmp_path / "run"
    write_records(tmp_path / "teacher.jsonl", make_synthetic_records(8, seed=0))
    common = [f"--data.train_path={tmp_path / 'teacher.jsonl'}", f"--data.tokenizer={good / 'tok'}",
              "--model.vocab_size=128", "--data.max_prompt_len=40", "--data.max_target_len=16",
              "--data.max_comparison_prompt_len=64", "--data.group_size=4", "--batch_size=8", "--save_every=2",
              f"--output_dir={run}"]
    assert cli.main(["train", "--steps=2", *common]) == 0
    capsys.readouterr()
    for f in (run / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 64:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    commands = [
        ["train", "--steps=4", *common],
        ["rerank", "--checkpoint", str(run), "--candidates", str(good / "candidates.jsonl"), "--output",
         str(tmp_path / "run.trec")],
        ["export", "--checkpoint", str(run), "--format", "seq-cls", "--output", str(tmp_path / "export")],
    ]
    for argv in commands:
        code, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, argv[0], ("cannot restore the checkpoint of step 2",))
        assert str(run / "checkpoints" / "2") in err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before
    assert not (tmp_path / "run.trec").exists() and not (tmp_path / "export").exists()


# folder and model-file inputs: a missing path, a plain file where a folder is expected (or the reverse), an
# empty folder, a file of the wrong kind
FOLDER_INPUTS = [
    (["check-parity", "--hf", "{missing}"], "no config.json"),
    (["check-parity", "--hf", "{file}"], "no config.json"),
    (["check-parity", "--hf", "{empty}"], "no config.json"),
    (["export", "--checkpoint", "{missing}", "--format", "peft", "--output", "{out}"], "no such checkpoint"),
    (["export", "--checkpoint", "{file}", "--format", "peft", "--output", "{out}"], "no such checkpoint"),
    (["export", "--checkpoint", "{empty}", "--format", "peft", "--output", "{out}"], "holds no finished checkpoint"),
    (["base", "{missing}.gguf", "--output", "{out}"], "no such file"),
    (["base", "{file}", "--output", "{out}"], "nor a .gguf file"),
    (["base", "{empty}", "--output", "{out}"], "nor a .gguf file"),
    (["base", "{garbage}", "--output", "{out}"], "not a readable GGUF file"),
    (["compile", "--config", "{missing}", "--topology", "v5p:2x2x1"], "no such file"),
    (["compile", "--config", "{empty}", "--topology", "v5p:2x2x1"], "is a directory"),
    (["compile", "--config", "{file}", "--topology", "v5p:2x2x1"], "expected a mapping"),
]


@pytest.mark.parametrize("argv,message", FOLDER_INPUTS, ids=[f"{a[0]} {a[2]} {m}" for a, m in FOLDER_INPUTS])
def test_folder_and_model_inputs_fail_in_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "plain.txt").write_text("x\n")
    (tmp_path / "garbage.gguf").write_bytes(b"\xff\xfe")
    names = {"missing": tmp_path / "missing", "file": tmp_path / "plain.txt", "empty": tmp_path / "empty",
             "garbage": tmp_path / "garbage.gguf", "out": tmp_path / "out"}
    code, err = run_cli([a.format(**names) for a in argv], capsys)
    assert_one_line_error(code, err, argv[0], (message,))
    assert not (tmp_path / "out").exists()


OUTPUT_IS_INPUT = [
    (["rerank", "--candidates", "{f}", "--checkpoint", "{o}", "--output", "{f}"], ("--output", "--candidates")),
    (["rerank", "--candidates", "{f}", "--checkpoint", "{o}", "--output", "{t}", "--explanations", "{t}"],
     ("--output", "--explanations")),
    (["import-teacher", "--input", "{f}", "--format", "r2r", "--output", "{f}"], ("--output", "--input")),
    (["import-teacher", "--input", "{f}", "--format", "r2r", "--output", "{t}", "--report", "{f}"],
     ("--report", "--input")),
    (["retrieve", "--queries", "{f}", "--corpus", "{t}", "--output", "{f}"], ("--output", "--queries")),
    (["evaluate", "--run", "{f}", "--qrels", "{t}", "--json", "{f}"], ("--json", "--run")),
    (["evaluate-reasons", "--teacher", "{f}", "--checkpoint", "{o}", "--output", "{f}"], ("--output", "--teacher")),
    (["teach", "--candidates", "{f}", "--output", "{f}", "--model", "m", "--dry-run"], ("--output", "--candidates")),
    (["teach", "--candidates", "{t}", "--output", "{f}", "--cache", "{f}", "--model", "m", "--dry-run"],
     ("--output", "--cache")),
    (["compile", "--config", "{f}", "--topology", "v5p:2x2x1", "--json", "{f}"], ("--json", "--config")),
]


@pytest.mark.parametrize("argv,flags", OUTPUT_IS_INPUT, ids=[f"{a[0]} {' '.join(f)}" for a, f in OUTPUT_IS_INPUT])
def test_an_output_that_is_an_input_is_refused_before_anything_runs(argv, flags, tmp_path, capsys):
    """Writing a command's output over one of its inputs (or over another output) would destroy it: one line
    naming both flags, exit 2, the file untouched."""
    keep = tmp_path / "keep.txt"
    keep.write_text("keep me\n")
    names = {"f": keep, "t": tmp_path / "other.txt", "o": tmp_path / "no_run"}
    code, err = run_cli([a.format(**names) for a in argv], capsys)
    assert_one_line_error(code, err, argv[0], ("is also",))
    assert all(f in err for f in flags) and keep.read_text() == "keep me\n"


def test_an_interrupt_lost_in_a_callback_is_raised_again():
    """Ctrl-C that lands in a callback Python cannot raise from (here a `__del__`; in a job, jax's garbage-
    collector callback) is not swallowed: no "Exception ignored" traceback, and the main thread gets it."""
    import subprocess
    import sys

    program = """
import time
from r2r_jax.cli import redeliver_lost_interrupts
redeliver_lost_interrupts()
class Lost:
    def __del__(self):
        raise KeyboardInterrupt
Lost()
try:
    time.sleep(5)
    print("carried on")
except KeyboardInterrupt:
    print("interrupted")
"""
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "interrupted" and "Exception ignored" not in proc.stderr, proc.stderr
