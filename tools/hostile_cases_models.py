"""Sweep cases: broken trained runs, exports, GGUF files, base folders and named data sets.

A broken run is a copy of the sweep's tiny run with one thing done to it (a checkpoint file cut, a folder
removed, a file replaced by garbage); every command that reads a run meets each. Cases whose failure is a
checkpoint restore run the `r2r` executable itself (mode "fresh"): orbax's abandoned reads finish in the
background, and only a process of its own shows what a user would see."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from hostile_case import DIR, Case
from hostile_cases import goods

from r2r_jax.testing.gguf_files import write_gguf, written_base

Damage = Callable[[Path], None]


def _step(run: Path) -> Path:
    return max((p for p in (run / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def _largest(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_all(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            p.write_bytes(b"")


def _edit_yaml(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


# damage -> (what it does to a copy of the tiny run, whether the failure comes from a restore)
RUN_DAMAGE: dict[str, tuple[Damage, bool]] = {
    "torn-array-file": (lambda r: _cut(_largest(_step(r) / "state")), True),
    "zeroed-arrays": (lambda r: _zero_all(_step(r) / "state"), True),
    "state-folder-gone": (lambda r: shutil.rmtree(_step(r) / "state"), True),
    "meta-garbage": (lambda r: (_step(r) / "meta" / "metadata").write_bytes(b"\x00garbage{"), False),
    "checkpoint-metadata-garbage": (lambda r: (_step(r) / "_CHECKPOINT_METADATA").write_text("{nope"), False),
    "unfinished-save": (lambda r: [p.unlink() for p in _step(r).rglob("commit_success.txt")], False),
    "no-checkpoints": (lambda r: [shutil.rmtree(p) for p in (r / "checkpoints").iterdir()], False),
    "checkpoints-folder-gone": (lambda r: shutil.rmtree(r / "checkpoints"), False),
    "step-is-a-file": (lambda r: (shutil.rmtree(_step(r)), _step_file(r)), False),
    "config-garbage": (lambda r: (r / "config.yaml").write_text("model: [unclosed\n"), False),
    "config-gone": (lambda r: (r / "config.yaml").unlink(), False),
    "rerank-default-garbage": (lambda r: (r / "rerank_default.json").write_text("{not json"), False),
    "rerank-default-wrong-types": (lambda r: (r / "rerank_default.json").write_text(
        json.dumps({"fusion": {"method": "bogus", "weight": "heavy", "depth": -3}})), False),
}


def _step_file(run: Path) -> None:
    (run / "checkpoints" / "2").write_text("not a checkpoint\n")


def _damaged_run(damage: Damage):
    def make(path: Path, fixtures: Path) -> None:
        shutil.copytree(fixtures / "tiny_run", path, symlinks=True)
        damage(path)
    return make


# command -> argv reading the run at "run" (outputs named out*)
RUN_READERS = {
    "rerank": ["rerank", "--checkpoint", "run", "--candidates", "candidates.jsonl", "--output", "out.trec"],
    "export": ["export", "--checkpoint", "run", "--format", "seq-cls", "--output-dir", "out"],
    "evaluate-reasons": ["evaluate-reasons", "--checkpoint", "run", "--teacher", "teacher.jsonl", "--output",
                         "out.json", "--max-queries", "1"],
    "check-parity": ["check-parity", "--model", "{F}/export", "--checkpoint", "run"],
    "train": ["train", "--config", "run/config.yaml", "--output-dir=run", "--steps=4"],  # resume, more steps
}
# (command, damage) a command may take in its stride: a resume that starts afresh where no finished checkpoint
# is left (and may write into the run), a file the command does not read (the run's config.yaml is a copy for
# people: readers take the config saved with the checkpoint; only an export reads no ranking default), orbax's
# own bookkeeping it does not need on a local disk (_CHECKPOINT_METADATA, commit_success.txt)
EITHER = {("train", d) for d in ("unfinished-save", "no-checkpoints", "checkpoints-folder-gone", "step-is-a-file",
                                 "checkpoint-metadata-garbage")}
EITHER |= {(c, d) for c in RUN_READERS if c != "train" for d in ("config-garbage", "config-gone",
                                                                  "checkpoint-metadata-garbage", "unfinished-save")}
EITHER |= {("export", "rerank-default-garbage"), ("export", "rerank-default-wrong-types")}
# the damages each command meets (every command meets the restore failures' first)
SKIP = {"check-parity": ("rerank-default-garbage", "rerank-default-wrong-types", "config-garbage"),
        "evaluate-reasons": ("rerank-default-garbage", "rerank-default-wrong-types", "zeroed-arrays",
                             "state-folder-gone"),
        "train": ("rerank-default-garbage", "rerank-default-wrong-types", "zeroed-arrays", "state-folder-gone")}


def run_cases() -> list[Case]:
    cases = []
    for command, argv in RUN_READERS.items():
        for damage, (make, restore) in RUN_DAMAGE.items():
            if damage in SKIP.get(command, ()):
                continue
            names = ("run", "checkpoint", "rerank_default.json", "config.yaml")
            either = (command, damage) in EITHER
            resumed = ("run/*", "run/**") if either and command == "train" else ()
            cases.append(Case(f"{command}/run-{damage}", argv, {**goods(), "run": _damaged_run(make)}, names=names,
                              mode="fresh" if restore else "inproc", kind=f"checkpoint:{damage}",
                              expect="either" if either else "fail", changes=resumed, leaves=resumed,
                              check=(lambda f: None) if either else None))
    missing_step = ["rerank", "--checkpoint", "run/checkpoints/99", "--candidates", "candidates.jsonl", "--output",
                    "out.trec"]
    cases += [
        Case("rerank/--checkpoint-step-missing", missing_step, {**goods(), "run": "@tiny_run"},
             names=("99", "checkpoints"), kind="checkpoint:missing-step"),
        Case("export/--checkpoint-is-a-file", ["export", "--checkpoint", "qrels.txt", "--format", "seq-cls",
                                               "--output-dir", "out"], goods(), names=("qrels.txt",),
             kind="checkpoint:file"),
        Case("rerank/--checkpoint-is-an-export", ["rerank", "--checkpoint", "{F}/export", "--candidates",
                                                  "candidates.jsonl", "--output", "out.trec"], goods(),
             names=("export", "--model", "checkpoint"), kind="checkpoint:export"),
        Case("rerank/--model-is-a-run", ["rerank", "--model", "{F}/tiny_run", "--candidates", "candidates.jsonl",
                                         "--output", "out.trec"], goods(),
             names=("tiny_run", "--checkpoint", "config.json"), kind="model:run"),
        Case("train/resume-other-shape", ["train", "--config", "run/config.yaml", "--output-dir=run", "--steps=4",
                                         "--model.hidden-size=64"],
             {**goods(), "run": "@tiny_run"}, names=("hidden_size",), kind="checkpoint:shape"),
        Case("train/resume-other-lora", ["train", "--config", "run/config.yaml", "--output-dir=run", "--steps=4",
                                        "--lora.rank=2"],
             {**goods(), "run": "@tiny_run"}, names=("rank", "lora"), kind="checkpoint:shape"),
        Case("check-parity/--checkpoint-other-run", ["check-parity", "--model", "{F}/export", "--checkpoint",
                                                     "other"], {**goods(), "other": DIR}, names=("other",),
             kind="checkpoint:empty"),
    ]
    return cases


def _export_copy(damage: Damage):
    def make(path: Path, fixtures: Path) -> None:
        shutil.copytree(fixtures / "export", path, symlinks=True)
        damage(path)
    return make


def _weights(folder: Path) -> Path:
    return next(iter(sorted(folder.glob("*.safetensors"))))


EXPORT_DAMAGE: dict[str, Damage] = {
    "config-garbage": lambda e: (e / "config.json").write_text("{garbage"),
    "config-gone": lambda e: (e / "config.json").unlink(),
    "config-wrong-types": lambda e: (e / "config.json").write_text(json.dumps(
        {**json.loads((e / "config.json").read_text()), "hidden_size": "wide", "num_hidden_layers": -2})),
    "weights-cut": lambda e: _cut(_weights(e)),
    "weights-gone": lambda e: _weights(e).unlink(),
    "weights-garbage": lambda e: _weights(e).write_bytes(b"\xff" * 4096),
    "tokenizer-garbage": lambda e: (e / "tokenizer.json").write_text("{not a tokenizer"),
    "tokenizer-gone": lambda e: [p.unlink() for p in e.glob("tokenizer*")],
    "student-json-garbage": lambda e: (e / "r2r_student.json").write_text("[1, 2"),
}


def export_cases() -> list[Case]:
    readers = {"rerank": ["rerank", "--model", "model", "--candidates", "candidates.jsonl", "--output", "out.trec"],
               "check-parity": ["check-parity", "--model", "model", "--checkpoint", "{F}/tiny_run"],
               "tune-fusion": ["tune-fusion", "--model", "model", "--student-run", "run.trec", "--candidates",
                               "candidates.jsonl", "--qrels", "qrels.txt", "--dry-run"]}
    cases = []
    for command, argv in readers.items():
        for damage, make in EXPORT_DAMAGE.items():
            if command == "tune-fusion" and damage not in ("config-gone", "weights-gone"):
                continue
            expect = "either" if command == "tune-fusion" else "fail"
            cases.append(Case(f"{command}/model-{damage}", argv, {**goods(), "model": _export_copy(make)},
                              names=("model", "config.json", "safetensors", "tokenizer", "r2r_student.json"),
                              expect=expect, kind=f"model:{damage}",
                              check=(lambda f: None) if expect == "either" else None))
    return cases


def _gguf(**kw):
    def make(path: Path, fixtures: Path) -> None:
        write_gguf(path, **kw)
    return make


def _bytes_gguf(data: bytes):
    def make(path: Path, fixtures: Path) -> None:
        path.write_bytes(data)
    return make


def _cut_gguf(path: Path, fixtures: Path) -> None:
    write_gguf(path)
    path.write_bytes(path.read_bytes()[:-100])


def _huge_claim(path: Path, fixtures: Path) -> None:
    """A GGUF header claiming a billion-token vocabulary (its tensors do not match it)."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    for add, value in (("add_block_count", 2), ("add_embedding_length", 4096), ("add_feed_forward_length", 14336),
                       ("add_head_count", 32), ("add_head_count_kv", 8), ("add_vocab_size", 10**9)):
        getattr(writer, add)(value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


GGUFS = {
    "header-only": (_gguf(tensors=False), "token_embd"),
    "no-config": (_gguf(tensors=False, config=False), "embedding_length"),
    "tensor-missing": (_gguf(drop=("blk.1.ffn_down.weight",)), "blk.1.ffn_down.weight"),
    "cut": (_cut_gguf, "truncated"),
    "garbage": (_bytes_gguf(b"\xff\xfe" * 64), "GGUF"),
    "empty": (_bytes_gguf(b""), "GGUF"),
    "magic-only": (_bytes_gguf(b"GGUF\x03\x00\x00\x00"), "GGUF"),
    "other-architecture": (_gguf(arch="gpt2"), "gpt2"),
    "billion-token-vocabulary": (_huge_claim, "token_embd"),
    "text-named-gguf": (_bytes_gguf(b"this is a README, not a model\n"), "GGUF"),
}


def base_cases() -> list[Case]:
    cases = [Case(f"base/gguf-{name}", ["base", "model.gguf", "--output-dir", "out"], {"model.gguf": make},
                  names=("model.gguf", message), kind=f"gguf:{name}") for name, (make, message) in GGUFS.items()]
    cases.append(Case("base/gguf-is-a-folder", ["base", "model.gguf", "--output-dir", "out"], {"model.gguf": DIR},
                      names=("model.gguf",), kind="gguf:folder"))
    cases.append(Case("base/gguf-missing", ["base", "model.gguf", "--output-dir", "out"], {},
                      names=("model.gguf",), kind="gguf:missing"))

    def base(files: bool = True, damage: Callable[[Path], None] | None = None):
        def make(path: Path, fixtures: Path) -> None:
            written_base(path, path.parent / "model.gguf", files=files)
            if damage:
                damage(path)
        return make

    damaged = {
        "half-deleted": base(damage=lambda f: (f / "model.safetensors").unlink()),
        "weights-cut": base(damage=lambda f: (f / "model.safetensors").write_bytes(b"\0" * 100)),
        "config-edited": base(damage=lambda f: (f / "config.json").write_text('{"model_type": "other"}\n')),
        "marker-garbage": base(damage=lambda f: (f / "r2r_base.json").write_text("{garbage")),
        "marker-wrong-types": base(damage=lambda f: (f / "r2r_base.json").write_text('{"files": [1, 2], "sha256": 3}')),
    }
    for name, make in damaged.items():
        # written again from a header-only source, which the tensor check refuses: the folder stays as it was
        cases.append(Case(f"base/folder-{name}", ["base", "model.gguf", "--output-dir", "out"],
                          {"model.gguf": _gguf(tensors=False), "out": make}, names=("token_embd", "r2r_base.json"),
                          kind=f"base:{name}"))
    cases.append(Case("base/folder-foreign", ["base", "model.gguf", "--output-dir", "out"],
                      {"model.gguf": _gguf(tensors=False), "out": DIR, "out/notes.txt": "mine\n"},
                      names=("out", "--output-dir"), kind="base:foreign"))
    return cases


def _beir(corpus: bytes | None = None, qrels: bytes = b"query-id\tcorpus-id\tscore\nq0\td0\t1\n",
          queries: bytes = b'{"_id": "q0", "text": "query zero"}\n'):
    def make(path: Path, fixtures: Path) -> None:
        (path / "qrels").mkdir(parents=True)
        if corpus is not None:
            (path / "corpus.jsonl").write_bytes(corpus)
        (path / "queries.jsonl").write_bytes(queries)
        (path / "qrels" / "test.tsv").write_bytes(qrels)
    return make


GOOD_CORPUS = b'{"_id": "d0", "title": "", "text": "passage zero"}\n'


def data_cases() -> list[Case]:
    env = {"R2R_DATA": "data"}

    def D(id: str, argv: list[str], *names: str, files: dict | None = None, **kw) -> Case:  # noqa: N802
        return Case(f"data/{id}", argv, {**goods(), **(files or {})}, names=names, env=env, kind="data", **kw)

    return [
        D("add-unknown-set", ["data", "add", "nosuch", "qrels.txt"], "nosuch"),
        D("add-missing-file", ["data", "add", "dl19", "nowhere.txt"], "nowhere.txt"),
        D("add-wrong-file", ["data", "add", "dl19", "qrels.txt"], "qrels.txt"),
        D("add-folder-as-file", ["data", "add", "dl19", "a_folder"], "a_folder", files={"a_folder": DIR}),
        D("add-name-traversal", ["data", "add", "../evil", "beir", "--beir"], "../evil",
          files={"beir": _beir(GOOD_CORPUS)}),
        D("add-name-hidden", ["data", "add", ".hidden", "beir", "--beir"], ".hidden",
          files={"beir": _beir(GOOD_CORPUS)}),
        D("add-beir-no-corpus", ["data", "add", "mine", "beir", "--beir"], "corpus.jsonl", files={"beir": _beir()}),
        D("add-beir-latin1-corpus", ["data", "add", "mine", "beir", "--beir"], "corpus.jsonl",
          files={"beir": _beir(b'{"_id": "d0", "text": "caf\xe9"}\n')}),
        D("add-beir-unjudged-qrels", ["data", "add", "mine", "beir", "--beir"], "qrels",
          files={"beir": _beir(GOOD_CORPUS, qrels=b"query-id\tcorpus-id\tscore\nq9\td0\t1\n")}),
        D("add-beir-qrels-not-a-grade", ["data", "add", "mine", "beir", "--beir"], "test.tsv", "grade",
          files={"beir": _beir(GOOD_CORPUS, qrels=b"query-id\tcorpus-id\tscore\nq0\td0\thigh\n")}),
        D("add-beir-is-a-file", ["data", "add", "mine", "qrels.txt", "--beir"], "qrels.txt"),
        D("add-beir-two-folders", ["data", "add", "mine", "beir", "beir", "--beir"], "--beir",
          files={"beir": _beir(GOOD_CORPUS)}),
        D("add-beir-over-a-foreign-folder", ["data", "add", "mine", "beir", "--beir", "--overwrite"], "mine",
          files={"beir": _beir(GOOD_CORPUS), "data/mine": DIR, "data/mine/notes.txt": "mine\n"}),
        D("add-known-name-beir", ["data", "add", "dl19", "beir", "--beir"], "dl19",
          files={"beir": _beir(GOOD_CORPUS)}),
        D("path-unknown", ["data", "path", "nosuch"], "nosuch"),
        D("path-bogus-file", ["data", "path", "dl19", "bogus.txt"], "bogus.txt"),
        D("path-not-fetched", ["data", "path", "dl19", "qrels"], "dl19"),
        D("fetch-unknown", ["data", "fetch", "nosuch"], "nosuch"),
        D("fetch-refused-mirror", ["data", "fetch", "dl19", "--mirror", "http://127.0.0.1:9", "--timeout", "5"],
          "127.0.0.1", code=1, leaves=("data", "data/*", "data/*/*")),
        D("fetch-file-mirror-garbage", ["data", "fetch", "dl19", "--mirror", "file:///nonexistent/mirror"],
          "mirror", "file:", code=1, leaves=("data", "data/*", "data/*/*")),
        D("fetch-timeout-0", ["data", "fetch", "dl19", "--timeout", "0"], "--timeout"),
        D("list-garbage-manifest", ["data", "list"], "r2r_dataset.json", "mine", expect="either",
          files={"data/mine": DIR, "data/mine/r2r_dataset.json": "{garbage"}, check=lambda f: None),
        D("list-data-dir-is-a-file", ["data", "list"], "data", files={"data": "not a folder\n"}, expect="either",
          check=lambda f: None),
    ]


def model_cases() -> list[Case]:
    return run_cases() + export_cases() + base_cases() + data_cases()
